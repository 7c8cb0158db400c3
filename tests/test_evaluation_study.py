"""The study script's plan follows the protocol: like-for-like recipes, ≥ 3 seeds, fixed test seeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

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
    assert set(study.PROTOCOL_Q2) <= {r.method for r in runs} and len(runs) == 3 * len(study.Q2_METHODS)
    by_seed: dict[int, list[dict[str, str]]] = {}
    for run in runs:
        flags = _flags(run.argv(recipe, Path("w"), "cpu"))
        budget = {k: v for k, v in (s.split("=", 1) for s in study.budget(run.method, recipe))}
        assert {k: flags.pop(k) for k in budget} == budget  # only the generator budget differs by method
        by_seed.setdefault(run.seed, []).append(flags)
    for seed, flag_sets in by_seed.items():
        assert all(f == flag_sets[0] for f in flag_sets), seed
        assert flag_sets[0]["--seed"] == str(seed) and flag_sets[0]["--phantom"] == "unpaired"


def test_question_one_pairs_methods_per_level_and_seed():
    args = argparse.Namespace(questions=[1], train_seeds=[0, 1, 2], levels=[1, 5], q1_methods=list(study.Q1_METHODS))
    runs = study.plan(args, study.RECIPES["small"])
    assert {(r.method, r.level, r.seed) for r in runs} == {
        (m, level, s) for m in study.Q1_METHODS for level in (1, 5) for s in (0, 1, 2)
    }
    assert runs[0].name == "q1-pix2pix-L1-s0"


def _generator_parameters(argv: list[str]) -> int:
    """Parameters of the translator generator the trainer would build from ``argv``."""
    import torch

    from training.cli import build_config, build_parser
    from training.loop import resolve_method

    cfg = build_config(build_parser().parse_args(argv))
    cls, options = resolve_method(cfg)
    method = cls(options, in_channels=1, out_channels=1, lr=1e-4, device=torch.device("cpu"))
    return sum(p.numel() for p in method.generator.parameters())


def test_generators_of_one_scale_have_about_the_same_budget():
    """Like for like: every generator architecture of a recipe within 15 % of the ResNet's parameters."""
    recipe = study.RECIPES["small"]
    runs = [study.Run(2, m, 0) for m in study.Q2_METHODS] + [study.Run(1, m, 0, 1) for m in study.Q1_METHODS]
    counts = {r.method: _generator_parameters(r.argv(recipe, Path("w"), "cpu")) for r in runs}
    reference = counts["cyclegan"]
    assert all(abs(n - reference) <= 0.15 * reference for n in counts.values()), counts


def test_generator_updates_count_the_critic_schedule():
    """PI/UAPI update the generator once per 2·15 critic iterations during warm-up: 300 iterations → 10."""
    assert study.generator_updates("uapi", 300) == 10 and study.generator_updates("cyclegan", 300) == 300


def test_departures_name_what_was_left_out():
    args = argparse.Namespace(
        questions=[1],
        levels=[5],
        scenarios=["GN0"],
        q1_methods=list(study.PROTOCOL_Q1),
        q2_methods=["cyclegan"],
        train_seeds=[0, 1, 2],
    )
    text = study.deviations(args, study.RECIPES["small"])
    assert text == "questions 2, 3, 4 not run; question 1 at levels 5 only (scale: 1, 3, 5)"


def test_a_failed_run_does_not_stop_the_others(monkeypatch, tmp_path):
    """Every run is trained; the failures are named together once all have ended."""
    runs = [study.Run(2, m, 0) for m in ("cyclegan", "nicegan", "cut")]
    trained = []

    def fake_train(run, recipe, work, device):
        if run.method == "nicegan":
            raise study.TrainingFailed(f"training {run.name} failed (exit 1)")
        trained.append(run.name)
        return {"cpu_s": 1.0}

    monkeypatch.setattr(study, "train", fake_train)
    with pytest.raises(SystemExit, match=r"1 of 3 runs failed:\ntraining q2-nicegan-s0 failed"):
        study.train_all(runs, study.RECIPES["small"], tmp_path, "cpu", jobs=1)
    assert trained == ["q2-cyclegan-s0", "q2-cut-s0"]
    assert study.train_all(runs[::2], study.RECIPES["small"], tmp_path, "cpu", jobs=2) == {
        "q2-cyclegan-s0": {"cpu_s": 1.0},
        "q2-cut-s0": {"cpu_s": 1.0},
    }


def test_run_process_reports_exit_log_and_cpu(tmp_path):
    """The benchmarks' subprocess runner: exit code, output in the log, CPU seconds of the child."""
    from _machine import run_process

    code = "import sys; sum(i * i for i in range(3_000_000)); print('trained'); sys.exit(3)"
    result = run_process([sys.executable, "-c", code], tmp_path / "run.log", cwd=tmp_path)
    assert result["exit"] == 3 and (tmp_path / "run.log").read_text() == "trained\n"
    assert 0 < result["cpu_s"] <= result["wall_s"] + 0.5
