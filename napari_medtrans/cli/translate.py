"""``medtrans translate INPUT... --model NAME|PATH --out DIR``: translate volumes.

Each input is first compared with the translator's training data
(``medtrans check-input``); the verdict is printed, and ``--strict`` refuses,
before anything is written, when any input is found unlike it. Writes
``<stem>_<target>.nii.gz`` (and ``<stem>_<target>_uncertainty.nii.gz`` with
``--uncertainty``) with each input's geometry. Existing files are never
replaced without ``--overwrite``; with it, an old ``_uncertainty`` file that the
new run does not write is removed (it belonged to the replaced image). Outputs
are claimed before any work by creating them empty and exclusively, so two
translate commands into one ``--out`` cannot both write a file. An input whose
name starts with ``-`` goes after ``--``:
``medtrans translate --model NAME --out DIR -- -scan.nii.gz``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_medtrans import cpu_features
from napari_medtrans.checkpoint import CheckpointError
from napari_medtrans.cli import CommandError
from napari_medtrans.inference import DEVICES, PRECISIONS, Translator, load_translator, resolve_device
from napari_medtrans.input_check import Verdict
from napari_medtrans.io import (
    GridMismatch,
    Volume,
    VolumeReadError,
    read_volume,
    require_same_grid,
    volume_stem,
    write_volume,
)
from napari_medtrans.progress import Progress

UNCERTAINTY_CHOICES = ("tta", "mc_dropout", "scale", "samples")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``translate`` subcommand."""
    parser = subparsers.add_parser(
        "translate",
        help="translate volumes with a translator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="volume files or DICOM folders")
    parser.add_argument("--model", required=True, help="translator name (see `medtrans models`) or path")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--uncertainty",
        choices=UNCERTAINTY_CHOICES,
        help="also write a per-voxel uncertainty: test-time flips, MC-dropout, the scale map, or the "
        "spread (std) of --samples samples of a stochastic translator (SynDiff, UNSB), whose mean is the image",
    )
    parser.add_argument(
        "--samples", type=int, default=8, help="samples of --uncertainty mc_dropout or samples (default 8)"
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed of a stochastic translator (default 0)")
    parser.add_argument(
        "--steps", type=int, help="sampling steps of a stochastic translator (default: the number it was trained with)"
    )
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=list(PRECISIONS),
        help="fp32 (default) for results; bf16/fp16 are faster where the device has them, "
        "less exact (refused where they are emulated, unless --force)",
    )
    parser.add_argument("--force", action="store_true", help="run a --precision this device only emulates")
    parser.add_argument("--axis", type=int, choices=(0, 1, 2), help="slice axis in (z, y, x) (default: the model's)")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="slices per batch (default: measured on the first "
        "slices once per model, slice size, device and threads, then cached)",
    )
    parser.add_argument("--series-uid", help="the DICOM series to read from a folder holding several")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--mask",
        type=Path,
        metavar="FILE",
        help="translate only inside this mask (nonzero voxels, the input's grid); outside is air",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="label map of the input (same grid) for label-conditioned translators (SPADE; `medtrans models`)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="refuse an input that the input check finds unlike the training data"
    )
    parser.add_argument(
        "--keep-spacing",
        action="store_true",
        help="translate on the input's own grid (default: slices whose in-plane spacing differs from the "
        "translator's training spacing are resampled to it and the outputs back)",
    )
    parser.set_defaults(func=run)


def stem(path: Path) -> str:
    """File name without a volume suffix (``ct.nii.gz`` → ``ct``); a folder's name."""
    return volume_stem(path.name)


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback reporting ``label``'s slices on stderr (a bar on a terminal)."""
    progress, started = Progress(sys.stderr), []

    def show(done: int, total: int) -> None:
        if not started:
            started.append(True)
            progress.begin(label, total, unit="slices")
        progress.update(done)
        if done >= total:
            progress.close()

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
    if (args.uncertainty == "samples" or args.steps is not None) and not translator.stochastic:
        what = "--uncertainty samples" if args.uncertainty == "samples" else "--steps"
        raise CommandError(f"model {args.model!r} is deterministic; {what} needs a stochastic translator")
    if args.steps is not None and not 1 <= args.steps <= (translator.max_steps or 0):
        raise CommandError(f"--steps must lie in 1..{translator.max_steps} for model {args.model!r}, got {args.steps}")
    return translator


def _plan(args: argparse.Namespace, target: str) -> list[tuple[Path, Path, Path]]:
    """(input, image output, uncertainty output) per input; refuses clashes before any work.

    The uncertainty path is planned even without ``--uncertainty``: with
    ``--overwrite`` an old file there is stale and removed.
    """
    plan = []
    for text in args.inputs:
        source = Path(text)
        if not source.exists():
            raise CommandError(f"{source}: no such file or folder")
        base = args.out / f"{stem(source)}_{target}"
        plan.append((source, base.with_name(base.name + ".nii.gz"), base.with_name(base.name + "_uncertainty.nii.gz")))
    outputs = _outputs(args, plan)
    if len(set(outputs)) != len(outputs):
        raise CommandError("two inputs share a file name stem; translate them into different --out folders")
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise CommandError(f"output exists: {', '.join(existing)} (use --overwrite to replace)")
    return plan


def _outputs(args: argparse.Namespace, plan: list[tuple[Path, Path, Path]]) -> list[Path]:
    return [p for _, image, extra in plan for p in (image, extra if args.uncertainty else None) if p is not None]


def _claim(paths: list[Path]) -> list[Path]:
    """Create every path empty and exclusively (``O_EXCL``); on a clash release them and refuse."""
    claimed: list[Path] = []
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            _release(claimed)
            raise CommandError(
                f"output exists: {path} (another translate writing into --out? use --overwrite to replace)"
            ) from None
        except OSError as exc:
            _release(claimed)
            raise CommandError(f"cannot create {path}: {exc.strerror}") from exc
        claimed.append(path)
    return claimed


def _release(claimed: list[Path]) -> None:
    """Remove the empty placeholders of outputs that were claimed but not written."""
    for path in claimed:
        if path.is_file() and path.stat().st_size == 0:
            path.unlink(missing_ok=True)


def _read_mask(path: Path) -> Volume:
    """A mask or label volume (a CommandError naming the file when it cannot be read)."""
    try:
        return read_volume(path)
    except VolumeReadError as exc:
        raise CommandError(str(exc)) from exc


def _on_grid(other: Volume, volume: Volume, flag: str) -> np.ndarray:
    """``other``'s array when it lies on ``volume``'s grid (:func:`~napari_medtrans.io.require_same_grid`)."""
    try:
        require_same_grid(volume, other, what=flag)
    except GridMismatch as exc:
        raise CommandError(str(exc)) from exc
    return other.array


def _mask_for(mask: Volume | None, volume: Volume) -> np.ndarray | None:
    """The mask (nonzero voxels) when it lies on ``volume``'s grid; a CommandError naming both files otherwise."""
    return None if mask is None else _on_grid(mask, volume, "--mask") != 0


def _checked(translator: Translator, source: Path, args: argparse.Namespace) -> tuple[Volume, Verdict]:
    """Read ``source`` and print the input check's verdict on it (at the spacing it will be translated at)."""
    try:
        volume = read_volume(source, series_uid=args.series_uid)
    except VolumeReadError as exc:
        raise CommandError(str(exc)) from exc
    verdict = translator.check_input(volume, axis=args.axis, resample=not args.keep_spacing)
    print(f"{source}: {verdict.summary()}", file=sys.stderr)
    return volume, verdict


def run(args: argparse.Namespace) -> int:
    """Translate every input; exit 0 when all were written."""
    if args.batch_size is not None and args.batch_size < 1:
        raise CommandError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    if args.samples < 1:
        raise CommandError(f"--samples must be ≥ 1, got {args.samples}")
    translator = _load(args)
    try:
        warning = cpu_features.check_precision(
            args.precision, translator.device, force=args.force, how_to_force="add --force"
        )
    except cpu_features.EmulatedPrecisionError as exc:
        raise CommandError(f"--precision {args.precision}: {exc}") from exc
    if warning:
        print(warning, file=sys.stderr)
    target = translator.metadata.target
    plan = _plan(args, target)
    mask = _read_mask(args.mask) if args.mask else None
    labels = _read_mask(args.labels) if args.labels else None
    if args.strict:  # every input is checked before any output is written
        refused = [
            f"{source}: " + "; ".join(verdict.reasons)
            for source, _, _ in plan
            if (verdict := _checked(translator, source, args)[1]).ood
        ]
        if refused:
            raise CommandError("refused by --strict: " + " | ".join(refused))
    claimed = [] if args.overwrite else _claim(_outputs(args, plan))
    try:
        for source, image_path, uncertainty_path in plan:
            _translate_one(
                args, translator, source, image_path, uncertainty_path if args.uncertainty else None, mask, labels
            )
            if args.overwrite and not args.uncertainty and uncertainty_path.exists():
                uncertainty_path.unlink()
                print(f"removed {uncertainty_path} (it belonged to the replaced image)", file=sys.stderr)
    finally:
        _release(claimed)
    return 0


def _translate_one(
    args: argparse.Namespace,
    translator: Translator,
    source: Path,
    image_path: Path,
    uncertainty_path: Path | None,
    mask: Volume | None,
    labels: Volume | None = None,
) -> None:
    """Read, check, translate and write one input (replacing a claimed placeholder)."""
    target = translator.metadata.target
    volume, _ = _checked(translator, source, args)
    label_map = None if labels is None else _on_grid(labels, volume, "--labels")
    grid = None if args.keep_spacing else translator.resampling(volume.array.shape, volume.spacing, args.axis)
    if grid is not None:
        print(f"{source}: {grid.describe()}", file=sys.stderr)
    try:
        result = translator.translate_volume(
            volume,
            axis=args.axis,
            batch_size=args.batch_size,
            precision=args.precision,
            uncertainty=args.uncertainty if args.uncertainty in ("tta", "mc_dropout", "samples") else None,
            mc_samples=args.samples,
            seed=args.seed,
            steps=args.steps,
            scale=args.uncertainty == "scale",
            progress=progress_bar(source.name),
            mask=_mask_for(mask, volume),
            labels=label_map,
            resample=not args.keep_spacing,
        )
    except ValueError as exc:  # the engine's word on the label map: missing, not wanted, out of range
        raise CommandError(f"{source}: {exc}") from exc
    outputs = [(image_path, result.image)]
    if uncertainty_path is not None:
        outputs.append((uncertainty_path, result.scale if args.uncertainty == "scale" else result.uncertainty))
    for path, array in outputs:
        try:
            write_volume(volume.with_array(array, modality=target), path, overwrite=True)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot write {path}: {exc}") from exc
        print(path)
