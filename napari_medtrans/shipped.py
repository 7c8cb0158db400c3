"""Where the shipped demo files (``sample_data/``: demo volumes, translators, segmenter) live.

In a source checkout or editable install ``napari_medtrans/_shipped`` is a
symlink to the top-level ``sample_data/``; a built wheel holds a real copy of
it at the same place (package data), so one lookup serves both.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir() -> Path:
    """The folder holding the shipped sample data (``models/`` inside it)."""
    for candidate in (_PACKAGE / "_shipped", _PACKAGE.parent / "sample_data"):
        if candidate.is_dir():
            return candidate.resolve()
    raise FileNotFoundError(
        f"shipped sample data not found: neither {_PACKAGE / '_shipped'} nor "
        f"{_PACKAGE.parent / 'sample_data'} is a folder; reinstall napari-medtrans"
    )
