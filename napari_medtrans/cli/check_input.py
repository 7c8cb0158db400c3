"""``medtrans check-input FILE... --model NAME [--json]``: is each input like the translator's training data?

Prints one verdict per file (see :mod:`napari_medtrans.input_check`); with
``--json`` a JSON list of ``{"file", "ood", "score", "reasons"}``. Exit code 0
when every input looks like the training data, 1 when any does not.
"""

from __future__ import annotations

import argparse
import json

from napari_medtrans.checkpoint import CheckpointError, read_metadata
from napari_medtrans.cli import CommandError
from napari_medtrans.input_check import check_input
from napari_medtrans.io import VolumeReadError, read_volume
from napari_medtrans.registry import resolve


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check-input`` subcommand."""
    parser = subparsers.add_parser(
        "check-input",
        help="check inputs against a translator's training data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE", help="volume files or DICOM folders")
    parser.add_argument("--model", required=True, help="translator name (see `medtrans models`) or path")
    parser.add_argument("--json", action="store_true", help="print a JSON list of verdicts")
    parser.add_argument(
        "--keep-spacing",
        action="store_true",
        help="check on the input's own grid, as `medtrans translate --keep-spacing` translates it (default: "
        "resampled in-plane to the training spacing, as translation sees it)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check every input; exit 1 when any is out of distribution."""
    try:
        metadata = read_metadata(resolve(args.model))
    except CheckpointError as exc:
        raise CommandError(f"cannot load model {args.model!r}: {exc}") from exc
    verdicts = []
    for path in args.inputs:
        try:
            volume = read_volume(path)
        except VolumeReadError as exc:
            raise CommandError(str(exc)) from exc
        verdict = check_input(volume, metadata, resample=not args.keep_spacing)
        verdicts.append(verdict.to_dict(path))
        if not args.json:
            print(f"{path}: {verdict.summary()}")
    if args.json:
        print(json.dumps(verdicts, indent=2))
    return 1 if any(v["ood"] for v in verdicts) else 0
