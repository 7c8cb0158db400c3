"""``medtrans sample-data``: write a phantom cohort (NIfTI volumes + manifest.json) to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_medtrans.cli import CommandError
from napari_medtrans.phantom import DEFAULT_SHAPE, MANIFEST, MAX_LEVEL, REGIMES, write_cohort


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample-data`` subcommand."""
    parser = subparsers.add_parser(
        "sample-data",
        help="write phantom head volumes (T1, T2, CT, labels) for training and demos",
        description=__doc__ + " The same arguments give byte-identical files.",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument(
        "--subjects", type=int, default=4, metavar="N", help="number of pairs (unpaired: N per domain); default 4"
    )
    parser.add_argument("--regime", choices=REGIMES, default="paired", help="data regime; default paired")
    parser.add_argument("--seed", type=int, default=0, help="random seed; default 0")
    parser.add_argument(
        "--level",
        type=int,
        default=3,
        metavar="L",
        help=f"misalignment level 0..{MAX_LEVEL} (misaligned only); default 3",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(DEFAULT_SHAPE),
        metavar=("Z", "Y", "X"),
        help="array shape; the field of view is fixed (default 32 128 128 = 1.2×1.2×4 mm voxels)",
    )
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder, replacing files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate the arguments, write the cohort and say what was written."""
    if args.subjects < 1:
        raise CommandError(f"--subjects must be at least 1, got {args.subjects}")
    if args.seed < 0:
        raise CommandError(f"--seed must be a non-negative integer, got {args.seed}")
    if not 0 <= args.level <= MAX_LEVEL:
        raise CommandError(f"--level must be between 0 and {MAX_LEVEL}, got {args.level}")
    if min(args.shape) < 4:
        raise CommandError(f"--shape sizes must be at least 4, got {' '.join(map(str, args.shape))}")
    try:
        manifest = write_cohort(
            args.out, args.subjects, args.regime, args.seed, args.level, tuple(args.shape), overwrite=args.overwrite
        )
    except FileExistsError as exc:
        raise CommandError(f"{args.out}: folder is not empty; use --overwrite to write into it") from exc
    except OSError as exc:
        raise CommandError(str(exc)) from exc
    n_files = sum(len(s["files"]) for s in manifest["subjects"])
    print(f"wrote {n_files} volumes ({len(manifest['subjects'])} subjects, {args.regime}) and {MANIFEST} to {args.out}")
    return 0
