"""``medtrans info FILE``: shape, dtype, geometry, modality and intensity range of a volume.

A labels file with a ``.names.json`` sidecar also lists its tissues with their voxel counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_medtrans.cli import CommandError
from napari_medtrans.io import (
    Volume,
    VolumeReadError,
    list_dicom_series,
    read_volume,
    read_volumes,
)
from napari_medtrans.label_names import LabelNamesError, read_label_names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="describe a medical volume (NIfTI, MetaImage, NRRD, DICOM file or folder)",
        description=__doc__,
    )
    parser.add_argument("path", metavar="FILE", help="volume file, or a folder of DICOM files")
    parser.add_argument("--series", metavar="UID", help="only this DICOM series of a folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def describe(volume: Volume) -> dict:
    """A JSON-ready description of ``volume``."""
    array = volume.array
    return {
        "path": volume.path,
        "name": volume.metadata.get("SeriesDescription"),
        "shape_zyx": list(array.shape),
        "dtype": str(array.dtype),
        "spacing_xyz": list(volume.spacing),
        "origin_xyz": list(volume.origin),
        "direction": list(volume.direction),
        "modality": volume.modality,
        "intensity_range": [float(array.min()), float(array.max())] if array.size else None,
        "tissues": _tissues(volume),
    }


def _tissues(volume: Volume) -> dict[str, dict] | None:
    """Label value → name and voxel count, for an integer volume with a label-names sidecar."""
    if volume.path is None or volume.array.dtype.kind not in "iu":
        return None
    try:
        names = read_label_names(volume.path)
    except LabelNamesError as exc:
        raise CommandError(str(exc)) from exc
    return {str(k): {"name": n, "voxels": int(np.count_nonzero(volume.array == k))} for k, n in names.items()} or None


def _numbers(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _format(info: dict) -> str:
    direction = np.asarray(info["direction"]).reshape(3, 3)
    lines = [
        f"{info['name']}:" if info["name"] else f"{info['path']}:",
        f"  shape (z, y, x):     {' x '.join(map(str, info['shape_zyx']))}",
        f"  dtype:               {info['dtype']}",
        f"  spacing (x, y, z):   {_numbers(info['spacing_xyz'])} mm",
        f"  origin (x, y, z):    {_numbers(info['origin_xyz'])} mm",
        f"  direction:           [{'; '.join(_numbers(row) for row in direction)}]",
        f"  modality:            {info['modality'] or 'unknown'}",
    ]
    if info["intensity_range"]:
        lines.append(f"  intensity range:     {_numbers(info['intensity_range'])}")
    if info["tissues"]:
        lines.append("  tissues:")
        lines += [f"    {value:>3}  {t['name']}  ({t['voxels']} voxels)" for value, t in info["tissues"].items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the description of every volume at ``args.path``."""
    path = Path(args.path)
    try:
        series = list_dicom_series(path) if path.is_dir() else []
        if args.series or not path.is_dir():
            volumes = [read_volume(path, series_uid=args.series)]
        else:
            volumes = read_volumes(path)
    except VolumeReadError as exc:
        raise CommandError(str(exc)) from exc
    infos = [describe(v) for v in volumes]
    listing = [{"uid": s.uid, "description": s.description, "modality": s.modality, "files": s.n_files} for s in series]
    if args.json:
        print(json.dumps({"path": str(path), "series": listing, "volumes": infos}, indent=2))
        return 0
    if listing:
        print(f"{path}: {len(listing)} DICOM series")
        for entry in listing:
            described = f"{entry['description'] or '-'}  {entry['modality'] or '-'}"
            print(f"  {entry['uid']}  {described}  {entry['files']} files")
    print("\n".join(_format(info) for info in infos))
    return 0
