r"""The reviewer's name, asked once and remembered in the user's config folder.

Stored as ``reviewer.json`` in ``$MEDTRANS_CONFIG_DIR`` if set; else
``$XDG_CONFIG_HOME/napari-medtrans`` or ``~/.config/napari-medtrans`` on Linux,
``~/Library/Application Support/napari-medtrans`` on macOS,
``%APPDATA%\napari-medtrans`` on Windows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from napari_medtrans.rundir import atomic_write_json

CONFIG_ENV = "MEDTRANS_CONFIG_DIR"
REVIEWER_FILE = "reviewer.json"


def config_dir() -> Path:
    """The user's config folder for napari-medtrans: ``$MEDTRANS_CONFIG_DIR``, else platformdirs' (roaming)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    return Path(platformdirs.user_config_dir("napari-medtrans", appauthor=False, roaming=True))


def remembered_reviewer() -> str:
    """The remembered reviewer name, or ``""`` when none was saved (or the file is unreadable)."""
    try:
        name = json.loads((config_dir() / REVIEWER_FILE).read_text()).get("reviewer", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return name if isinstance(name, str) else ""


def remember_reviewer(name: str) -> None:
    """Save ``name`` as the reviewer for the next sessions (atomic write)."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / REVIEWER_FILE, {"reviewer": name})
