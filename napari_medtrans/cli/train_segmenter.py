"""``medtrans train-segmenter --modality CT (--phantom N | --images F... --labels F...) --out FILE``.

Trains a small slice-wise segmentation U-Net on real images of one modality and
their tissue labels (the evaluation's anatomical-consistency judge) and writes
it as a safetensors segmenter. With ``--phantom`` it trains on phantom subjects
(seeds 2000…) and reports Dice per tissue on held-out phantom subjects, which
is stored in the file's provenance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_medtrans.cli import CommandError
from napari_medtrans.constants import MODALITIES
from napari_medtrans.progress import Progress
from napari_medtrans.rundir import require_writable_folder

#: First phantom seed of segmenter training subjects (translators train from 0, evaluation uses 5000…).
SEGMENTER_SEED = 2000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-segmenter`` subcommand."""
    parser = subparsers.add_parser(
        "train-segmenter",
        help="train a tissue segmenter for Dice evaluation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modality", required=True, choices=MODALITIES, help="image domain to segment")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--phantom", type=int, metavar="N", help="train on N phantom subjects")
    source.add_argument("--images", nargs="+", type=Path, metavar="FILE", help="image volumes")
    parser.add_argument("--labels", nargs="+", type=Path, metavar="FILE", help="label volumes, same order as --images")
    parser.add_argument("--out", required=True, type=Path, help="segmenter file to write (.safetensors)")
    parser.add_argument(
        "--held-out",
        type=int,
        default=2,
        metavar="N",
        help="phantom subjects to report Dice on (with --phantom; default 2)",
    )
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate, cosine-decayed (default 2e-3)")
    parser.add_argument(
        "--init",
        type=Path,
        metavar="FILE",
        help="start from this segmenter's weights (same network, e.g. to fine-tune on whole slices)",
    )
    parser.add_argument("--features", type=int, default=16, help="U-Net width (default 16)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net levels (default 4)")
    parser.add_argument(
        "--context", type=int, default=1, help="neighbouring slices on either side as input channels (2.5-D; default 1)"
    )
    parser.add_argument(
        "--tissue-jitter",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="σ of a random intensity offset per tissue and sample, in network units "
        "(the window spans [-1, 1]; CT: 0.016 = 8 HU); default 0: off",
    )
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        action="append",
        default=[],
        metavar=("LOW", "HIGH"),
        help="CT only: a further window (HU) whose image is more input channels, e.g. --window -20 100 for brain; "
        "repeatable; with --init, a segmenter without it starts with zero weights on it",
    )
    parser.add_argument(
        "--class-weight",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "WEIGHT"),
        help="cross-entropy weight of one label value (others 1), e.g. --class-weight 5 1.5; repeatable",
    )
    parser.add_argument("--crop", type=int, default=64, help="training window size (default 64)")
    parser.add_argument(
        "--save-every",
        type=int,
        default=0,
        metavar="N",
        help="save the segmenter so far every N iterations (a stopped run leaves a file)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=run)


def _data(args: argparse.Namespace) -> tuple[list[np.ndarray], list[np.ndarray], dict[int, str]]:
    if args.phantom is not None:
        from napari_medtrans.phantom import TISSUES, generate_subject

        if args.phantom < 1:
            raise CommandError("--phantom needs at least 1 subject")
        subjects = [generate_subject(SEGMENTER_SEED + i) for i in range(args.phantom)]
        return [getattr(s, args.modality.lower()) for s in subjects], [s.labels for s in subjects], dict(TISSUES)
    from napari_medtrans.io import VolumeReadError, read_volume

    if not args.labels or len(args.labels) != len(args.images):
        raise CommandError("--labels must name one label volume per --images volume")
    try:
        images = [read_volume(p, modality=args.modality).array for p in args.images]
        labels = [read_volume(p).array.astype(np.int64) for p in args.labels]
    except VolumeReadError as exc:
        raise CommandError(str(exc)) from exc
    values = sorted({int(v) for lab in labels for v in np.unique(lab)} | {0})
    if values[0] < 0:
        raise CommandError("label volumes must hold non-negative integers")
    return images, labels, {v: "background" if v == 0 else f"label {v}" for v in range(values[-1] + 1)}


def run(args: argparse.Namespace) -> int:
    """Train, optionally score on held-out phantom subjects, write the segmenter."""
    from napari_medtrans.segmenter import save_segmenter
    from training.segmenter import train_segmenter

    if args.out.exists() and not args.overwrite:
        raise CommandError(f"{args.out} exists; pass --overwrite to replace it")
    try:
        require_writable_folder(args.out.parent)  # before the training, not after it
    except OSError as exc:
        raise CommandError(exc.strerror) from exc
    images, labels, names = _data(args)
    init = _init(args.init)

    progress = Progress(sys.stderr)
    progress.begin(f"training the {args.modality} segmenter", args.iterations, unit="it")
    try:
        segmenter = train_segmenter(
            images,
            labels,
            modality=args.modality,
            label_names=names,
            name=args.out.name.split(".")[0],
            iterations=args.iterations,
            batch_size=args.batch_size,
            lr=args.lr,
            init=init,
            tissue_jitter=args.tissue_jitter,
            windows=[tuple(w) for w in args.window],
            class_weights=_class_weights(args.class_weight),
            features=args.features,
            depth=args.depth,
            context=args.context,
            crop=args.crop,
            seed=args.seed,
            device=args.device,
            path=args.out if args.save_every else None,
            save_every=args.save_every,
            overwrite=args.overwrite,
            progress=lambda step, loss: progress.update(step, loss=loss),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    progress.close()
    if args.phantom is not None and args.held_out > 0:
        segmenter.metadata.provenance["held_out"] = _held_out_dice(segmenter, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_segmenter(args.out, segmenter.model, segmenter.metadata, overwrite=args.overwrite or bool(args.save_every))
    print(f"wrote {args.out}")
    return 0


def _class_weights(pairs: list[list[str]]) -> dict[int, float]:
    """``--class-weight`` pairs as {label value: weight}; a clear error for non-numbers."""
    try:
        return {int(label): float(weight) for label, weight in pairs}
    except ValueError as exc:
        raise CommandError(f"--class-weight needs an integer label and a number: {exc}") from exc


def _init(path: Path | None):
    """The segmenter to start from, or None; a clear error for a bad file."""
    if path is None:
        return None
    from napari_medtrans.checkpoint import CheckpointError
    from napari_medtrans.segmenter import load_segmenter

    try:
        return load_segmenter(path, device="cpu")
    except CheckpointError as exc:
        raise CommandError(f"--init: {exc}") from exc


def _held_out_dice(segmenter, args: argparse.Namespace) -> dict:
    """Dice per tissue on held-out phantom subjects (the evaluation's seeds), printed and returned."""
    from napari_medtrans.evaluation import HELD_OUT_SEED
    from napari_medtrans.metrics import dice_per_label, mean_dice
    from napari_medtrans.phantom import TISSUES, generate_subject

    subjects = [generate_subject(HELD_OUT_SEED + i) for i in range(args.held_out)]
    predicted = np.concatenate([segmenter.segment(getattr(s, args.modality.lower())).labels.ravel() for s in subjects])
    truth = np.concatenate([s.labels.ravel() for s in subjects])
    dice = dice_per_label(predicted, truth, {k: v for k, v in TISSUES.items() if k})
    for tissue, value in dice.items():
        print(f"  Dice {tissue:20s} {'n/a' if value is None else f'{value:.3f}'}")
    print(
        f"  mean Dice {mean_dice(dice):.3f} on {len(subjects)} held-out phantom subjects "
        f"(seeds {HELD_OUT_SEED}…{HELD_OUT_SEED + len(subjects) - 1})"
    )
    return {"seeds": [s.seed for s in subjects], "dice": dice, "dice_mean": mean_dice(dice)}
