"""``medtrans translate INPUT... --model NAME|PATH --out DIR``: translate volumes.

Writes ``<stem>_<target>.nii.gz`` (and ``<stem>_<target>_uncertainty.nii.gz``
with ``--uncertainty``) with each input's geometry. Existing files are never
replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from napari_medtrans import cpu_features
from napari_medtrans.checkpoint import CheckpointError
from napari_medtrans.cli import CommandError
from napari_medtrans.inference import DEVICES, PRECISIONS, Translator, load_translator, resolve_device
from napari_medtrans.io import VolumeReadError, read_volume, volume_stem, write_volume

UNCERTAINTY_CHOICES = ("tta", "mc_dropout", "scale")
BAR_WIDTH = 30


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``translate`` subcommand."""
    parser = subparsers.add_parser("translate", help="translate volumes with a translator", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="volume files or DICOM folders")
    parser.add_argument("--model", required=True, help="translator name (see `medtrans models`) or path")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--uncertainty", choices=UNCERTAINTY_CHOICES,
                        help="also write a per-voxel uncertainty: test-time flips, MC-dropout or the scale map")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                        help="fp32 (default) for results; bf16/fp16 are faster where the device has them, "
                             "less exact (refused where they are emulated, unless --force)")
    parser.add_argument("--force", action="store_true", help="run a --precision this device only emulates")
    parser.add_argument("--axis", type=int, choices=(0, 1, 2), help="slice axis in (z, y, x) (default: the model's)")
    parser.add_argument("--batch-size", type=int, help="slices per batch (default: measured on the first "
                        "slices once per model, slice size, device and threads, then cached)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def stem(path: Path) -> str:
    """File name without a volume suffix (``ct.nii.gz`` → ``ct``); a folder's name."""
    return volume_stem(path.name)


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A progress callback drawing ``label [####----] done/total slices`` on stderr."""
    start = time.perf_counter()

    def show(done: int, total: int) -> None:
        filled = BAR_WIDTH * done // max(total, 1)
        rate = done / max(time.perf_counter() - start, 1e-9)
        end = "\n" if done >= total else ""
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        print(f"\r{label} [{bar}] {done}/{total} slices, {rate:.1f}/s", end=end, file=sys.stderr, flush=True)

    return show


def _load(args: argparse.Namespace) -> Translator:
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    try:
        translator = load_translator(args.model, device=device)
    except (CheckpointError, ValueError) as exc:
        raise CommandError(f"cannot load model {args.model!r}: {exc}") from exc
    if args.uncertainty == "scale" and not translator.provides_scale:
        raise CommandError(f"model {args.model!r} has no scale map; use --uncertainty tta")
    if args.uncertainty == "mc_dropout" and not translator.supports_mc_dropout:
        raise CommandError(f"model {args.model!r} has no dropout layers; use --uncertainty tta")
    return translator


def _plan(args: argparse.Namespace, target: str) -> list[tuple[Path, Path, Path | None]]:
    """(input, image output, uncertainty output) per input; refuses clashes before any work."""
    plan = []
    for text in args.inputs:
        source = Path(text)
        if not source.exists():
            raise CommandError(f"{source}: no such file or folder")
        base = args.out / f"{stem(source)}_{target}"
        plan.append((source, base.with_name(base.name + ".nii.gz"),
                     base.with_name(base.name + "_uncertainty.nii.gz") if args.uncertainty else None))
    outputs = [p for _, image, extra in plan for p in (image, extra) if p is not None]
    if len(set(outputs)) != len(outputs):
        raise CommandError("two inputs share a file name stem; translate them into different --out folders")
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise CommandError(f"output exists: {', '.join(existing)} (use --overwrite to replace)")
    return plan


def run(args: argparse.Namespace) -> int:
    """Translate every input; exit 0 when all were written."""
    if args.batch_size is not None and args.batch_size < 1:
        raise CommandError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    translator = _load(args)
    try:
        warning = cpu_features.check_precision(args.precision, translator.device, force=args.force,
                                               how_to_force="add --force")
    except cpu_features.EmulatedPrecisionError as exc:
        raise CommandError(f"--precision {args.precision}: {exc}") from exc
    if warning:
        print(warning, file=sys.stderr)
    target = translator.metadata.target
    plan = _plan(args, target)
    for source, image_path, uncertainty_path in plan:
        try:
            volume = read_volume(source)
        except VolumeReadError as exc:
            raise CommandError(str(exc)) from exc
        result = translator.translate_volume(
            volume,
            axis=args.axis,
            batch_size=args.batch_size,
            precision=args.precision,
            uncertainty=args.uncertainty if args.uncertainty in ("tta", "mc_dropout") else None,
            scale=args.uncertainty == "scale",
            progress=progress_bar(source.name),
        )
        outputs = [(image_path, result.image)]
        if uncertainty_path is not None:
            outputs.append((uncertainty_path, result.scale if args.uncertainty == "scale" else result.uncertainty))
        for path, array in outputs:
            try:
                write_volume(volume.with_array(array, modality=target), path, overwrite=args.overwrite)
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot write {path}: {exc}") from exc
            print(path)
    return 0
