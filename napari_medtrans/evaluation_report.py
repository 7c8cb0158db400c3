"""Writing an :class:`~napari_medtrans.evaluation.EvaluationResult`: metrics.json, report.md, PNG plots."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from napari_medtrans.evaluation import EvaluationResult
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json

COLUMNS = [("mae", "MAE"), ("psnr", "PSNR"), ("ssim", "SSIM"), ("nmae", "NMAE"), ("swd", "SWD"), ("frd", "FRD"),
           ("fid", "FID"), ("kid", "KID"), ("dice_mean", "Dice"), ("uncertainty_pcc", "σ PCC")]
#: Direction of "better" for ranking: +1 higher is better, -1 lower is better.
BETTER = {"dice_mean": 1, "ssim": 1, "psnr": 1, "mae": -1, "nmae": -1, "swd": -1, "frd": -1, "fid": -1, "kid": -1}
PLOTS = ("per_slice_mae.png", "robustness.png", "uncertainty_scatter.png", "metric_vs_dice.png")


def write_report(result: EvaluationResult, out_dir: str | Path) -> list[Path]:
    """Write metrics.json, report.md and the plots into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", result.to_json())
    atomic_write_bytes(out / "report.md", markdown(result).encode())
    return [out / "metrics.json", out / "report.md", *write_plots(result, out)]


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def ranking(result: EvaluationResult, scenario: str, metric: str) -> list[str]:
    """Models ordered best first by ``metric`` in ``scenario`` (models without a value left out)."""
    values = {m: s.get(scenario, {}).get(metric) for m, s in result.models.items()}
    known = {m: v for m, v in values.items() if v is not None}
    return sorted(known, key=lambda m: -BETTER[metric] * known[m])


def markdown(result: EvaluationResult) -> str:
    """The human-readable report: one table per scenario, Dice per tissue, rankings, unavailable metrics."""
    lines = ["# Evaluation report", "", f"Cases: {', '.join(result.settings.get('cases', []))}  ",
             f"Scenarios: {', '.join(result.settings.get('scenarios', []))} (noise on the source image, "
             f"seed {result.settings.get('seed')})", ""]
    for scenario in result.settings.get("scenarios", []):
        lines += [f"## {scenario}", "", "| model | " + " | ".join(t for _, t in COLUMNS) + " |",
                  "|---" * (len(COLUMNS) + 1) + "|"]
        for model, scenarios in result.models.items():
            row = scenarios.get(scenario, {})
            lines.append(f"| {model} | " + " | ".join(_fmt(row.get(k)) if k in row else "–" for k, _ in COLUMNS) + " |")
        lines.append("")
    lines += _dice_table(result)
    lines += _rankings(result)
    lines += ["## Unavailable metrics", ""]
    by_reason: dict[str, list[str]] = defaultdict(list)
    for where, reason in result.reasons.items():
        by_reason[reason].append(where)
    lines += [f"- {reason}: {', '.join(sorted(wheres)[:6])}{' …' if len(wheres) > 6 else ''}"
              for reason, wheres in by_reason.items()] or ["- none"]
    lines += ["", "MAE in image units (HU for CT) inside the body mask; PSNR/SSIM with the CT range "
              "[-1024, 3000] HU; SWD ×10³ on Laplacian-pyramid patches; FRD is FRDv1 (frd-score); "
              "σ PCC: Pearson correlation of per-slice mean σ and mean |error| in the body, over slices whose "
              f"body covers ≥ {result.settings.get('pcc_min_foreground', 0):.0%} of the slice; "
              "'–' = not applicable.", ""]
    return "\n".join(lines)


def _dice_table(result: EvaluationResult) -> list[str]:
    scenario = next(iter(result.settings.get("scenarios", [])), None)
    rows = [("real target (ceiling)", result.reference.get("dice"))]
    rows += [(m, s.get(scenario, {}).get("dice")) for m, s in result.models.items()]
    tissues = next((list(d) for _, d in rows if d), [])
    if not tissues:
        return []
    lines = [f"## Dice per tissue ({scenario})", "", "| | " + " | ".join(tissues) + " |",
             "|---" * (len(tissues) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt((d or {}).get(t)) for t in tissues) + " |" for name, d in rows]
    return lines + [""]


def _rankings(result: EvaluationResult) -> list[str]:
    lines = ["## Rankings (best first)", ""]
    for scenario in result.settings.get("scenarios", []):
        orders = {m: ranking(result, scenario, m) for m in ("dice_mean", "frd", "swd", "mae")}
        parts = [f"{m}: {' > '.join(o)}" for m, o in orders.items() if o]
        if parts:
            agree = [m for m in ("frd", "swd", "mae") if orders[m] and orders[m] == orders["dice_mean"]]
            verdict = f"agree with Dice: {', '.join(agree) or 'none'}" if orders["dice_mean"] else "no Dice"
            lines.append(f"- {scenario}: " + "; ".join(parts) + f" ({verdict})")
    return lines + [""]


def write_plots(result: EvaluationResult, out: Path) -> list[Path]:
    """Per-slice MAE curves, metric-vs-scenario lines, σ-vs-error scatter, metric-vs-Dice scatter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = result.settings.get("scenarios", [])
    paths = []
    columns = min(4, max(1, len(scenarios)))
    rows = max(1, math.ceil(len(scenarios) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False, sharey=True)
    for ax, scenario in zip(axes.ravel(), scenarios):
        for model, curves in result.per_slice.items():
            curve = curves.get(scenario, {}).get("mae", [])
            ax.plot([math.nan if v is None else v for v in curve], label=model)
        ax.set(title=scenario, xlabel="slice (cases concatenated)", ylabel="MAE")
    for ax in axes.ravel()[len(scenarios):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / PLOTS[0]))

    shown = ["mae", "ssim", "swd", "frd", "dice_mean"]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        for model, rows in result.models.items():
            ax.plot(scenarios, [_nan(rows.get(s, {}).get(metric)) for s in scenarios], marker="o", label=model)
        ax.set(title=metric, xlabel="scenario")
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / PLOTS[1]))

    models = list(result.uncertainty) or ["(no model gives σ)"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        least = result.settings.get("pcc_min_foreground", 0.0)
        for scenario, data in result.uncertainty.get(model, {}).items():
            used = np.asarray(data["foreground"]) >= least
            scale, error = np.asarray(data["scale"]), np.asarray(data["error"])
            dots = ax.scatter(scale[used], error[used], s=6, label=scenario)
            ax.scatter(scale[~used], error[~used], s=10, facecolors="none", edgecolors=dots.get_facecolor())
        pcc = result.models.get(model, {}).get(scenarios[0] if scenarios else "", {}).get("uncertainty_pcc")
        ax.set(title=f"{model} (PCC {_fmt(pcc)} clean)", xlabel=f"mean σ per slice (○: body < {least:.0%}, left out)",
               ylabel="mean |error| per slice")
        if result.uncertainty.get(model):
            ax.legend(fontsize=6)
    paths.append(_save(fig, out / PLOTS[2]))

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), squeeze=False)
    for ax, metric in zip(axes[0], ("frd", "swd", "mae")):
        for model, rows in result.models.items():
            ax.scatter([_nan(rows[s].get(metric)) for s in rows], [_nan(rows[s].get("dice_mean")) for s in rows],
                       label=model)
        ax.set(xlabel=f"{metric} (lower is better)", ylabel="mean Dice", title=f"{metric} vs Dice")
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / PLOTS[3]))
    return paths


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
