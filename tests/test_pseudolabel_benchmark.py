"""The pseudo-label benchmark trains each unpaired translator at the evaluation study's small budget."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pseudolabel_comparison as bench


def test_method_model_is_the_study_budget_plus_changes_of_that_method_only():
    changes = ["syndiff:ema_decay=0.99", "cyclegan:lambda_identity=0"]
    syndiff = bench.method_model("syndiff", changes)
    assert syndiff == {
        "ngf": 16,
        "n_blocks": 4,
        "nf": 8,
        "z_emb_dim": 32,
        "num_res_blocks": 1,
        "ndf": 16,
        "ema_decay": 0.99,
    }
    cyclegan = bench.method_model("cyclegan", changes)
    assert cyclegan == {"ngf": 16, "n_blocks": 4, "ndf": 16, "lambda_identity": 0}


def test_method_model_refuses_a_change_without_a_value():
    with pytest.raises(SystemExit, match="METHOD:KEY=JSON"):
        bench.method_model("syndiff", ["syndiff:ema_decay"])
