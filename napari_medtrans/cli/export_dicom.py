r"""``medtrans export-dicom SCT --out DIR [--like MR_SERIES_DIR] [--translator NAME]``: sCT → DICOM CT series.

Writes a new CT series (one file per slice, ImageType DERIVED\\SECONDARY, HU
through RescaleSlope/Intercept). With ``--like`` the series joins the MR
series' study: patient and study identity, frame of reference and the
geometry of each slice come from it (see :mod:`napari_medtrans.dicom_export`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_medtrans.cli import CommandError
from napari_medtrans.dicom_export import DicomExportError, export_dicom
from napari_medtrans.io import VolumeReadError, read_volume


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export-dicom`` subcommand."""
    parser = subparsers.add_parser(
        "export-dicom",
        help="write a synthetic CT as a DICOM CT series",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sct", type=Path, metavar="SCT", help="synthetic CT volume in HU (e.g. from medtrans translate)"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to create for the series")
    parser.add_argument(
        "--like", type=Path, metavar="MR_SERIES_DIR", help="DICOM folder of the MR series the sCT was translated from"
    )
    parser.add_argument("--translator", help="name of the translator, for the series description")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the series; print the folder and the number of files."""
    try:
        volume = read_volume(args.sct)
    except VolumeReadError as exc:
        raise CommandError(str(exc)) from exc
    if volume.modality not in (None, "CT"):
        raise CommandError(f"{args.sct}: header says {volume.modality}; export-dicom writes synthetic CTs in HU")
    try:
        files = export_dicom(volume, args.out, like=args.like, translator=args.translator, overwrite=args.overwrite)
    except (DicomExportError, VolumeReadError, FileExistsError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"{args.out}: {len(files)} CT slices")
    return 0
