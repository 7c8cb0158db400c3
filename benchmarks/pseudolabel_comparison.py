"""Pseudo labels with the defaults of ``medtrans pseudolabel``: Dice vs ceiling, confidence quality, simulated review.

Run: ``python benchmarks/pseudolabel_comparison.py [--gaps large small] [--quality fast|good]
[--sources N] [--targets N] [--work DIR] [--translator-iterations N] [--random-orders N]``.

For each modality gap it labels held-out phantom targets (seeds 100 + sources …,
never seen by the translators, seeds 0…, or the shipped segmenters, seeds
2000…) with tutorship and adaptation exactly as ``medtrans pseudolabel
--phantom`` does with the given ``--quality``:

- large gap: the shipped ``t1-ct-resnet`` translator (tutorship labels CT
  from labelled T1, adaptation labels T1 from labelled CT);
- small gap: a pix2pix T1→T2 translator trained here at the shipped models'
  recipe size (cached in ``--work``).

It reports the mean Dice against the ceiling (the shipped segmenter of the
target modality on the real targets), per-slice Spearman ρ of every slice
score against the per-slice Dice (slices of all targets pooled, as the review
queue pools them) and the voxel AUROC of the confidence for "label wrong".
Then it simulates a review: an annotator replaces the k first slices of the
queue by ground truth; the volume Dice after k slices is plotted for the
confidence order, random orders (mean of ``--random-orders``) and the oracle
order (worst true Dice first). Results: ``benchmarks/results/pseudolabel_comparison.{json,md}``
and ``benchmarks/results/review_simulation.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import load_note

from napari_medtrans.confidence import SLICE_SCORES
from napari_medtrans.inference import load_translator
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json
from training import pseudolabels as pl

RESULTS = Path(__file__).parent / "results"
GAPS = {"large": ("T1", "CT"), "small": ("T1", "T2")}
SHIPPED_TRANSLATORS = {("T1", "CT"): "t1-ct-resnet"}
SIMULATED_FRACTIONS = (0.1, 0.25, 0.5)


def translator_for(source: str, target: str, work: Path, iterations: int) -> str:
    """The shipped translator name, or a pix2pix ``source``→``target`` trained here (cached)."""
    if (source, target) in SHIPPED_TRANSLATORS:
        return SHIPPED_TRANSLATORS[(source, target)]
    from training.config import DataConfig, TrainConfig
    from training.loop import train

    run_dir = work / f"pix2pix-{source.lower()}-{target.lower()}-{iterations}"
    path = run_dir / "translator.safetensors"
    if not path.exists():
        cfg = TrainConfig(
            method="pix2pix",
            run_dir=str(run_dir),
            iterations=iterations,
            batch_size=4,
            precision="fp32",
            device="cpu",
            log_every=50,
            checkpoint_every=iterations,
            preview_every=iterations,
            data=DataConfig(
                phantom="paired",
                phantom_subjects=8,
                phantom_depth=32,
                size=128,
                source_modality=source,
                target_modality=target,
            ),
            model={"ngf": 16, "n_blocks": 4, "ndf": 16},
        )
        if train(cfg) != 0:
            raise RuntimeError(f"training {run_dir} failed; see {run_dir / 'log.txt'}")
    return str(path)


# -- simulated review ------------------------------------------------------------------------
def _slice_counts(labels: np.ndarray, truth: np.ndarray, tissues: list[int]) -> np.ndarray:
    """(z, tissues, 3): |label ∩ truth|, |label|, |truth| per slice and tissue."""
    z = labels.shape[0]
    lab, tru = labels.reshape(z, 1, -1), truth.reshape(z, 1, -1)
    values = np.asarray(tissues)[None, :, None]
    p, t = lab == values, tru == values
    return np.stack([(p & t).sum(-1), p.sum(-1), t.sum(-1)], axis=-1).astype(np.int64)


def review_curve(counts: list[np.ndarray], order: list[tuple[int, int]]) -> np.ndarray:
    """Mean volume Dice after replacing the first k slices of ``order`` by ground truth, k = 0 … len(order)."""
    totals = [c.sum(0) for c in counts]  # per case (tissues, 3)

    def mean_dice() -> float:
        dice = []
        for total in totals:
            denominator = total[:, 1] + total[:, 2]
            present = denominator > 0
            dice.append(np.mean(2 * total[present, 0] / denominator[present]))
        return float(np.mean(dice))

    curve = [mean_dice()]
    for case, z in order:
        inter, size_l, size_t = counts[case][z].T
        totals[case][:, 0] += size_t - inter
        totals[case][:, 1] += size_t - size_l
        curve.append(mean_dice())
    return np.array(curve)


def simulate_review(
    results: list[pl.PseudoLabels],
    targets: list[pl.TargetImage],
    names: dict[int, str],
    random_orders: int,
    seed: int = 0,
) -> dict:
    """Volume Dice vs slices fixed for the confidence, random and oracle orders."""
    tissues = [k for k in names if k]
    counts = [_slice_counts(r.labels, t.truth, tissues) for r, t in zip(results, targets)]
    entries = [(c, z) for c, r in enumerate(results) for z in range(r.labels.shape[0])]
    curves = {}
    for score in results[0].slice_scores:
        values = [float(results[c].slice_scores[score][z]) for c, z in entries]
        curves[score] = review_curve(counts, [entries[i] for i in np.argsort(values, kind="stable")])
    start = review_curve(counts, [])[0]
    gains = [review_curve(counts, [entry])[1] - start for entry in entries]  # true gain of fixing one slice
    rng = np.random.default_rng(seed)
    curves["random"] = np.mean(
        [review_curve(counts, [entries[i] for i in rng.permutation(len(entries))]) for _ in range(random_orders)],
        axis=0,
    )
    curves["oracle"] = review_curve(counts, [entries[i] for i in np.argsort(gains)[::-1]])
    return {name: [round(float(v), 5) for v in curve] for name, curve in curves.items()}


def slices_to_reach(curve: list[float], level: float) -> int | None:
    """The fewest fixed slices after which the curve reaches ``level``."""
    return next((k for k, v in enumerate(curve) if v >= level), None)


# -- one gap ---------------------------------------------------------------------------------------
def run_gap(labelled: str, target: str, args: argparse.Namespace) -> dict:
    """Both strategies with the CLI defaults on one gap."""
    translator = load_translator(translator_for(labelled, target, args.work, args.translator_iterations), device="cpu")
    settings = pl.settings_for(args.quality, device="cpu")
    row = {"translator": translator.metadata.name}
    for strategy in pl.STRATEGIES:
        source, target_modality = pl.STRATEGIES[strategy].modalities(translator)
        sources, targets, names = pl.phantom_inputs(
            source, target_modality, n_source=args.sources, n_target=args.targets
        )
        started = time.time()
        results = pl.run(strategy, translator, sources, targets, names, settings)
        seconds = time.time() - started
        ceiling = pl.ceiling(targets, names, target_modality, settings)
        mean = float(np.mean([r.mean_dice for r in results]))
        simulation = simulate_review(results, targets, names, args.random_orders)
        n = len(simulation["random"]) - 1
        halfway = simulation["random"][0] + 0.5 * (simulation["random"][-1] - simulation["random"][0])
        row[strategy] = {
            "labels": f"{target_modality} from labelled {source}",
            "mean_dice": mean,
            "ceiling": ceiling and ceiling["mean_dice"],
            "ratio_to_ceiling": mean / ceiling["mean_dice"] if ceiling else None,
            "per_tissue": {
                name: float(np.mean([r.dice[name] for r in results if r.dice[name] is not None]))
                for k, name in names.items()
                if k
            },
            "confidence": pl.confidence_quality(results),
            "seconds": round(seconds, 1),
            "review": simulation,
            "review_summary": {
                **{
                    f"dice_after_{int(f * 100)}pct": {o: simulation[o][round(f * n)] for o in simulation}
                    for f in SIMULATED_FRACTIONS
                },
                "halfway_level": round(halfway, 4),
                "slices_to_halfway": {o: slices_to_reach(simulation[o], halfway) for o in simulation},
                "slices": n,
            },
        }
    return row


# -- output ----------------------------------------------------------------------------------------
def plot(results: dict, path: Path) -> None:
    """Volume Dice vs fixed slices, one panel per gap and strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(gap, s) for gap, row in results["gaps"].items() for s in pl.STRATEGIES if s in row]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    styles = {
        "mean": ("C2", "-"),
        "expected_dice": ("C0", "-"),
        "volume_impact": ("C3", "-"),
        "random": ("C1", "--"),
        "oracle": ("0.6", ":"),
    }
    for ax, (gap, strategy) in zip(axes[0], panels):
        entry = results["gaps"][gap][strategy]
        for order, curve in entry["review"].items():
            color, line = styles[order]
            label = f"{order} order" + (" (queue)" if order == results["queue_score"] else "")
            ax.plot(np.arange(len(curve)), curve, line, color=color, label=label)
        ax.set_title(f"{gap} gap, {strategy}\n({entry['labels']})", fontsize=9)
        ax.set_xlabel("slices fixed (replaced by ground truth)")
        ax.set_ylabel("mean volume Dice")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown(results: dict) -> str:
    """The results as Markdown."""
    lines = [
        "# Pseudo labels with the `medtrans pseudolabel` defaults: Dice vs ceiling, confidence, simulated review",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}; {results['date']}; total {results['seconds']:.0f} s.  ",
        f"Load: {results['load']}  ",
        f"Settings: {json.dumps(results['settings'])}",
        "",
        "Held-out phantom targets (shape 32×128×128); Dice = mean over the tissues of each target, then over",
        "targets; ceiling = the shipped segmenter of the target modality on the real targets.",
        'Voxel AUROC: of the voxel confidence for "label wrong"; the confidence is the segmenter margin ×',
        "(1 − test-time-flip disagreement), in adaptation also × the boundary factor (distance to the nearest",
        "other label), 3×3 mean: the combination chosen on validation phantoms (`napari_medtrans.confidence`).",
        "",
        "| gap | strategy | labels | Dice | ceiling | Dice / ceiling | "
        + " | ".join(f"Spearman ρ ({score})" for score in SLICE_SCORES)
        + " | voxel AUROC | seconds |",
        "|---|---|---|---|---|---|" + "---|" * len(SLICE_SCORES) + "---|---|",
    ]
    for gap, row in results["gaps"].items():
        for strategy in pl.STRATEGIES:
            e = row[strategy]
            rho = e["confidence"]["slice_spearman"]
            lines.append(
                f"| {gap} ({row['translator']}) | {strategy} | {e['labels']} | {e['mean_dice']:.3f} | "
                f"{_fmt(e['ceiling'])} | {_fmt(e['ratio_to_ceiling'])} | "
                + " | ".join(_fmt(rho[score]) for score in SLICE_SCORES)
                + f" | {_fmt(e['confidence']['voxel_auroc'])} | {e['seconds']:.0f} |"
            )
    lines += [
        "",
        "Per-tissue Dice:",
        "",
        "| gap | strategy | " + " | ".join(next(iter(results["gaps"].values()))["tutorship"]["per_tissue"]) + " |",
        "|---|---|" + "---|" * len(next(iter(results["gaps"].values()))["tutorship"]["per_tissue"]),
    ]
    for gap, row in results["gaps"].items():
        for strategy in pl.STRATEGIES:
            lines.append(
                f"| {gap} | {strategy} | " + " | ".join(f"{v:.3f}" for v in row[strategy]["per_tissue"].values()) + " |"
            )
    lines += [
        "",
        "## Simulated review (`review_simulation.png`)",
        "",
        (
            "Volume Dice after the first k slices of the queue are replaced by ground truth, for the queue "
            "ordered by each slice score (lowest first); random = mean of "
            f"{results['settings']['random_orders']} random orders; oracle = largest true gain of fixing the "
            f"slice first. The review queue uses `{results['queue_score']}`."
        ),
        "",
        "| gap | strategy | slices | order | 10 % | 25 % | 50 % | slices to halfway |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for gap, row in results["gaps"].items():
        for strategy in pl.STRATEGIES:
            summary = row[strategy]["review_summary"]
            for order in summary["slices_to_halfway"]:
                lines.append(
                    f"| {gap} | {strategy} | {summary['slices']} | {order} | "
                    + " | ".join(f"{summary[f'dice_after_{int(f * 100)}pct'][order]:.3f}" for f in SIMULATED_FRACTIONS)
                    + f" | {summary['slices_to_halfway'][order]} |"
                )
    lines += ["", "Halfway = halfway from the Dice before review to the Dice with every slice fixed."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaps", nargs="+", choices=list(GAPS), default=list(GAPS))
    parser.add_argument("--quality", choices=list(pl.QUALITY), default="fast")
    parser.add_argument("--sources", type=int, default=4, help="labelled phantoms (default 4, as the CLI)")
    parser.add_argument("--targets", type=int, default=2, help="target phantoms (default 2, as the CLI)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("runs/pseudolabel-comparison"),
        help="where the small-gap translator is trained and cached",
    )
    parser.add_argument("--translator-iterations", type=int, default=1000)
    parser.add_argument("--random-orders", type=int, default=20)
    args = parser.parse_args()
    started, load_start = time.time(), os.getloadavg()[0]
    command = "python benchmarks/pseudolabel_comparison.py " + " ".join(sys.argv[1:])
    results = {
        "command": command,
        "gaps": {},
        "queue_score": pl.QUEUE_SCORE,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU",
    }
    RESULTS.mkdir(exist_ok=True)
    for gap in args.gaps:  # results are written after each gap
        results["gaps"][gap] = run_gap(*GAPS[gap], args)
        results |= {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": time.time() - started,
            "load": load_note(load_start, os.getloadavg()[0]),
        }
        atomic_write_json(RESULTS / "pseudolabel_comparison.json", results)
        atomic_write_bytes(RESULTS / "pseudolabel_comparison.md", markdown(results).encode())
        plot(results, RESULTS / "review_simulation.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
