"""napari reader contribution: medical volumes as layers placed in physical space.

``get_reader`` accepts NIfTI, MetaImage, NRRD and DICOM files and folders that
hold DICOM files. Each volume becomes one layer (each DICOM series of a folder
its own layer, named after its SeriesDescription) with ``scale``, ``translate``
and ``affine`` from :func:`napari_medtrans.io.layer_geometry`. Integer volumes
whose name has a ``_labels`` or ``_seg`` part (``sub_labels``,
``sub_labels_reviewed``, ``sub_seg``) open as Labels layers, without a
modality (label values are not intensities of any modality), and with the
tissue names of their ``.names.json`` sidecar as features
(:mod:`napari_medtrans.label_names`).

Warnings of the reading (e.g. "reading only the first 3-D volume" of a 4-D
file) are shown in the viewer as napari notifications, not only on the terminal.

A file that cannot be read raises :class:`napari_medtrans.io.VolumeReadError`;
napari reports it (``viewer.open`` raises a ``ReaderPluginError`` that quotes
the message, the GUI shows it in a dialog) and the viewer stays up.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from napari.types import LayerDataTuple
from napari.utils.notifications import show_warning

from napari_medtrans.constants import DICOM_SUFFIXES
from napari_medtrans.io import READ_SUFFIXES, Volume, layer_geometry, read_volumes, volume_stem
from napari_medtrans.label_names import LabelNamesError, as_features, read_label_names

LABELS_NAME = re.compile(r"_(labels|seg)(_|$)", re.IGNORECASE)
"""A ``_labels`` or ``_seg`` part of a file name: the file holds labels."""
_FOLDER_PROBE = 32


def _accepts(path: str) -> bool:
    candidate = Path(path)
    if candidate.is_dir():
        return _looks_like_dicom_folder(candidate)
    return candidate.name.lower().endswith(READ_SUFFIXES)


def _looks_like_dicom_folder(folder: Path) -> bool:
    """True when one of the first files of ``folder`` is DICOM (by suffix or preamble)."""
    try:
        files = [p for p in sorted(folder.iterdir())[:_FOLDER_PROBE] if p.is_file()]
    except OSError:
        return False
    return any(p.suffix.lower() in DICOM_SUFFIXES or _has_dicom_preamble(p) for p in files)


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerDataTuple]] | None:
    """Return :func:`read_layers` when every path is a volume this plugin reads, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(_accepts(str(p)) for p in paths):
        return read_layers
    return None


def layer_name(volume: Volume) -> str:
    """The series description for DICOM, else the file name without its extension."""
    description = volume.metadata.get("SeriesDescription")
    if description:
        return description
    return volume_stem(Path(volume.path or "volume").name)


def is_labels(volume: Volume) -> bool:
    """Whether ``volume`` holds labels: integers, with a ``_labels``/``_seg`` part in its name."""
    return volume.array.dtype.kind in "iu" and LABELS_NAME.search(layer_name(volume)) is not None


def layer_data(volume: Volume) -> LayerDataTuple:
    """A napari layer data tuple for ``volume`` (labels without a modality, or image)."""
    name = layer_name(volume)
    if is_labels(volume):
        kwargs = {"name": name, **layer_geometry(replace(volume, modality=None))}
        try:
            names = read_label_names(volume.path) if volume.path else {}
        except LabelNamesError as exc:  # the labels still open, without names
            warnings.warn(f"{exc}; opening the labels without tissue names", UserWarning, stacklevel=2)
            names = {}
        if names:
            kwargs["features"] = as_features(names)
        return (volume.array, kwargs, "labels")
    kwargs = {"name": name, **layer_geometry(volume)}
    kwargs["colormap"] = "gray"
    return (volume.array, kwargs, "image")


def read_layers(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Read every volume at ``path`` (one path or several) as layer data tuples."""
    paths = [path] if isinstance(path, str) else list(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        layers = [layer_data(volume) for p in paths for volume in read_volumes(p)]
    for warning in caught:
        show_warning(f"napari-medtrans: {warning.message}")
    return layers
