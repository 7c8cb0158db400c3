"""Writing an :class:`~napari_medtrans.evaluation.EvaluationResult`: metrics.json, report.md, PNG plots."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from napari_medtrans.evaluation import CONVENTIONS, EvaluationResult
from napari_medtrans.metrics import (
    HEADLINE_METRICS,
    METRIC_BY_KEY,
    METRICS,
    intervals_overlap,
)
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json

#: Report columns, (key, title), in the order of the metric table.
COLUMNS = [(m.key, m.title) for m in METRICS]
#: Direction of "better" for ranking: +1 higher is better, -1 lower is better.
BETTER = {m.key: m.better for m in METRICS}
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


def _cell(row: dict[str, Any], key: str) -> str:
    """A table cell: the value and, where there is one, its 95 % interval."""
    if key not in row:
        return "–"
    interval = (row.get("ci95") or {}).get(key)
    return _fmt(row[key]) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "")


def markdown(result: EvaluationResult) -> str:
    """The human-readable report: conventions, one table per scenario, Dice per tissue, FRD overlaps,
    rankings, unavailable metrics.
    """
    lines = [
        "# Evaluation report",
        "",
        f"Conventions: {result.settings.get('conventions', CONVENTIONS)}  ",
        f"Cases: {', '.join(result.settings.get('cases', []))}  ",
        (
            f"Scenarios: {', '.join(result.settings.get('scenarios', []))} (noise on the source image, "
            f"seed {result.settings.get('seed')}); rows of translations made elsewhere appear under GN0 only.  "
        ),
        "Each cell: mean over subjects [95 % bootstrap interval over subjects]; σ PCC: median.",
        "",
    ]
    for scenario in result.settings.get("scenarios", []):
        shown = [(k, t) for k, t in COLUMNS if any(k in s.get(scenario, {}) for s in result.models.values())]
        lines += [
            f"## {scenario}",
            "",
            "| model | "
            + " | ".join(f"{t} ({METRIC_BY_KEY[k].unit})" if METRIC_BY_KEY[k].unit else t for k, t in shown)
            + " |",
            "|---" * (len(shown) + 1) + "|",
        ]
        for model, scenarios in result.models.items():
            if scenario in scenarios:
                lines.append(f"| {model} | " + " | ".join(_cell(scenarios[scenario], k) for k, _ in shown) + " |")
        lines.append("")
    lines += frd_overlaps(result)
    lines += _dice_table(result)
    lines += _rankings(result)
    lines += ["## Unavailable metrics", ""]
    by_reason: dict[str, list[str]] = defaultdict(list)
    for where, reason in result.reasons.items():
        by_reason[reason].append(where)
    lines += [
        f"- {reason}: {', '.join(sorted(wheres)[:6])}{' …' if len(wheres) > 6 else ''}"
        for reason, wheres in by_reason.items()
    ] or ["- none"]
    lines += ["", "## Definitions", ""] + [
        f"- {m.title}: {m.definition}" + (f" ({m.unit})" if m.unit else "") for m in METRICS
    ]
    lines += [
        (
            f"- σ PCC uses slices whose body covers ≥ {result.settings.get('pcc_min_foreground', 0):.0%} of "
            "the slice; '–' = not applicable."
        ),
        "",
    ]
    return "\n".join(lines)


def frd_overlaps(result: EvaluationResult) -> list[str]:
    """Per scenario, the pairs of rows whose FRD intervals overlap: their FRD order is not established."""
    lines = []
    for scenario in result.settings.get("scenarios", []):
        rows = {m: s[scenario] for m, s in result.models.items() if s.get(scenario, {}).get("frd") is not None}
        names = list(rows)
        pairs = [
            (a, b)
            for i, a in enumerate(names)
            for b in names[i + 1 :]
            if intervals_overlap((rows[a].get("ci95") or {}).get("frd"), (rows[b].get("ci95") or {}).get("frd"))
        ]
        if pairs:
            lines.append(
                f"- {scenario}: FRD intervals overlap for "
                + ", ".join(f"{a} / {b}" for a, b in pairs)
                + " — their FRD difference is within the noise."
            )
    return (["## FRD intervals that overlap", ""] + lines + [""]) if lines else []


def _dice_table(result: EvaluationResult) -> list[str]:
    scenario = next(iter(result.settings.get("scenarios", [])), None)
    rows = [("real target (ceiling)", result.reference.get("dice"))]
    rows += [(m, s.get(scenario, {}).get("dice")) for m, s in result.models.items()]
    tissues = next((list(d) for _, d in rows if d), [])
    if not tissues:
        return []
    lines = [
        f"## Dice per tissue ({scenario})",
        "",
        "| | " + " | ".join(tissues) + " |",
        "|---" * (len(tissues) + 1) + "|",
    ]
    lines += [f"| {name} | " + " | ".join(_fmt((d or {}).get(t)) for t in tissues) + " |" for name, d in rows]
    return lines + [""]


def _rankings(result: EvaluationResult) -> list[str]:
    lines = ["## Rankings (best first)", ""]
    others = [k for k in HEADLINE_METRICS if k != "dice_mean"]
    for scenario in result.settings.get("scenarios", []):
        orders = {m: ranking(result, scenario, m) for m in ("dice_mean", *others)}
        parts = [f"{METRIC_BY_KEY[m].title}: {' > '.join(o)}" for m, o in orders.items() if o]
        if parts:
            agree = [METRIC_BY_KEY[m].title for m in others if orders[m] and orders[m] == orders["dice_mean"]]
            verdict = f"agree with Dice: {', '.join(agree) or 'none'}" if orders["dice_mean"] else "no Dice"
            lines.append(f"- {scenario}: " + "; ".join(parts) + f" ({verdict})")
    return lines + [""]


def _figure(rows: int, columns: int, size: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
    """A Figure with an Agg canvas (no pyplot, no global backend switch) and its axes grid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, columns, squeeze=False, **kwargs)


def _label(key: str) -> str:
    spec = METRIC_BY_KEY[key]
    return f"{spec.title} ({spec.unit})" if spec.unit else spec.title


def write_plots(result: EvaluationResult, out: Path) -> list[Path]:
    """Per-slice MAE curves, metric-vs-scenario lines, σ-vs-error scatter, metric-vs-Dice scatter."""
    scenarios = result.settings.get("scenarios", [])
    paths = []
    columns = min(4, max(1, len(scenarios)))
    rows = max(1, math.ceil(len(scenarios) / columns))
    fig, axes = _figure(rows, columns, (4 * columns, 3 * rows), sharey=True)
    for ax, scenario in zip(axes.ravel(), scenarios):
        for model, curves in result.per_slice.items():
            curve = curves.get(scenario, {}).get("mae", [])
            ax.plot([math.nan if v is None else v for v in curve], label=model)
        ax.set(title=scenario, xlabel="slice (cases concatenated)", ylabel=_label("mae"))
    for ax in axes.ravel()[len(scenarios) :]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / PLOTS[0]))

    shown = HEADLINE_METRICS
    fig, axes = _figure(1, len(shown), (4 * len(shown), 3))
    for ax, metric in zip(axes[0], shown):
        for model, model_rows in result.models.items():
            ax.plot(scenarios, [_nan(model_rows.get(s, {}).get(metric)) for s in scenarios], marker="o", label=model)
        ax.set(title=_label(metric), xlabel="scenario")
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / PLOTS[1]))

    models = list(result.uncertainty) or ["(no model gives σ)"]
    fig, axes = _figure(1, len(models), (4.5 * len(models), 3.8))
    for ax, model in zip(axes[0], models):
        least = result.settings.get("pcc_min_foreground", 0.0)
        for scenario, data in result.uncertainty.get(model, {}).items():
            used = np.asarray(data["foreground"]) >= least
            scale, error = np.asarray(data["scale"]), np.asarray(data["error"])
            dots = ax.scatter(scale[used], error[used], s=6, label=scenario)
            ax.scatter(scale[~used], error[~used], s=10, facecolors="none", edgecolors=dots.get_facecolor())
        pcc = result.models.get(model, {}).get(scenarios[0] if scenarios else "", {}).get("uncertainty_pcc")
        ax.set(
            title=f"{model} (median PCC {_fmt(pcc)} clean)",
            xlabel=f"mean σ per slice (○: body < {least:.0%}, left out)",
            ylabel="mean |error| per slice",
        )
        if result.uncertainty.get(model):
            ax.legend(fontsize=6)
    paths.append(_save(fig, out / PLOTS[2]))

    against = [k for k in HEADLINE_METRICS if k != "dice_mean"]
    fig, axes = _figure(1, len(against), (4 * len(against), 3.5))
    for ax, metric in zip(axes[0], against):
        for model, model_rows in result.models.items():
            ax.scatter(
                [_nan(model_rows[s].get(metric)) for s in model_rows],
                [_nan(model_rows[s].get("dice_mean")) for s in model_rows],
                label=model,
            )
        better = "lower" if BETTER[metric] < 0 else "higher"
        ax.set(
            xlabel=f"{_label(metric)}, {better} is better",
            ylabel=_label("dice_mean"),
            title=f"{METRIC_BY_KEY[metric].title} vs Dice",
        )
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / PLOTS[3]))
    return paths


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
