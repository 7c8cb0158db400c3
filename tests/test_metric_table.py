"""The one metric-descriptor table: every consumer reads it, so a new metric is one entry + its function."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from napari_medtrans import evaluation_report, metrics

PACKAGE = Path(metrics.__file__).parent
CONSUMERS = ("evaluation.py", "evaluation_report.py", "_widgets/evaluate.py")


def test_table_is_complete_and_consistent():
    keys = [m.key for m in metrics.METRICS]
    assert len(keys) == len(set(keys))
    for spec in metrics.METRICS:
        assert spec.better in (-1, 1) and spec.scope in ("slice", "volume", "set") and spec.title and spec.definition
        assert (spec.paired is not None) == (spec.scope == "slice"), spec.key
    assert {"mae_outside", "p99_outside", "hot_voxels_outside"} <= set(metrics.SLICE_METRICS)


def test_report_columns_and_better_come_from_the_table():
    assert [(m.key, m.title) for m in metrics.METRICS] == evaluation_report.COLUMNS
    assert {m.key: m.better for m in metrics.METRICS} == evaluation_report.BETTER


def test_paired_metrics_run_every_paired_entry():
    """A new paired entry is computed without touching paired_metrics: the table drives it."""
    reference = np.full((2, 12, 12), -1000.0)
    mask = np.zeros(reference.shape, bool)
    mask[:, 3:9, 3:9] = True
    reference[mask] = 40.0 + np.arange(mask.sum())
    result = metrics.paired_metrics(reference + 10 * mask, reference, mask)
    assert list(result.values) == list(metrics.PAIRED_METRICS) == list(result.per_slice)
    assert result.values["mae"] == 10 and result.values["mae_outside"] == 0


def test_no_consumer_keeps_its_own_list_of_metric_names():
    """Consumers may not write literals that list three or more metric keys: complete or
    headline lists come from the table (picking one or two keys, e.g. FID and KID that are
    computed together, is fine)."""
    names = {m.key for m in metrics.METRICS}
    for relative in CONSUMERS:
        tree = ast.parse((PACKAGE / relative).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                found = [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]
                assert len(found) < 3, f"{relative}:{node.lineno} lists {found}; read napari_medtrans.metrics.METRICS"


def test_report_shows_intervals_conventions_and_frd_overlaps():
    from napari_medtrans.evaluation import EvaluationResult

    def row(frd: float, ci: list[float]) -> dict:
        return {"mae": 50.0, "frd": frd, "ci95": {"mae": [40.0, 60.0], "frd": ci}, "cases": {}}

    result = EvaluationResult(
        models={
            "a": {"GN0": row(4.0, [3.5, 4.5])},
            "b": {"GN0": row(4.2, [4.1, 4.9])},
            "c": {"GN0": row(9.0, [8.0, 10.0])},
        },
        settings={"scenarios": ["GN0"], "cases": ["s0", "s1"], "seed": 0},
    )
    text = evaluation_report.markdown(result)
    assert "Conventions: MAE unclipped in the body mask (SynthRAD 2023)" in text
    assert "| a | 50 [40, 60] |" in text and "MAE (HU)" in text
    assert "- GN0: FRD intervals overlap for a / b — their FRD difference is within the noise." in text
