"""The study script's plan follows the protocol: like-for-like recipes, ≥ 3 seeds, fixed test seeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import evaluation_study as study


def _flags(argv: list[str]) -> dict[str, str]:
    """Trainer flags by name (``--set`` values keyed by their field), without the run's own identity."""
    flags, i = {}, 0
    while i < len(argv):
        key, value = argv[i], argv[i + 1]
        if key == "--set":
            key, value = value.split("=", 1)
        flags[key] = value
        i += 2
    return {k: v for k, v in flags.items() if k not in ("--method", "--run-dir", "--name")}


def test_question_two_models_share_everything_but_the_method():
    args = argparse.Namespace(questions=[2], train_seeds=[0, 1, 2], levels=None, q2_methods=list(study.Q2_METHODS))
    recipe = study.RECIPES["small"]
    runs = study.plan(args, recipe)
    assert sorted({r.method for r in runs}) == sorted(study.Q2_METHODS) and len(runs) == 12
    by_seed = {}
    for run in runs:
        flags = _flags(run.argv(recipe, Path("w"), "cpu"))
        generator = {k: flags.pop(k) for k in ("model.generator_options.depth", "model.n_blocks") if k in flags}
        assert generator in ({"model.generator_options.depth": "4"}, {"model.n_blocks": "4"})
        by_seed.setdefault(run.seed, []).append(flags)
    for seed, flag_sets in by_seed.items():
        assert all(f == flag_sets[0] for f in flag_sets), seed
        assert flag_sets[0]["--seed"] == str(seed) and flag_sets[0]["--phantom"] == "unpaired"


def test_question_one_pairs_methods_per_level_and_seed():
    args = argparse.Namespace(questions=[1], train_seeds=[0, 1, 2], levels=[1, 5])
    runs = study.plan(args, study.RECIPES["small"])
    assert {(r.method, r.level, r.seed) for r in runs} == {
        (m, level, s) for m in study.Q1_METHODS for level in (1, 5) for s in (0, 1, 2)
    }
    assert runs[0].name == "q1-pix2pix-L1-s0"
