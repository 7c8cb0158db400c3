"""Names of the values of a labels volume (tissues), kept in a JSON sidecar.

NIfTI, MetaImage and NRRD have no portable place for label names, so a labels
file ``sub_labels.nii.gz`` gets ``sub_labels.names.json`` next to it:
``{"0": "background", "1": "cortical bone", ...}``. The napari reader turns it
into the layer's features (napari then shows the tissue under the cursor), the
writer writes it back from a ``tissue`` feature column, and ``medtrans info``
lists the tissues with their voxel counts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_medtrans.io import volume_stem
from napari_medtrans.rundir import atomic_write_json

SIDECAR_SUFFIX = ".names.json"


class LabelNamesError(ValueError):
    """A label-names sidecar that is not a JSON object of integer keys and string names."""


def names_path(volume_path: str | os.PathLike[str]) -> Path:
    """The sidecar of a labels file: same folder, same stem, ``.names.json``."""
    path = Path(volume_path)
    return path.with_name(volume_stem(path.name) + SIDECAR_SUFFIX)


def read_label_names(volume_path: str | os.PathLike[str]) -> dict[int, str]:
    """The names of the labels file's values; empty when it has no sidecar.

    Raises:
        LabelNamesError: The sidecar exists but is not ``{"<int>": "<name>", ...}``.
    """
    path = names_path(volume_path)
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise TypeError("expected an object mapping label values to names")
        return {int(key): value for key, value in raw.items()}
    except (ValueError, TypeError) as exc:
        raise LabelNamesError(f"{path}: not a label-names file ({exc})") from exc


def write_label_names(volume_path: str | os.PathLike[str], names: dict[int, str]) -> Path:
    """Write the sidecar of a labels file (atomically); returns its path."""
    path = names_path(volume_path)
    atomic_write_json(path, {str(int(key)): str(value) for key, value in sorted(names.items())})
    return path


def as_features(names: dict[int, str]) -> dict[str, list]:
    """napari Labels ``features`` (one row per label value, matched by ``index``) with a ``tissue`` column."""
    ordered = sorted(names.items())
    return {"index": [key for key, _ in ordered], "tissue": [value for _, value in ordered]}


def from_features(features: Any) -> dict[int, str]:
    """Label names from napari Labels ``features`` with ``index`` and ``tissue`` columns; empty otherwise."""
    try:
        return {int(k): str(v) for k, v in zip(features["index"], features["tissue"], strict=True)}
    except (KeyError, TypeError, ValueError):
        return {}
