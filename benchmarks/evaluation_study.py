"""Evaluation study (issue 7): the shipped T1→CT translators on held-out phantom subjects.

Every scenario (GN0 clean, GN5/10/20 Gaussian noise, IP2/5/10 impulse noise on
the T1 input) and every metric of :mod:`napari_medtrans.evaluation`, then the
seed findings checked from the numbers:

1. robustness: how much MAE and Dice degrade from GN0 to the noisy scenarios,
   per model (the UAPI paper: UAPI degrades less than PI);
2. uncertainty: the σ-vs-error Pearson correlation per scenario (UAPI paper:
   0.69 IXI, 0.72 fastMRI; our goal on the phantom: ≥ 0.80);
3. metric agreement: whether FRD / SWD / MAE rank the models as Dice does, per
   scenario and pooled over all (model, scenario) points (Spearman).

Run: ``python benchmarks/evaluation_study.py [--subjects 3] [--models NAME ...]``. The
recorded run adds a PI model (not shipped) trained with UAPI's demo settings, no scale head:
``python -m training --method pi`` + :data:`PI_ARGS`, run folder ``build/study_runs/t1-ct-pi``.
Each model's numbers are cached in ``evaluation_study/cache/<model>.json`` (keyed on
settings and file times), so models can be added one run at a time.
Writes ``benchmarks/results/evaluation_study.md`` and, under
``benchmarks/results/evaluation_study/``, ``metrics.json``, ``report.md`` and the plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from _machine import load_note
from napari_medtrans import evaluation
from napari_medtrans.evaluation_report import markdown, ranking, write_report
from napari_medtrans.inference import load_translator
from napari_medtrans.registry import list_translators
from napari_medtrans.registry import resolve as translator_path
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json
from napari_medtrans.segmenter import load_segmenter, shipped_segmenter

RESULTS = Path(__file__).resolve().parent / "results"
#: How the study's PI model was trained (the t1-ct-uapi demo settings with ``--method pi``).
PI_ARGS = ("--phantom paired --lr 2e-4 --size 128 --batch-size 4 --log-every 20 --checkpoint-every 100 "
           "--preview-every 100 --set model.lr_decay_start=0.7 --set data.val_slices=8 --subjects 48 "
           "--set model.ngf=16 --set model.generator_options.depth=4 --set model.ndf=16 --set model.n_critic=1 "
           "--set model.lambda_paired=10 --set data.phantom_depth=32 --precision bf16 "
           "--run-dir build/study_runs/t1-ct-pi --iterations 3000 --name t1-ct-pi --threads 1")


def _relative(result: evaluation.EvaluationResult, model: str, metric: str, scenario: str) -> float | None:
    rows = result.models[model]
    base, value = rows["GN0"].get(metric), rows.get(scenario, {}).get(metric)
    return None if base in (None, 0) or value is None else (value - base) / abs(base)


def _fmt(value: float | None, pattern: str = "{:+.1%}") -> str:
    return "null" if value is None else pattern.format(value)


def findings(result: evaluation.EvaluationResult, methods: dict[str, str]) -> list[str]:
    """The seed findings, each stated from the measured numbers."""
    models = list(result.models)
    noisy = [s for s in result.settings["scenarios"] if s != "GN0"]
    lines = ["## Findings", "", "### 1. Robustness: change from GN0 (MAE up is worse, Dice down is worse)", "",
             "| model (method) | " + " | ".join(f"ΔMAE {s}" for s in noisy) + " | " +
             " | ".join(f"ΔDice {s}" for s in noisy) + " |", "|---" * (1 + 2 * len(noisy)) + "|"]
    for m in models:
        lines.append(f"| {m} ({methods[m]}) | " + " | ".join(_fmt(_relative(result, m, "mae", s)) for s in noisy)
                     + " | " + " | ".join(_fmt(_relative(result, m, "dice_mean", s)) for s in noisy) + " |")
    mean_mae = {m: np.mean([v for s in noisy if (v := _relative(result, m, "mae", s)) is not None] or [np.nan])
                for m in models}
    lines += ["", "Mean relative MAE increase over the noisy scenarios: "
              + ", ".join(f"{m} {v:+.1%}" for m, v in sorted(mean_mae.items(), key=lambda kv: kv[1])) + ".", ""]
    lines += ["### 2. Does σ track the error?", ""]
    with_sigma = [m for m in models if "uncertainty_pcc" in result.models[m]["GN0"]]
    if not with_sigma:
        lines.append("No evaluated model provides a scale map σ.")
    least = result.settings["pcc_min_foreground"]
    for m in with_sigma:
        values = {s: result.models[m][s].get("uncertainty_pcc") for s in result.settings["scenarios"]}
        lines.append(f"- {m}: PCC(mean σ, mean |error|) per slice, slices with ≥ {least:.0%} body: "
                     + ", ".join(f"{s} {_fmt(v, '{:.2f}')}" for s, v in values.items())
                     + " (goal ≥ 0.80; UAPI paper 0.69 IXI / 0.72 fastMRI).")
        lines.append("  " + uncertainty_detail(result.uncertainty[m], least))
    lines += ["", "### 3. Do FRD / SWD / MAE rank the translators as Dice does?", ""]
    for scenario in result.settings["scenarios"]:
        orders = {k: ranking(result, scenario, k) for k in ("dice_mean", "frd", "swd", "mae")}
        lines.append(f"- {scenario}: Dice {' > '.join(orders['dice_mean']) or 'n/a'}; "
                     + "; ".join(f"{k.upper()} {'same' if orders[k] == orders['dice_mean'] else ' > '.join(orders[k])}"
                                 for k in ("frd", "swd", "mae")))
    for metric in ("frd", "swd", "mae", "ssim"):
        pairs = [(r.get(metric), r.get("dice_mean")) for rows in result.models.values() for r in rows.values()]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if len(pairs) >= 4:
            rho = stats.spearmanr(*zip(*pairs)).statistic
            lines.append(f"- pooled over {len(pairs)} (model, scenario) points: Spearman ρ({metric}, Dice) = {rho:+.2f}"
                         f" ({'lower' if metric != 'ssim' else 'higher'} {metric} should go with higher Dice: "
                         f"{'negative' if metric != 'ssim' else 'positive'} ρ expected)")
    return lines + [""]


def uncertainty_detail(per_scenario: dict[str, dict[str, list[float]]], least: float) -> str:
    """PCC over every slice with body, mean σ and error per scenario, and the PCC pooled over scenarios."""
    def pcc(scale: list[float], error: list[float]) -> str:
        try:
            return f"{evaluation.metrics.pearson(scale, error):.2f}"
        except evaluation.metrics.MetricUnavailable:
            return "null"

    every = ", ".join(f"{s} {pcc(d['scale'], d['error'])}" for s, d in per_scenario.items())
    means = ", ".join(f"{s} {np.mean(d['scale']):.0f}/{np.mean(d['error']):.0f}" for s, d in per_scenario.items())
    kept = [(a, b) for d in per_scenario.values() for a, b, f in zip(d["scale"], d["error"], d["foreground"])
            if f >= least]
    return (f"Every slice with body (also slivers < {least:.0%}): {every}. Mean σ / mean |error| (HU): {means}. "
            f"Pooled over all scenarios (slices ≥ {least:.0%}): {pcc(*map(list, zip(*kept)))}.")


def evaluate_cached(translators: dict, specs: dict[str, str], cases: list, settings: evaluation.EvalSettings,
                    cache: Path, segmenter_file: Path) -> evaluation.EvaluationResult:
    """Evaluate one model at a time, reusing ``cache/<model>.json`` computed with the same settings.

    Noise is seeded per case and scenario, so models evaluated in separate runs see identical inputs.
    """
    merged, seconds, loads = evaluation.EvaluationResult(), 0.0, []
    for name, translator in translators.items():
        key = {"scenarios": list(settings.scenarios), "cases": [c.name for c in cases], "seed": settings.seed,
               "frd_image_types": list(settings.frd_image_types or []),
               "pcc_min_foreground": settings.pcc_min_foreground,
               "model_mtime": translator_path(specs[name]).stat().st_mtime,
               "segmenter_mtime": segmenter_file.stat().st_mtime}
        path = cache / f"{name}.json"
        part = json.loads(path.read_text()) if path.is_file() else None
        if part is None or part["key"] != key:
            started, load_before = time.time(), os.getloadavg()[0]
            result = evaluation.evaluate({name: translator}, cases, settings,
                                         progress=lambda m: print(m, file=sys.stderr, flush=True))
            part = {"key": key, "result": asdict(result), "seconds": time.time() - started,
                    "load_average": [load_before, os.getloadavg()[0]]}
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, part)
        loaded = evaluation.EvaluationResult(**part["result"])
        for attribute in ("models", "reasons", "per_slice", "uncertainty"):
            getattr(merged, attribute).update(getattr(loaded, attribute))
        merged.reference, merged.settings = loaded.reference, loaded.settings
        seconds += part["seconds"]
        loads += part["load_average"]
    merged.settings["seconds"] = seconds
    merged.settings["load_average"] = [min(loads), max(loads)]
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3, help="held-out phantom subjects (seeds 5000…)")
    parser.add_argument("--models", nargs="+",
                        help="translator names or run folders (default: every shipped T1→CT translator)")
    parser.add_argument("--frd-image-types", nargs="+", default=["Original"],
                        help="PyRadiomics filters for FRD (default Original: LoG+Wavelet triple the time)")
    parser.add_argument("--scenarios", nargs="+", default=list(evaluation.metrics.SCENARIOS), help="GN0 first")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(1)
    names = args.models or [i.name for i in list_translators()
                            if i.origin == "shipped" and (i.metadata.source, i.metadata.target) == ("T1", "CT")]
    specs = {Path(n).name.split(".")[0]: n for n in names}  # display name → registry name or run folder
    translators = {name: load_translator(spec, device="cpu") for name, spec in specs.items()}
    methods = {n: t.metadata.method for n, t in translators.items()}
    segmenter_file = shipped_segmenter("CT")
    segmenter = load_segmenter(segmenter_file)
    cases = evaluation.phantom_cases(args.subjects, "T1", "CT")
    settings = evaluation.EvalSettings(scenarios=args.scenarios, segmenter=segmenter,
                                       frd_image_types=args.frd_image_types,
                                       label_names={k: v for k, v in segmenter.metadata.labels.items() if k})
    folder = args.out / "evaluation_study"
    result = evaluate_cached(translators, specs, cases, settings, folder / "cache", segmenter_file)
    seconds = result.settings["seconds"]
    write_report(result, folder)
    command = "python benchmarks/evaluation_study.py " + " ".join(sys.argv[1:])
    header = [
        "# Evaluation study: shipped T1→CT translators on held-out phantom subjects", "",
        f"Command: `{command.strip()}` ({seconds / 60:.1f} min of evaluation in all, one model at a time, on "
        f"{platform.machine()}, torch {torch.__version__}, 1 thread). During the evaluations: {load_note(*result.settings['load_average'])}  ",
        "Models (method, training iterations, run): " + "; ".join(
            f"{n} ({t.metadata.method}, {t.metadata.provenance.get('iterations')} it, "
            f"{Path(str(t.metadata.provenance.get('run', '?'))).name})" for n, t in translators.items()) + ".  ",
        f"A model from build/study_runs was trained for this study: `python -m training --method pi {PI_ARGS}`.  ",
        f"Held-out subjects: {', '.join(c.name for c in cases)} (shape {cases[0].source.array.shape}).  ",
        f"Segmenter: shipped segmenter-ct (held-out Dice on real CT: "
        f"{segmenter.metadata.provenance.get('held_out', {}).get('dice_mean', float('nan')):.3f}).  ",
        f"FRD: FRDv1 (frd-score) on image types {', '.join(args.frd_image_types)}, ≤ "
        f"{settings.frd_max_slices} slices per set.  ",
        "Plots and metrics.json: `benchmarks/results/evaluation_study/`.", "",
    ]
    tables = markdown(result).replace("# Evaluation report", "# Full tables", 1)
    text = "\n".join(header + findings(result, methods)) + "\n" + tables
    atomic_write_bytes(args.out / "evaluation_study.md", text.encode())
    print(f"wrote {args.out / 'evaluation_study.md'} and {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
