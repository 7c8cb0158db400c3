"""Finding translators by name.

Translators come from, in order of precedence (the first of a name wins):

1. finished runs registered with :func:`register_run` (kept in
   ``<user dir>/registered.json``);
2. the user directory: ``$MEDTRANS_MODELS_DIR``, else
   ``$XDG_DATA_HOME/medtrans/models`` (``~/.local/share/medtrans/models``);
3. the demo translators shipped in ``sample_data/models/``.

A translator's name is the ``name`` in its metadata. :func:`resolve` also
accepts a path to a translator file or to a run directory.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_medtrans.checkpoint import CheckpointError, TranslatorMetadata, read_metadata
from napari_medtrans.rundir import atomic_write_json
from napari_medtrans.shipped import shipped_dir

USER_DIR_ENV = "MEDTRANS_MODELS_DIR"
REGISTERED_FILE = "registered.json"
TRANSLATOR_FILE = "translator.safetensors"


@dataclass(frozen=True)
class TranslatorInfo:
    """A translator found by the registry; ``origin`` is ``run``, ``user`` or ``shipped``."""

    name: str
    path: Path
    origin: str
    metadata: TranslatorMetadata

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``medtrans models --json`` prints)."""
        md = self.metadata
        return {
            "name": self.name,
            "method": md.method,
            "source": md.source,
            "target": md.target,
            "outputs": list(md.outputs),
            "label_classes": md.label_classes,
            "regime": md.regime,
            "deviations": md.deviations,
            "origin": self.origin,
            "path": str(self.path),
            "slice_axis": md.slice_axis,
            "size": md.size,
            "context_slices": md.context_slices,
            "networks": md.networks,
            "provenance": md.provenance,
            "card": md.card,
        }


def user_dir() -> Path:
    """The user's translator folder (may not exist yet)."""
    if os.environ.get(USER_DIR_ENV):
        return Path(os.environ[USER_DIR_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "medtrans" / "models"


def _registered() -> list[Path]:
    path = user_dir() / REGISTERED_FILE
    if not path.is_file():
        return []
    try:
        return [Path(p) for p in json.loads(path.read_text())]
    except (json.JSONDecodeError, TypeError) as exc:
        warnings.warn(f"ignoring unreadable {path}: {exc}", stacklevel=3)
        return []


def _translator_file(path: Path) -> Path:
    return path / TRANSLATOR_FILE if path.is_dir() else path


def register_run(path: str | os.PathLike[str]) -> Path:
    """Remember a finished run (its folder or translator file); returns the translator file."""
    target = _translator_file(Path(path).expanduser().resolve())
    read_metadata(target)  # refuse what would not load
    known = _registered()
    if target not in known:
        atomic_write_json(user_dir() / REGISTERED_FILE, [str(p) for p in [*known, target]])
    return target


def _candidates() -> list[tuple[Path, str]]:
    found = [(_translator_file(p), "run") for p in _registered()]
    for folder, origin in ((user_dir(), "user"), (shipped_dir() / "models", "shipped")):
        if folder.is_dir():
            found += [(p, origin) for p in sorted(folder.glob("*.safetensors"))]
    return found


def list_translators() -> list[TranslatorInfo]:
    """Every translator found, one per name (see the module doc for precedence)."""
    infos: dict[str, TranslatorInfo] = {}
    for path, origin in _candidates():
        if not path.is_file():
            continue
        try:
            metadata = read_metadata(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
            continue
        infos.setdefault(metadata.name, TranslatorInfo(metadata.name, path, origin, metadata))
    return list(infos.values())


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """The translator file for a registry name, a translator file or a run directory."""
    path = Path(name_or_path).expanduser()
    if path.is_file() or (path.is_dir() and (path / TRANSLATOR_FILE).is_file()):
        return _translator_file(path)
    if path.exists():
        raise CheckpointError(f"{path} is a folder without {TRANSLATOR_FILE}")
    infos = list_translators()
    for info in infos:
        if info.name == str(name_or_path):
            return info.path
    known = ", ".join(info.name for info in infos) or "none"
    raise CheckpointError(f"no translator named or found at {str(name_or_path)!r}; known translators: {known}")
