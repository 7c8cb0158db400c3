"""``medtrans convert-pth SRC DST``: import a public CycleGAN/RegGAN ResNet generator.

The ``.pth`` is read with ``torch.load(weights_only=True)``: a file carrying
pickled Python objects is refused and nothing in it runs. Parameter names are
mapped as documented in :mod:`napari_medtrans.checkpoint`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_medtrans.checkpoint import LAYOUTS, CheckpointError, convert_pth
from napari_medtrans.cli import CommandError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert-pth`` subcommand."""
    parser = subparsers.add_parser(
        "convert-pth",
        help="convert a foreign .pth generator into a translator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC", help="netG_A2B.pth / latest_net_G_A.pth state dict")
    parser.add_argument("dst", type=Path, metavar="DST", help="translator file to write (.safetensors)")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="cyclegan", help="parameter-name layout of SRC")
    parser.add_argument("--source", required=True, help="source modality, e.g. T1")
    parser.add_argument("--target", required=True, help="target modality, e.g. CT")
    parser.add_argument("--name", help="translator name (default: DST's stem)")
    parser.add_argument("--method", help="method name (default: the layout)")
    parser.add_argument("--slice-axis", type=int, choices=(0, 1, 2), default=0)
    parser.add_argument("--size", type=int, default=256, help="training slice size")
    parser.add_argument(
        "--source-intensity",
        type=json.loads,
        metavar="JSON",
        help='e.g. \'{"kind": "percentile", "low": 0.5, "high": 99.5}\' (default: by modality)',
    )
    parser.add_argument(
        "--target-intensity",
        type=json.loads,
        metavar="JSON",
        help='e.g. \'{"kind": "window", "low": -1024, "high": 3000}\'; MR targets need a '
        '"reference": {"lo": ..., "hi": ...}',
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DST")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print the written path."""
    metadata: dict[str, Any] = {
        "source": args.source,
        "target": args.target,
        "slice_axis": args.slice_axis,
        "size": args.size,
    }
    optional = {
        "name": args.name,
        "method": args.method,
        "source_intensity": args.source_intensity,
        "target_intensity": args.target_intensity,
    }
    metadata.update({k: v for k, v in optional.items() if v is not None})
    try:
        path = convert_pth(args.src, args.dst, layout=args.layout, metadata=metadata, overwrite=args.overwrite)
    except (CheckpointError, FileExistsError) as exc:
        raise CommandError(str(exc)) from exc
    print(path)
    return 0
