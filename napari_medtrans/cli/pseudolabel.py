"""``medtrans pseudolabel``: pseudo labels for an unlabelled modality through a translator.

tutorship: the translator maps the labelled (source) modality to the target
modality; a segmenter is trained on translated source images and applied to the
target images. adaptation: the translator maps target → source; a segmenter
trained on the source images is applied to the translated target images.
Writes ``<name>_image.nii.gz``, ``<name>_labels.nii.gz`` and
``<name>_confidence.nii.gz`` per target volume and ``summary.json``, which the
"Review pseudo labels" widget opens. Where ground truth exists (``--phantom``,
``--target-labels``) the summary also holds the Dice, the ceiling (the shipped
target-modality segmenter on the real target images), the per-slice Spearman ρ
of the confidence scores against Dice and the voxel AUROC for "label wrong".

``--quality fast`` (default) gives labels in minutes on a CPU; ``good`` trains
the segmenter five times longer. Adaptation uses the shipped segmenter of the
labelled modality where its tissues fit (``--train-segmenter`` trains one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_medtrans.cli import CommandError
from napari_medtrans.constants import DEVICES
from napari_medtrans.progress import Progress

STRATEGIES = ("tutorship", "adaptation")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pseudolabel`` subcommand."""
    parser = subparsers.add_parser(
        "pseudolabel",
        help="make pseudo labels for the target modality (tutorship or adaptation)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--strategy", required=True, choices=STRATEGIES)
    parser.add_argument("--translator", required=True, metavar="NAME", help="translator name or path")
    data = parser.add_argument_group("data (folders, or --phantom)")
    data.add_argument("--source-images", type=Path, metavar="DIR", help="labelled source-modality images")
    data.add_argument("--source-labels", type=Path, metavar="DIR", help="their labels (same file names)")
    data.add_argument("--target-images", type=Path, metavar="DIR", help="target-modality images to label")
    data.add_argument("--target-labels", type=Path, metavar="DIR", help="ground truth for Dice (optional)")
    data.add_argument("--phantom", action="store_true", help="use phantom heads (ground truth known)")
    data.add_argument("--phantom-sources", type=int, default=4, metavar="N", help="labelled phantoms (default 4)")
    data.add_argument("--phantom-targets", type=int, default=2, metavar="N", help="target phantoms (default 2)")
    data.add_argument(
        "--phantom-shape",
        type=int,
        nargs=3,
        default=(32, 128, 128),
        metavar=("Z", "Y", "X"),
        help="phantom grid (default 32 128 128, the shipped models' training shape)",
    )
    data.add_argument(
        "--phantom-seed",
        type=int,
        default=100,
        help="first phantom seed: sources take the next --phantom-sources, targets (held out) the ones after",
    )
    seg = parser.add_argument_group("segmenter training")
    seg.add_argument(
        "--quality",
        choices=("fast", "good"),
        default="fast",
        help="segmenter budget: fast (default, minutes on a CPU) or good (5x the iterations)",
    )
    seg.add_argument("--iterations", type=int, help="segmenter iterations (overrides --quality)")
    seg.add_argument("--batch-size", type=int, default=8)
    seg.add_argument("--seed", type=int, default=0)
    seg.add_argument(
        "--train-segmenter",
        action="store_true",
        help="adaptation: train a segmenter on the labelled images even where a shipped one fits",
    )
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    parser.add_argument("--json", action="store_true", help="print the Dice and confidence figures as one JSON line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen strategy and write its results."""
    from napari_medtrans.checkpoint import CheckpointError
    from napari_medtrans.inference import load_translator
    from training import pseudolabels as pl

    folders = (args.source_images, args.source_labels, args.target_images)
    if args.phantom == any(f is not None for f in folders) or not (args.phantom or all(folders)):
        raise CommandError("give either --phantom or all of --source-images, --source-labels, --target-images")
    if (args.out / "summary.json").exists() and not args.overwrite:
        raise CommandError(f"{args.out / 'summary.json'} exists; pass --overwrite to replace it")
    try:
        translator = load_translator(args.translator, device=args.device)
    except (CheckpointError, FileNotFoundError, KeyError) as exc:
        raise CommandError(f"cannot load translator {args.translator!r}: {exc}") from exc
    source_modality, target_modality = pl.STRATEGIES[args.strategy].modalities(translator)
    try:
        if args.phantom:
            sources, targets, names = pl.phantom_inputs(
                source_modality,
                target_modality,
                n_source=args.phantom_sources,
                n_target=args.phantom_targets,
                shape=tuple(args.phantom_shape),
                seed=args.phantom_seed,
            )
        else:
            _require_label_grids(args.source_images, args.source_labels)
            if args.target_labels is not None:
                _require_label_grids(args.target_images, args.target_labels)
            sources, targets, names = pl.folder_inputs(
                args.source_images,
                args.source_labels,
                args.target_images,
                args.target_labels,
                source_modality=source_modality,
                target_modality=target_modality,
            )
        settings = pl.settings_for(
            args.quality,
            iterations=args.iterations,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            shipped=not args.train_segmenter,
        )
        with Progress(sys.stderr) as progress:
            results = pl.run(args.strategy, translator, sources, targets, names, settings, progress)
            progress.note("ceiling: the shipped segmenter on the real targets")
            ceiling = pl.ceiling(targets, names, target_modality, settings)
    except (pl.PseudoLabelError, ValueError, OSError, CheckpointError) as exc:  # GridMismatch is a ValueError
        raise CommandError(str(exc)) from exc
    info = pl.describe(args.strategy, translator, settings) | {"quality": args.quality}
    if args.phantom:  # which subjects were labelled and which held out (for Dice, ceiling and confidence)
        first_target = args.phantom_seed + args.phantom_sources
        info["phantom_seeds"] = {
            "sources": list(range(args.phantom_seed, first_target)),
            "targets": list(range(first_target, first_target + args.phantom_targets)),
        }
    summary = pl.write_results(results, args.out, info, ceiling=ceiling, overwrite=args.overwrite, names=names)
    print(json.dumps(figures(summary)) if args.json else "\n".join(summary_lines(summary)))
    print(f"wrote {len(results)} pseudo-label volumes and summary.json to {args.out}")
    return 0


def _require_label_grids(images: Path, labels: Path) -> None:
    """Every label volume lies on the grid of the image of the same name (else a clear error)."""
    from napari_medtrans.io import read_volume, require_same_grid, volume_files

    image_files, label_files = volume_files(images), volume_files(labels)
    for name in sorted(set(image_files) & set(label_files)):
        require_same_grid(read_volume(image_files[name]), read_volume(label_files[name]), what="labels")


def figures(summary: dict) -> dict:
    """The run's figures for machines (``--json``): mean Dice per volume and overall, ceiling, confidence quality."""
    return {c["name"]: c["mean_dice"] for c in summary["cases"]} | {
        "mean_dice": summary["mean_dice"],
        "ceiling": summary["ceiling"] and summary["ceiling"]["mean_dice"],
        "ratio_to_ceiling": summary["ratio_to_ceiling"],
        "confidence": summary["confidence"],
    }


def summary_lines(summary: dict) -> list[str]:
    """The run's result for a person: Dice per volume against the ceiling, how well confidence ranks errors."""
    info = summary["translator"]
    lines = [
        f"{summary['strategy']} with {info['name']} ({info['source']}→{info['target']}): "
        f"{len(summary['cases'])} {summary['target_modality']} volume(s) labelled"
    ]
    width = max(len(c["name"]) for c in summary["cases"])
    for case in summary["cases"]:
        dice = "" if case["mean_dice"] is None else f"mean Dice {case['mean_dice']:.3f}, "
        lines.append(f"  {case['name']:<{width}}  {dice}mean confidence {case['mean_confidence']:.3f}")
    if summary["mean_dice"] is None:
        lines.append("  no ground truth: no Dice (review the labels in the Review pseudo labels widget)")
        return lines
    ceiling = summary["ceiling"]
    versus = (
        f" vs ceiling {ceiling['mean_dice']:.3f} ({ceiling['segmenter']} on the real images, "
        f"{100 * summary['ratio_to_ceiling']:.0f} % of it)"
        if ceiling
        else " (no shipped segmenter of these tissues for a ceiling)"
    )
    lines.append(f"  mean Dice {summary['mean_dice']:.3f}{versus}")
    confidence = summary["confidence"]
    if confidence:
        rho = confidence["slice_spearman"].get(confidence["queue_score"])
        auroc = confidence["voxel_auroc"]
        lines.append(
            f"  confidence: slice ranking Spearman ρ {'n/a' if rho is None else f'{rho:.2f}'} ({confidence['queue_score']}), "
            f"voxel AUROC for 'label wrong' {'n/a' if auroc is None else f'{auroc:.2f}'}"
        )
    return lines
