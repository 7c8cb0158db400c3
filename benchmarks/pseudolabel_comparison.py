"""Compare tutorship and adaptation pseudo labels on a small (T1/T2) and a large (T1/CT) gap.

Run: ``python benchmarks/pseudolabel_comparison.py [--work DIR] [--translator-iterations N]
[--segmenter-iterations N]``. For each gap it trains two tiny pix2pix translators
on paired phantoms (labelled → target for tutorship, target → labelled for
adaptation; cached in ``--work``), then labels unseen target phantoms with both
strategies and compares mean Dice (non-background classes) against a threshold
baseline and, with ``--references``, two more segmenters with the same settings:
*direct* (trained on the labelled modality, applied to the target images
untranslated: the size of the gap) and *oracle* (trained on real target images
with their labels: the ceiling). It also reports how well per-slice confidence
ranks per-slice Dice (Spearman ρ), which the review queue relies on. Results go
to ``benchmarks/results/pseudolabel_comparison.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from napari_medtrans.inference import load_translator
from napari_medtrans.metrics import dice_per_label, mean_dice
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json
from training import pseudolabels as pl
from training.config import DataConfig, TrainConfig
from training.loop import train

GAPS = {"small (T1→T2)": ("T1", "T2"), "large (T1→CT)": ("T1", "CT")}
RESULTS = Path(__file__).parent / "results"
SHAPE = (16, 64, 64)


def train_translator(work: Path, source: str, target: str, iterations: int) -> Path:
    """A tiny pix2pix ``source``→``target`` translator on paired phantoms (reused if present)."""
    run_dir = work / f"pix2pix-{source.lower()}-{target.lower()}-{iterations}"
    path = run_dir / "translator.safetensors"
    if not path.exists():
        cfg = TrainConfig(
            method="pix2pix", run_dir=str(run_dir), iterations=iterations, batch_size=2, precision="fp32",
            device="cpu", log_every=50, checkpoint_every=iterations, preview_every=iterations,
            data=DataConfig(phantom="paired", phantom_subjects=6, phantom_depth=SHAPE[0], size=SHAPE[1],
                            source_modality=source, target_modality=target),
            model={"ngf": 8, "n_blocks": 2, "ndf": 16, "n_layers_d": 2},
        )
        if train(cfg) != 0:
            raise RuntimeError(f"training {run_dir} failed; see {run_dir / 'log.txt'}")
    return path


def slice_rank(result: pl.PseudoLabels, truth: np.ndarray, tissues: dict[int, str]) -> float:
    """Spearman ρ between per-slice confidence and per-slice mean Dice."""
    dice = [mean_dice(dice_per_label(result.labels[z], truth[z], tissues)) for z in range(truth.shape[0])]
    keep = [z for z, d in enumerate(dice) if d is not None]
    return float(spearmanr(result.slice_confidence[keep], [dice[z] for z in keep]).statistic)


def reference_dice(
    images: list[pl.LabelledImage], targets: list[pl.TargetImage], modality: str, names: dict[int, str],
    settings: pl.SegmenterSettings,
) -> list[float]:
    """Mean Dice of a segmenter trained on ``images`` (``modality``) applied to the target images."""
    segmenter = pl.train_segmenter_on(images, modality, names, settings)
    tissues = {k: v for k, v in names.items() if k}
    return [mean_dice(dice_per_label(segmenter.segment(t.image.array).labels, t.truth, tissues)) for t in targets]


def compare_gap(
    labelled: str, target: str, work: Path, args: argparse.Namespace
) -> dict:
    """All strategies and references for one modality gap."""
    settings = pl.SegmenterSettings(args.segmenter_iterations, 8, args.seed, "cpu")
    sources, targets, names = pl.phantom_inputs(
        labelled, target, n_source=args.sources, n_target=args.targets, shape=SHAPE, seed=100, coarse=args.coarse
    )
    tissues = {k: v for k, v in names.items() if k}
    row: dict = {}
    for strategy, (src, dst) in {"tutorship": (labelled, target), "adaptation": (target, labelled)}.items():
        translator = load_translator(train_translator(work, src, dst, args.translator_iterations), device="cpu")
        started = time.time()
        results = pl.run(strategy, translator, sources, targets, names, settings)
        row[strategy] = {
            "mean_dice": float(np.mean([r.mean_dice for r in results])),
            "per_case": [round(r.mean_dice, 4) for r in results],
            "per_tissue": {
                name: float(np.mean([r.dice[name] for r in results if r.dice[name] is not None]))
                for name in tissues.values()
            },
            "mean_confidence": float(np.mean([r.confidence[r.labels > 0].mean() for r in results])),
            "slice_confidence_vs_dice_spearman": float(
                np.mean([slice_rank(r, t.truth, tissues) for r, t in zip(results, targets)])
            ),
            "seconds": round(time.time() - started, 1),
        }
    references = {
        "threshold": [mean_dice(dice_per_label(pl.threshold_baseline(t.image.array, sources), t.truth, tissues))
                      for t in targets],
    }
    if args.references:
        real_target = pl.phantom_inputs(target, target, n_source=args.sources, n_target=0, shape=SHAPE, seed=200,
                                        coarse=args.coarse)[0]
        references["direct (no translation)"] = reference_dice(sources, targets, target, names, settings)
        references["oracle (real target labels)"] = reference_dice(real_target, targets, target, names, settings)
    row.update({k: {"mean_dice": float(np.mean(v)), "per_case": [round(x, 4) for x in v]} for k, v in references.items()})
    return row


def markdown(results: dict, command: str) -> str:
    """The results as a Markdown table."""
    first = next(iter(results["gaps"].values()))
    columns = [c for c in ["tutorship", "adaptation", "direct (no translation)", "oracle (real target labels)",
                           "threshold"] if c in first]
    lines = [
        "# Pseudo labels: tutorship vs adaptation on the phantom",
        "",
        f"Command: `{command}`  ",
        f"Machine: {results['machine']}; {results['date']}; total {results['seconds']:.0f} s.  ",
        f"Settings: {json.dumps(results['settings'])}",
        "",
        "Mean Dice over the non-background classes of unseen target phantoms"
        + (" (coarse classes: soft tissue, bone, brain, CSF):" if results["settings"]["coarse"] else ":"),
        "",
        "| gap | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for gap, row in results["gaps"].items():
        lines.append(f"| {gap} | " + " | ".join(f"{row[c]['mean_dice']:.3f}" for c in columns) + " |")
    lines += ["", "Per-slice confidence vs per-slice Dice (Spearman ρ, mean over target volumes):", ""]
    for gap, row in results["gaps"].items():
        lines.append(
            f"- {gap}: tutorship {row['tutorship']['slice_confidence_vs_dice_spearman']:.2f}, "
            f"adaptation {row['adaptation']['slice_confidence_vs_dice_spearman']:.2f}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/pseudolabel-comparison"),
                        help="where translators are trained and cached")
    parser.add_argument("--translator-iterations", type=int, default=300)
    parser.add_argument("--segmenter-iterations", type=int, default=300)
    parser.add_argument("--sources", type=int, default=4, help="labelled phantoms")
    parser.add_argument("--targets", type=int, default=3, help="target phantoms to label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coarse", action="store_true", help="merge tissues into 4 classes + background")
    parser.add_argument("--references", action="store_true",
                        help="also train the direct (no translation) and oracle segmenters")
    args = parser.parse_args()
    started = time.time()
    command = "python benchmarks/pseudolabel_comparison.py " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if isinstance(v, bool) else f" {v}")
        for k, v in vars(args).items() if v is not False
    )
    results = {
        "gaps": {},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()} | {"shape": list(SHAPE)},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads, CPU",
    }
    RESULTS.mkdir(exist_ok=True)
    for gap, (labelled, target) in GAPS.items():  # results are written after each gap
        results["gaps"][gap] = compare_gap(labelled, target, args.work, args)
        results |= {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": time.time() - started}
        atomic_write_json(RESULTS / "pseudolabel_comparison.json", results | {"command": command})
        atomic_write_bytes(RESULTS / "pseudolabel_comparison.md", markdown(results, command).encode())
    print(markdown(results, command))


if __name__ == "__main__":
    main()
