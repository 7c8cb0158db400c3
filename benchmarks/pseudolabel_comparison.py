"""Pseudo labels with the defaults of ``medtrans pseudolabel``: Dice vs ceiling, confidence quality, simulated review.

Run: ``python benchmarks/pseudolabel_comparison.py [--gaps large small] [--quality fast|good]
[--sources N] [--targets N] [--work DIR] [--translator-iterations N] [--random-orders N]
[--translator-methods METHOD … [--translator-batch N] [--translator-set METHOD:KEY=JSON …] [--out STEM]]``.

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

With ``--translator-methods`` (unpaired methods, e.g. ``syndiff cyclegan``) each gap
is instead run once per method with a translator of that method trained here
on the unpaired phantom regime with one budget for all (the evaluation
study's small-scale generator sizes, :func:`evaluation_study.budget`, at the
size, subjects and iterations of the pix2pix above; ``--translator-set``
changes a method option, recorded as a deviation in its metadata). The
report adds each translator's parameters, training CPU seconds, validation
MAE curve (its own validation subjects) and MAE on the held-out targets;
the paired rows of ``pseudolabel_comparison.json`` are quoted as the
reference. Results: ``benchmarks/results/<--out>.{json,md}``.
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
from typing import Any, cast

import numpy as np
import torch
from _machine import load_note
from evaluation_study import Q2_METHODS, validation_curve

from napari_medtrans.confidence import SLICE_SCORES
from napari_medtrans.inference import Translator, load_translator
from napari_medtrans.phantom import DEFAULT_SHAPE, generate_subject
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json
from training import pseudolabels as pl

RESULTS = Path(__file__).parent / "results"
GAPS = {"large": ("T1", "CT"), "small": ("T1", "T2")}
SHIPPED_TRANSLATORS = {("T1", "CT"): "t1-ct-resnet"}
SIMULATED_FRACTIONS = (0.1, 0.25, 0.5)
TRAIN_SUBJECTS, TRAIN_DEPTH, TRAIN_SIZE = 8, 32, 128  # the translators trained here (phantom seeds 0…7)


def pix2pix_dir(source: str, target: str, work: Path, iterations: int) -> Path:
    """Run folder of the pix2pix ``source``→``target`` translator of :func:`translator_for`."""
    return work / f"pix2pix-{source.lower()}-{target.lower()}-{iterations}"


def train_phantom_translator(
    method: str, regime: str, source: str, target: str, run_dir: Path, model: dict, **config: Any
) -> None:
    """Train a ``method`` ``source``→``target`` translator on the ``regime`` phantom cohort into ``run_dir``.

    ``config``: TrainConfig fields (``iterations`` and ``batch_size`` at least).
    """
    from training.config import DataConfig, TrainConfig
    from training.loop import train

    cfg = TrainConfig(
        method=method,
        run_dir=str(run_dir),
        precision="fp32",
        device="cpu",
        log_every=50,
        checkpoint_every=config["iterations"],
        preview_every=config["iterations"],
        data=DataConfig(
            phantom=regime,  # type: ignore[arg-type]
            phantom_subjects=TRAIN_SUBJECTS,
            phantom_depth=TRAIN_DEPTH,
            size=TRAIN_SIZE,
            source_modality=source,
            target_modality=target,
        ),
        model=model,
        **config,
    )
    if train(cfg) != 0:
        raise RuntimeError(f"training {run_dir} failed; see {run_dir / 'log.txt'}")


def translator_for(source: str, target: str, work: Path, iterations: int) -> str:
    """The shipped translator name, or a pix2pix ``source``→``target`` trained here (cached)."""
    if (source, target) in SHIPPED_TRANSLATORS:
        return SHIPPED_TRANSLATORS[(source, target)]
    run_dir = pix2pix_dir(source, target, work, iterations)
    path = run_dir / "translator.safetensors"
    if not path.exists():
        model = {"ngf": 16, "n_blocks": 4, "ndf": 16}
        train_phantom_translator(
            "pix2pix", "paired", source, target, run_dir, model, iterations=iterations, batch_size=4
        )
    return str(path)


def method_model(method: str, changes: list[str]) -> dict[str, object]:
    """The ``model`` options of ``method`` at the evaluation study's small budget, then ``changes``.

    ``changes`` are ``METHOD:KEY=JSON`` items; those of other methods are ignored.
    """
    from evaluation_study import RECIPES, budget

    model: dict[str, object] = {}
    for item in budget(method, RECIPES["small"]):
        key, _, value = item.partition("=")
        model[key.removeprefix("model.")] = json.loads(value)
    for item in changes:
        name, _, assignment = item.partition(":")
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise SystemExit(f"--translator-set {item!r}: expected METHOD:KEY=JSON")
        if name == method:
            model[key] = json.loads(value)
    return model


def trained_translator(method: str, source: str, target: str, args: argparse.Namespace) -> tuple[str, dict]:
    """A ``method`` ``source``→``target`` translator trained on the unpaired phantom regime (cached), and its cost.

    The cost (process CPU seconds, 1-min load average before and after) is kept in
    ``cost.json`` next to the translator, so a cached translator still reports it.
    """
    iterations = args.translator_iterations
    run_dir = args.work / f"{method}-{source.lower()}-{target.lower()}-{iterations}"
    path, cost_file = run_dir / "translator.safetensors", run_dir / "cost.json"
    if not path.exists():
        load, cpu = os.getloadavg()[0], time.process_time()
        train_phantom_translator(
            method,
            "unpaired",
            source,
            target,
            run_dir,
            method_model(method, args.translator_set),
            iterations=iterations,
            batch_size=args.translator_batch,
            num_threads=1,
            val_every=max(1, iterations // 8),
        )
        cost = {"cpu_s": round(time.process_time() - cpu, 1), "load": [load, os.getloadavg()[0]]}
        atomic_write_json(cost_file, cost)
    curve = {iteration: round(mae, 2) for iteration, mae in validation_curve(run_dir)}
    record = {
        "cost": json.loads(cost_file.read_text()) if cost_file.exists() else None,
        "validation_mae": curve,
        "batch": args.translator_batch,
        "iterations": iterations,
    }
    return str(path), record


def held_out_mae(translator: Translator, source: str, target: str, args: argparse.Namespace, samples: int = 1) -> float:
    """Mean absolute error (target units) inside the head on the benchmark's target subjects.

    A stochastic translator gives one sample (seed 0, as ``pseudolabel`` uses it), or with
    ``samples`` > 1 the mean of that many.
    """
    sampling: dict[str, Any] = {"uncertainty": "samples", "mc_samples": samples} if samples > 1 else {}
    errors = []
    for i in range(args.targets):
        subject = generate_subject(100 + args.sources + i, shape=DEFAULT_SHAPE)
        image = translator.translate_volume(subject.volume(source.lower()).array, **sampling).image  # type: ignore[arg-type]
        truth = subject.volume(target.lower()).array  # type: ignore[arg-type]
        errors.append(np.abs(image - truth)[subject.labels > 0])
    return float(np.concatenate(errors).mean())


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
    counts = [_slice_counts(r.labels, cast(np.ndarray, t.truth), tissues) for r, t in zip(results, targets)]
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
def run_gap(labelled: str, target: str, args: argparse.Namespace, method: str | None = None) -> dict:
    """Both strategies with the CLI defaults on one gap (translator: see :func:`translator_for`, or ``method``'s)."""
    if method is None:
        translator = load_translator(
            translator_for(labelled, target, args.work, args.translator_iterations), device="cpu"
        )
        row: dict = {"translator": translator.metadata.name}
    else:
        file, record = trained_translator(method, labelled, target, args)
        translator = load_translator(file, device="cpu")
        record |= {
            "parameters": translator.metadata.card.get("parameters"),
            "deviations": translator.metadata.deviations,
            "model": translator.metadata.provenance["config"]["model"],
            "held_out_mae": round(held_out_mae(translator, labelled, target, args), 2),
            "held_out_mae_mean_of_4": round(held_out_mae(translator, labelled, target, args, samples=4), 2)
            if translator.stochastic
            else None,
        }
        row = {"translator": translator.metadata.name, "training": record}
    settings = pl.settings_for(args.quality, device="cpu")
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
                name: float(np.mean([v for r in results if r.dice and (v := r.dice[name]) is not None]))
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


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


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


def paired_reference(args: argparse.Namespace) -> dict:
    """Dice, ceiling and confidence of the paired translators, from ``pseudolabel_comparison.json`` (not re-run).

    Their held-out MAE is measured here where the translator is at hand (shipped, or
    cached in the recorded ``--work``), else None.
    """
    recorded = json.loads((RESULTS / "pseudolabel_comparison.json").read_text())
    settings = recorded["settings"]

    def mae(gap: str) -> float | None:
        source, target = GAPS[gap]
        file = SHIPPED_TRANSLATORS.get((source, target)) or str(
            pix2pix_dir(source, target, Path(settings["work"]), settings["translator_iterations"])
            / "translator.safetensors"
        )
        if file.endswith(".safetensors") and not Path(file).exists():
            return None
        return round(held_out_mae(load_translator(file, device="cpu"), source, target, args), 2)

    return {
        "command": recorded["command"],
        "date": recorded["date"],
        "rows": {
            gap: {"translator": row["translator"], "held_out_mae": mae(gap)}
            | {
                s: {k: row[s][k] for k in ("mean_dice", "ceiling", "ratio_to_ceiling", "confidence")}
                for s in pl.STRATEGIES
            }
            for gap, row in recorded["gaps"].items()
        },
    }


def methods_markdown(results: dict) -> str:
    """:func:`markdown` of the per-method runs, with the translators' budgets and the paired reference."""
    lines = [
        "",
        "## Translators trained here (unpaired phantom regime, one budget)",
        "",
        f"{TRAIN_SUBJECTS} phantom subjects (seeds 0…{TRAIN_SUBJECTS - 1}, of which the trainer keeps 2 for "
        f"validation), {TRAIN_DEPTH}×{TRAIN_SIZE}×{TRAIN_SIZE}, fp32, 1 thread. Generator sizes: the evaluation "
        "study's small recipe (`evaluation_study.budget`). Validation MAE: the trainer's `val_mae_units` on its "
        "validation subjects (target units: HU for CT). Held-out MAE: on the 2 target subjects of this benchmark "
        "(head voxels, one sample, seed 0). Deviations: the options that differ from the method's registered "
        "(paper) defaults, as the translator's metadata records them (`deviations`).",
        "",
        "| gap / method | translator parameters | iterations × batch | training CPU s (load) | deviations | "
        "validation MAE by iteration | held-out MAE | held-out MAE, mean of 4 samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["gaps"].items():
        t = row["training"]
        cost = t["cost"] and f"{t['cost']['cpu_s']:.0f} ({t['cost']['load'][0]:.1f}→{t['cost']['load'][1]:.1f})"
        curve = ", ".join(f"{k}: {v:.0f}" for k, v in t["validation_mae"].items())
        deviations = ", ".join(f"{k}={json.dumps(v)}" for k, v in t["deviations"].items()) or "none"
        parameters = t["parameters"] and f"{t['parameters'] / 1e6:.2f} M"
        lines.append(
            f"| {name} | {parameters} | {t['iterations']} × {t['batch']} | {cost} | {deviations} | {curve} | "
            f"{t['held_out_mae']:.1f} | {_fmt(t.get('held_out_mae_mean_of_4'), 1)} |"
        )
    reference = results["reference"]
    lines += [
        "",
        f"## Paired reference (from `pseudolabel_comparison.json`, {reference['date']}, not re-run here)",
        "",
        f"Command: `{reference['command']}`",
        "",
        "| gap | held-out MAE | strategy | Dice | ceiling | Dice / ceiling | Spearman ρ (expected_dice) | voxel AUROC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for gap, row in reference["rows"].items():
        for strategy in pl.STRATEGIES:
            e = row[strategy]
            lines.append(
                f"| {gap} ({row['translator']}) | {_fmt(row['held_out_mae'], 1)} | {strategy} | {e['mean_dice']:.3f} | "
                f"{_fmt(e['ceiling'])} | "
                f"{_fmt(e['ratio_to_ceiling'])} | {_fmt(e['confidence']['slice_spearman']['expected_dice'])} | "
                f"{_fmt(e['confidence']['voxel_auroc'])} |"
            )
    return markdown(results) + "\n".join(lines) + "\n"


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
    parser.add_argument(
        "--translator-methods",
        nargs="+",
        choices=Q2_METHODS,
        help="run each gap with a translator of each of these unpaired methods trained here (one budget for all)",
    )
    parser.add_argument("--translator-batch", type=int, default=4, help="batch of those trainings")
    parser.add_argument(
        "--translator-set",
        action="append",
        default=[],
        metavar="METHOD:KEY=JSON",
        help="change an option of one method (recorded as a deviation in its translator)",
    )
    parser.add_argument("--out", default="pseudolabel_comparison", help="result file stem under benchmarks/results/")
    args = parser.parse_args()
    started, load_start = time.time(), os.getloadavg()[0]
    command = "python benchmarks/pseudolabel_comparison.py " + " ".join(sys.argv[1:])
    results: dict[str, Any] = {
        "command": command,
        "gaps": {},
        "queue_score": pl.QUEUE_SCORE,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU",
    }
    RESULTS.mkdir(exist_ok=True)
    runs = [(gap, None) for gap in args.gaps]
    if args.translator_methods:
        runs = [(gap, method) for gap in args.gaps for method in args.translator_methods]
        results["reference"] = paired_reference(args)
    report = markdown if not args.translator_methods else methods_markdown
    figure = "review_simulation.png" if args.out == "pseudolabel_comparison" else f"{args.out}_review.png"
    for gap, method in runs:  # results are written after each gap
        results["gaps"][gap if method is None else f"{gap}/{method}"] = run_gap(*GAPS[gap], args, method)
        results |= {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": time.time() - started,
            "load": load_note(load_start, os.getloadavg()[0]),
        }
        atomic_write_json(RESULTS / f"{args.out}.json", results)
        atomic_write_bytes(RESULTS / f"{args.out}.md", report(results).encode())
        plot(results, RESULTS / figure)
    print(report(results))


if __name__ == "__main__":
    main()
