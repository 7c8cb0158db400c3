"""Evaluation study under the protocol of docs/evaluation.md ("Study protocol"): one command.

Trains every model the four questions need (≥ 3 training seeds per method, the same recipe,
subjects and budget for every method of a question), then evaluates them on phantom test
subjects fixed by ``--test-seeds`` and never used for anything else:

1. RegGAN vs pix2pix on misaligned pairs (levels of the phantom's misaligned regime);
2. UAPI vs PI vs CycleGAN vs CUT (unpaired) under every scenario GN0 … IP10;
3. UAPI's σ–error correlation per subject (median over subjects, per training seed);
4. whether FRD / SWD / MAE / SSIM rank the models of question 2 as Dice does.

    python benchmarks/evaluation_study.py --scale small --test-seeds 5000 5001 5002 --jobs 2
    python benchmarks/evaluation_study.py --scale full --test-seeds 5000 5001 5002 5003 5004 5005 --device cuda

Runs go to ``build/study_runs/<scale>/`` (a finished run with the same command line is
reused, and so is its evaluation, cached in ``eval_cache/`` there); results to ``benchmarks/results/evaluation_study.md`` and
``benchmarks/results/evaluation_study/`` (metrics.json per question, runs.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import load_note, run_process  # noqa: E402

from napari_medtrans import evaluation, metrics  # noqa: E402
from napari_medtrans.evaluation_report import write_report  # noqa: E402
from napari_medtrans.progress import Progress  # noqa: E402
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PROTOCOL_Q1 = ("pix2pix", "reggan")
"""The methods the protocol's question 1 compares (RegGAN paper)."""
Q1_METHODS = (*PROTOCOL_Q1, "spade")
"""The protocol's two and the paired methods whose budget the recipes set (``--q1-methods``; SPADE is
conditioned on the source's label map, which the phantom gives at training and at test time)."""
PROTOCOL_Q2 = ("uapi", "pi", "cyclegan", "cut")
"""The methods the protocol's question 2 names (UAPI paper, Table 1)."""
Q2_METHODS = (*PROTOCOL_Q2, "gcgan", "ugac", "shape-cyclegan", "unit", "munit", "nicegan", "maskgan", "syndiff", "unsb")
"""The protocol's four and the project's other unpaired methods, whose budget the recipes set
(``--q2-methods``; any registered unpaired method can be named, a later one included)."""

#: The recipe of each scale, fixed before the run (protocol: selection on validation subjects only).
#: ``generators`` gives every generator architecture about the same parameter count (like for like),
#: ``methods`` does the same for methods with a generator family of their own (set after, so it wins);
#: a method's own additions (RegGAN's registration net, CUT's MLP head, Shape-CycleGAN's
#: segmenters, UAPI's scale head) come on top.
RECIPES: dict[str, dict[str, Any]] = {
    "small": {
        "size": 64,
        "depth": 12,
        "subjects": 10,
        "iterations": 500,
        "batch": 4,
        "ndf": 16,
        "generators": {
            "resnet": {"ngf": 16, "n_blocks": 4},  # 0.34 M parameters
            "unet": {"ngf": 8, "generator_options.depth": 4},  # 0.32 M
            "unet_ggd": {"ngf": 8, "generator_options.depth": 3},  # 3-stage cascade, 0.36 M
        },
        "methods": {
            "unit": {"ngf": 11},  # encoder + decoder of one direction, 0.33 M
            "munit": {"ngf": 11, "mlp_dim": 32},  # content + style encoders, AdaIN decoder, 0.35 M
            "nicegan": {
                "ngf": 16,
                "n_blocks": 4,
                "light": "true",
                "n_dis": 6,
            },  # light variant, 0.37 M; 64² needs n_dis 6
            "syndiff": {"nf": 8, "z_emb_dim": 32, "num_res_blocks": 1},  # diffusive U-Net, 0.36 M
            "unsb": {"ngf": 15},  # time/z-conditioned ResNet, 0.36 M
            "spade": {"ngf": 3, "hidden": 16},  # 0.33 M
        },
        "levels": (1, 3, 5),
        "frd_scenarios": ("GN0", "IP10"),
        "frd_max_slices": 24,
        "set_bootstrap": 20,
    },
    "full": {
        "size": 128,
        "depth": 32,
        "subjects": 48,
        "iterations": 3000,
        "batch": 4,
        "ndf": 32,
        "generators": {
            "resnet": {"ngf": 32, "n_blocks": 4},  # 1.37 M parameters
            "unet": {"ngf": 16, "generator_options.depth": 4},  # 1.29 M
            "unet_ggd": {"ngf": 16, "generator_options.depth": 3},  # 3-stage cascade, 1.45 M
        },
        "methods": {
            "unit": {"ngf": 22},
            "munit": {"ngf": 22, "mlp_dim": 64},
            "nicegan": {"ngf": 32, "n_blocks": 4, "light": "true"},
            "syndiff": {"nf": 16, "z_emb_dim": 64, "num_res_blocks": 1},
            "unsb": {"ngf": 30},
            "spade": {"ngf": 6, "hidden": 32},
        },
        "levels": (1, 2, 3, 4, 5),
        "frd_scenarios": None,
        "frd_max_slices": 96,
        "set_bootstrap": 50,
    },
}

#: Settings a method needs to run at a recipe's budget (CUT's PatchNCE layers must lie in the
#: encoder of a 4-block ResNet: the reference's last layer, residual block 5, becomes block 4).
METHOD_SETTINGS: dict[str, list[str]] = {method: ["model.nce_layers=[0,4,7,10,13]"] for method in ("cut", "unsb")}


def method_options(method: str) -> Any:
    """The registered default options of ``method`` (the paper's values)."""
    from training.methods import get_method

    return get_method(method).Options()


def budget(method: str, recipe: dict[str, Any]) -> list[str]:
    """``--set`` overrides giving ``method`` the recipe's generator and discriminator budget.

    Only options the method has are set, so a method added later joins by name; one whose
    generator architecture the recipe does not list keeps its own size (the regime table
    shows its parameter count).
    """
    options = method_options(method)
    sizes = recipe["generators"].get(getattr(options, "generator", None), {}) | recipe["methods"].get(method, {})
    sets = [f"model.{key}={value}" for key, value in sizes.items() if hasattr(options, key.split(".")[0])]
    if hasattr(options, "ndf"):
        sets.append(f"model.ndf={recipe['ndf']}")
    return sets + METHOD_SETTINGS.get(method, [])


@dataclass
class Run:
    """One training run of the study."""

    question: int
    method: str
    seed: int
    level: int | None = None

    @property
    def name(self) -> str:
        """Folder and row name, e.g. ``q1-reggan-L3-s0``."""
        return (
            f"q{self.question}-{self.method}" + (f"-L{self.level}" if self.level is not None else "") + f"-s{self.seed}"
        )

    def argv(self, recipe: dict[str, Any], work: Path, device: str) -> list[str]:
        """The trainer command line: the same recipe for every method, only the method's own parts differ."""
        regime = (
            ["--phantom", "misaligned", "--level", str(self.level)] if self.question == 1 else ["--phantom", "unpaired"]
        )
        argv = [
            "--method",
            self.method,
            *regime,
            "--run-dir",
            str(work / self.name),
            "--name",
            self.name,
            "--subjects",
            str(recipe["subjects"]),
            "--size",
            str(recipe["size"]),
            "--iterations",
            str(recipe["iterations"]),
            "--batch-size",
            str(recipe["batch"]),
            "--seed",
            str(self.seed),
            "--device",
            device,
            "--threads",
            "1",
            "--precision",
            "fp32",
            "--log-every",
            "50",
            "--checkpoint-every",
            str(recipe["iterations"]),
            "--preview-every",
            "0",
            "--set",
            f"data.phantom_depth={recipe['depth']}",
            "--set",
            f"val_every={max(1, recipe['iterations'] // 10)}",
        ]
        for setting in budget(self.method, recipe):
            argv += ["--set", setting]
        return argv


def plan(args: argparse.Namespace, recipe: dict[str, Any]) -> list[Run]:
    """Every run of the chosen questions (question 3 and 4 reuse question 2's models)."""
    runs = []
    if 1 in args.questions:
        runs += [
            Run(1, m, s, level)
            for s in args.train_seeds
            for level in args.levels or recipe["levels"]
            for m in args.q1_methods
        ]
    if {2, 3, 4} & set(args.questions):  # seed by seed, so that a stopped run leaves every method some seeds
        runs += [Run(2, m, s) for s in args.train_seeds for m in args.q2_methods]
    return runs


class TrainingFailed(RuntimeError):
    """A run could not be trained (the other runs go on; the study stops before evaluating)."""


def train(run: Run, recipe: dict[str, Any], work: Path, device: str) -> dict[str, float]:
    """Train one run in a niced subprocess unless it finished before with the same command.

    Returns its cost (``cpu_s`` user + system seconds of the trainer process, ``wall_s``, and the
    1-min load average at start and end), also kept in ``study_cost.json`` so that a reused run
    still reports what it cost.
    """
    argv = run.argv(recipe, work, device)
    folder = work / run.name
    stamp, cost_file = folder / "study_argv.json", folder / "study_cost.json"
    if (folder / "translator.safetensors").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == argv:
        return json.loads(cost_file.read_text()) if cost_file.is_file() else {}
    if folder.exists():
        raise TrainingFailed(f"{folder} exists from another command line or an unfinished run; remove it first")
    load = os.getloadavg()[0]
    log = work / f"{run.name}.log"
    result = run_process(
        ["nice", "-n", "10", sys.executable, "-m", "training", *argv],
        log,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if result["exit"]:
        raise TrainingFailed(f"training {run.name} failed (exit {result['exit']}); see {log}")
    cost = {
        "cpu_s": result["cpu_s"],
        "wall_s": result["wall_s"],
        "load_start": load,
        "load_end": os.getloadavg()[0],
    }
    atomic_write_json(cost_file, cost)
    atomic_write_json(stamp, argv)
    return cost


def train_all(runs: list[Run], recipe: dict[str, Any], work: Path, device: str, jobs: int) -> dict[str, dict]:
    """Train every run, ``jobs`` at a time; a failed run does not stop the others.

    Returns each run's cost; raises SystemExit naming every failed run once all have ended.
    """
    with ThreadPoolExecutor(jobs) as pool:
        futures = {r.name: pool.submit(train, r, recipe, work, device) for r in runs}
    failures = [str(f.exception()) for f in futures.values() if f.exception() is not None]
    if failures:
        raise SystemExit("\n".join([f"{len(failures)} of {len(runs)} runs failed:", *failures]))
    return {name: f.result() for name, f in futures.items()}


def run_loads(costs: dict[str, dict[str, float]]) -> str:
    """The 1-min load range over every run's own start and end (reused runs trained in earlier invocations)."""
    loads = [c[k] for c in costs.values() for k in ("load_start", "load_end") if k in c]
    if not loads:
        return ""
    return f"Over every model's own training (start and end of each run): 1-min load {min(loads):.1f}–{max(loads):.1f}."


def validation_curve(folder: Path) -> list[tuple[int, float]]:
    """(iteration, validation MAE in target units) recorded by the trainer on the run's validation subjects."""
    path = folder / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return [(r["iteration"], r["val_mae_units"]) for r in rows if r.get("val_mae_units") is not None]


def generator_updates(method: str, iterations: int) -> int:
    """Generator updates in ``iterations`` training iterations (PI/UAPI update it every n_critic critic steps)."""
    options = method_options(method)
    if not hasattr(options, "n_critic"):
        return iterations
    from training.methods.patch_invariance import generator_due

    return sum(generator_due(i, options.n_critic, options.critic_warmup) for i in range(1, iterations + 1))


def test_cases(seeds: list[int], shape: tuple[int, int, int]) -> list[evaluation.EvalCase]:
    """One phantom test subject per seed (aligned T1, CT and labels)."""
    return [case for seed in seeds for case in evaluation.phantom_cases(1, "T1", "CT", seed=seed, shape=shape)]


def constant_baseline(recipe: dict[str, Any], cases: list[evaluation.EvalCase]) -> tuple[float, list[float]]:
    """A translator that has learned nothing: the training cohort's median body HU everywhere.

    Returns that value and its MAE in the body (labels > 0, as the evaluation) per test case.
    """
    from napari_medtrans.phantom import generate_subject, subject_seed

    shape = (recipe["depth"], recipe["size"], recipe["size"])
    cohort = [generate_subject(subject_seed(0, i), shape) for i in range(recipe["subjects"])]
    value = float(np.median(np.concatenate([s.volume("ct").array[s.labels > 0] for s in cohort])))
    errors = [
        float(np.abs(c.target.array[c.labels > 0] - value).mean()) for c in cases if c.target and c.labels is not None
    ]
    return value, errors


def evaluate_run(run: Run, work: Path, cases: list, settings: evaluation.EvalSettings, cache: Path) -> dict[str, Any]:
    """Evaluate one model, cached in ``cache/<run>.json`` under the same settings (with its CPU seconds)."""
    from napari_medtrans.inference import load_translator

    folder = work / run.name
    key = {
        "run": run.name,
        "mtime": (folder / "translator.safetensors").stat().st_mtime,
        "cases": [c.name for c in cases],
        "scenarios": list(settings.scenarios),
        "frd_scenarios": list(settings.frd_scenarios or []),
        "frd": settings.frd,
        "frd_max_slices": settings.frd_max_slices,
        "set_bootstrap": settings.set_bootstrap,
        "segmenter": None if settings.segmenter is None else settings.segmenter.metadata.provenance,
    }
    path = cache / f"{run.name}.json"
    part = json.loads(path.read_text()) if path.is_file() else None
    if part is None or part["key"] != key:
        import torch

        torch.set_num_threads(1)
        started = time.process_time()
        translator = load_translator(folder, device="cpu")
        result = evaluation.evaluate({run.name: translator}, cases, settings, progress=Progress(sys.stderr))
        part = {
            "key": key,
            "result": asdict(result),
            "parameters": sum(int(np.prod(t.shape)) for t in translator.generator.state_dict().values()),
            "cpu_s": time.process_time() - started,
        }
        atomic_write_json(path, part)
    return part


def evaluate_runs(
    runs: list[Run], work: Path, cases: list, settings: evaluation.EvalSettings, cache: Path, jobs: int = 1
) -> evaluation.EvaluationResult:
    """Evaluate every model (``jobs`` processes, one thread each) and merge them into one result."""
    one = partial(evaluate_run, work=work, cases=cases, settings=settings, cache=cache)
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(one, runs))
    else:
        parts = [one(run) for run in runs]
    merged, parameters, cpu = evaluation.EvaluationResult(), {}, {}
    for run, part in zip(runs, parts):
        loaded = evaluation.EvaluationResult(**part["result"])
        for attribute in ("models", "reasons", "per_slice", "uncertainty"):
            getattr(merged, attribute).update(getattr(loaded, attribute))
        merged.reference, merged.settings = loaded.reference, loaded.settings
        parameters[run.name], cpu[run.name] = part["parameters"], part.get("cpu_s")
    merged.settings["parameters"], merged.settings["evaluation_cpu_s"] = parameters, cpu
    return merged


# ----------------------------------------------------------------------------- tables


def _f(value: float | None, pattern: str = "{:.3g}") -> str:
    return "null" if value is None or not np.isfinite(value) else pattern.format(value)


def _ci(interval: list[float] | None, pattern: str = "{:.3g}") -> str:
    return "" if not interval else f" [{_f(interval[0], pattern)}, {_f(interval[1], pattern)}]"


def _over_seeds(values: list[float | None]) -> str:
    """Mean over training seeds and the spread (min–max)."""
    known = [v for v in values if v is not None]
    if not known:
        return "null"
    return f"{np.mean(known):.3g} ({min(known):.3g}–{max(known):.3g}, n={len(known)})"


def question1(result: evaluation.EvaluationResult, runs: list[Run]) -> list[str]:
    """RegGAN vs pix2pix per misalignment level: MAE and SSIM, per seed and over seeds."""
    lines = [
        "## 1. RegGAN vs pix2pix (and the other paired methods) on misaligned pairs (GN0, against the aligned test CT)",
        "",
        "| level | method | MAE (HU), mean over seeds (min–max) | SSIM | Dice | per seed: MAE [95 % CI over test subjects] |",
        "|---|---|---|---|---|---|",
    ]
    levels = sorted({r.level for r in runs if r.question == 1 and r.level is not None})
    verdicts = []
    for level in levels:
        means = {}
        for method in dict.fromkeys(r.method for r in runs if r.question == 1):
            mine = [r for r in runs if r.question == 1 and r.method == method and r.level == level]
            rows = [result.models[r.name]["GN0"] for r in mine]
            maes = [row.get("mae") for row in rows]
            means[method] = [m for m in maes if m is not None]
            per_seed = "; ".join(
                f"s{r.seed} {_f(row.get('mae'))}{_ci(row['ci95'].get('mae'))}" for r, row in zip(mine, rows)
            )
            lines.append(
                f"| {level} | {method} | {_over_seeds(maes)} | {_over_seeds([row.get('ssim') for row in rows])} "
                f"| {_over_seeds([row.get('dice_mean') for row in rows])} | {per_seed} |"
            )
        if all(means.get(m) for m in PROTOCOL_Q1):
            verdicts.append(f"level {level}: {_q1_verdict(means['pix2pix'], means['reggan'])}")
    return lines + (["", "RegGAN vs pix2pix per level: " + "; ".join(verdicts) + "."] if verdicts else []) + [""]


def _q1_verdict(pix2pix: list[float], reggan: list[float]) -> str:
    """Which of the two protocol methods has the lower MAE with every seed, if either."""
    if max(reggan) < min(pix2pix):
        return "RegGAN lower MAE with every seed"
    if max(pix2pix) < min(reggan):
        return "pix2pix lower MAE with every seed"
    return "seed ranges overlap: not separable"


def question2(result: evaluation.EvaluationResult, runs: list[Run]) -> list[str]:
    """Per method and scenario: MAE, Dice, p99 outside, mean over seeds with spread; change from GN0."""
    scenarios = result.settings["scenarios"]
    lines = [
        "## 2. Unpaired methods under perturbations (UAPI paper Table 1: UAPI, PI, CycleGAN, CUT)",
        "",
        "Mean over training seeds (min–max over seeds). MAE in HU inside the body.",
        "",
        "| method | " + " | ".join(f"MAE {s}" for s in scenarios) + " | Dice GN0 | Dice IP10 | P99 air GN0 (HU) |",
        "|---" * (len(scenarios) + 4) + "|",
    ]
    change = {}
    for method in dict.fromkeys(r.method for r in runs if r.question == 2):
        mine = [r.name for r in runs if r.question == 2 and r.method == method]
        cells = [_over_seeds([result.models[n][s].get("mae") for n in mine]) for s in scenarios]
        dice = [
            _over_seeds([result.models[n][s].get("dice_mean") for n in mine]) for s in ("GN0", "IP10") if s in scenarios
        ]
        p99 = _over_seeds([result.models[n]["GN0"].get("p99_outside") for n in mine])
        lines.append(f"| {method} | " + " | ".join(cells) + " | " + " | ".join(dice) + f" | {p99} |")
        noisy = [s for s in scenarios if s != "GN0"]
        change[method] = [
            np.mean(
                [
                    (result.models[n][s]["mae"] - result.models[n]["GN0"]["mae"]) / result.models[n]["GN0"]["mae"]
                    for s in noisy
                ]
            )
            for n in mine
        ]
    lines += [
        "",
        "Mean relative MAE increase over the noisy scenarios, per seed: "
        + "; ".join(f"{m} " + ", ".join(f"{v:+.0%}" for v in vs) for m, vs in change.items())
        + ".",
        "",
    ]
    order = sorted(change, key=lambda m: np.mean(change[m]))
    most = order[0]
    separated = all(max(change[most]) < min(change[m]) for m in order[1:])
    lines.append(
        f"Least degradation on average: {most}; "
        + (
            "below every other method with every seed."
            if separated
            else "its seed range overlaps another method's, so the study cannot call it the most robust."
        )
        + " A model that has not learned the mapping (high clean MAE) can degrade little; read this with the "
        "clean MAE."
    )
    return lines + ["", *per_run_intervals(result, [r for r in runs if r.question == 2]), ""]


def per_run_intervals(result: evaluation.EvaluationResult, runs: list[Run]) -> list[str]:
    """Per model: GN0 and IP10 metrics with the 95 % bootstrap interval over test subjects."""
    shown = [("GN0", "mae"), ("GN0", "ssim"), ("GN0", "dice_mean"), ("GN0", "mae_outside")]
    if "IP10" in result.settings["scenarios"]:
        shown += [("IP10", "mae"), ("IP10", "dice_mean")]
    lines = [
        "Per model, [95 % bootstrap interval over test subjects]:",
        "",
        "| run | " + " | ".join(f"{metrics.METRIC_BY_KEY[k].title} {s}" for s, k in shown) + " |",
        "|---" * (len(shown) + 1) + "|",
    ]
    for run in runs:
        rows = result.models[run.name]
        lines.append(
            f"| {run.name} | "
            + " | ".join(f"{_f(rows[s].get(k))}{_ci(rows[s]['ci95'].get(k))}" for s, k in shown)
            + " |"
        )
    return lines


def question3(result: evaluation.EvaluationResult, runs: list[Run]) -> list[str]:
    """UAPI's σ–error PCC per subject: median over subjects with its interval, per seed and scenario."""
    lines = [
        "## 3. UAPI: σ–error correlation per test subject",
        "",
        (
            "Median over test subjects of the per-subject Pearson correlation (slices with ≥ "
            f"{result.settings['pcc_min_foreground']:.0%} body) [95 % bootstrap interval of the median]."
        ),
        "",
        "| run | " + " | ".join(result.settings["scenarios"]) + " |",
        "|---" * (len(result.settings["scenarios"]) + 1) + "|",
    ]
    for run in (r for r in runs if r.question == 2 and r.method == "uapi"):
        rows = result.models[run.name]
        lines.append(
            f"| {run.name} | "
            + " | ".join(
                f"{_f(rows[s].get('uncertainty_pcc'), '{:.2f}')}{_ci(rows[s]['ci95'].get('uncertainty_pcc'), '{:.2f}')}"
                for s in result.settings["scenarios"]
            )
            + " |"
        )
    return lines + ["", "The UAPI paper's 0.69 (IXI) and 0.72 (fastMRI) were measured on other data; not compared.", ""]


def question4(result: evaluation.EvaluationResult, runs: list[Run]) -> list[str]:
    """Spearman ρ between each metric and Dice across the question-2 models, per scenario."""
    names = [r.name for r in runs if r.question == 2]
    metrics_shown = ("frd", "swd", "mae", "ssim", "p99_outside")
    lines = [
        "## 4. Do distribution metrics rank translators as Dice does?",
        "",
        (
            f"Spearman ρ across the {len(names)} models of question 2 (sign flipped for lower-is-better metrics, "
            "so +1 = same order as Dice)."
        ),
        "",
        "| scenario | " + " | ".join(metrics.METRIC_BY_KEY[k].title for k in metrics_shown) + " |",
        "|---" * (len(metrics_shown) + 1) + "|",
    ]
    collected: dict[str, list[float]] = {k: [] for k in metrics_shown}
    for scenario in result.settings["scenarios"]:
        cells = []
        for key in metrics_shown:
            pairs = [(result.models[n][scenario].get(key), result.models[n][scenario].get("dice_mean")) for n in names]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if len(pairs) < 4:
                cells.append("–")
                continue
            rho = metrics.METRIC_BY_KEY[key].better * stats.spearmanr(*zip(*pairs)).statistic
            collected[key].append(rho)
            cells.append(f"{rho:+.2f}")
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    lines.append("| mean | " + " | ".join(f"{np.mean(v):+.2f}" if v else "–" for v in collected.values()) + " |")
    return lines + [""]


def regimes(
    runs: list[Run], recipe: dict[str, Any], params: dict[str, int], costs: dict[str, dict[str, float]], work: Path
) -> list[str]:
    """The training regime, budget and validation MAE of every model (``params``: generator parameters per run)."""
    sizes = "; ".join(
        f"{arch} " + ", ".join(f"{k.split('.')[-1]} {v}" for k, v in size.items())
        for arch, size in recipe["generators"].items()
    )
    lines = [
        "## Training regime of every model",
        "",
        (
            f"All: phantom T1→CT, {recipe['subjects']} phantom subjects (seeds 0…{recipe['subjects'] - 1}; "
            f"20 % validation, split by training seed), slices {recipe['size']}×{recipe['size']}, "
            f"{recipe['depth']} per subject, {recipe['iterations']} iterations, batch {recipe['batch']}, "
            f"generators: {sizes}; discriminators ndf {recipe['ndf']}; every other option the paper's default "
            "(docs/training.md); fp32, 1 thread, last iteration evaluated. Question 1: misaligned regime at the "
            "given level; question 2: unpaired regime. Validation MAE: the trainer's, on the run's validation "
            "subjects (8 slices), at the first and last validation step: the only number the recipe was chosen on."
        ),
        "",
        "| run | method | regime | generator parameters | generator updates | CPU s | validation MAE (HU), first → last |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        curve = validation_curve(work / r.name)
        val = f"{curve[0][1]:.0f} (it {curve[0][0]}) → {curve[-1][1]:.0f} (it {curve[-1][0]})" if curve else "n/a"
        cpu = costs.get(r.name, {}).get("cpu_s")
        lines.append(
            f"| {r.name} | {r.method} | {'misaligned L' + str(r.level) if r.level else 'unpaired'} | "
            f"{params.get(r.name, 'n/a')} | {generator_updates(r.method, recipe['iterations'])} | "
            f"{_f(cpu, '{:.0f}')} | {val} |"
        )
    return lines + [""]


def deviations(args: argparse.Namespace, recipe: dict[str, Any]) -> str:
    """What this run left out of the protocol's scale, in words."""
    left = []
    skipped = [q for q in (1, 2, 3, 4) if q not in args.questions]
    if skipped:
        left.append(f"question{'s' * (len(skipped) > 1)} {', '.join(map(str, skipped))} not run")
    if args.levels and tuple(args.levels) != tuple(recipe["levels"]):
        left.append(
            f"question 1 at levels {', '.join(map(str, args.levels))} only "
            f"(scale: {', '.join(map(str, recipe['levels']))})"
        )
    if {2, 3, 4} & set(args.questions) and list(args.scenarios) != list(metrics.SCENARIOS):
        left.append(f"questions 2–4 under {', '.join(args.scenarios)} only (protocol: all seven scenarios)")
    missing_q1 = [m for m in PROTOCOL_Q1 if m not in args.q1_methods]
    if 1 in args.questions and missing_q1:
        left.append(f"question 1 without {', '.join(missing_q1)}")
    missing = [m for m in PROTOCOL_Q2 if m not in args.q2_methods]
    if {2, 3, 4} & set(args.questions) and missing:
        left.append(f"questions 2–4 without {', '.join(missing)}")
    if len(args.train_seeds) < 3:
        left.append(f"{len(args.train_seeds)} training seed(s) (protocol: ≥ 3)")
    return "; ".join(left)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(RECIPES), default="small")
    parser.add_argument(
        "--test-seeds",
        type=int,
        nargs="+",
        default=[5000, 5001, 5002],
        help="phantom seeds of the test subjects (never used for anything else)",
    )
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2], help="≥ 3 per method")
    parser.add_argument("--questions", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    parser.add_argument(
        "--levels", type=int, nargs="+", help="misalignment levels of question 1 (default: the scale's)"
    )
    parser.add_argument(
        "--q1-methods",
        nargs="+",
        default=list(PROTOCOL_Q1),
        help=(
            "paired methods of question 1, by registered name (default: the protocol's "
            f"{', '.join(PROTOCOL_Q1)}; the full table adds {', '.join(Q1_METHODS[len(PROTOCOL_Q1) :])})"
        ),
    )
    parser.add_argument(
        "--q2-methods",
        nargs="+",
        default=list(PROTOCOL_Q2),
        help=(
            "unpaired methods of questions 2–4, by registered name, each trained with the same recipe "
            f"(default: the protocol's {', '.join(PROTOCOL_Q2)}; the full table adds "
            f"{', '.join(Q2_METHODS[len(PROTOCOL_Q2) :])})"
        ),
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=list(metrics.SCENARIOS),
        help="scenarios of question 2 (protocol: all; fewer only where the machine cannot afford them)",
    )
    parser.add_argument("--train-only", action="store_true", help="train the runs and stop")
    parser.add_argument("--jobs", type=int, default=2, help="training runs in parallel")
    parser.add_argument("--device", default="cpu", help="training device (cpu, cuda)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "build" / "study_runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from training.methods import REGISTRY

    for method in args.q1_methods:
        if method not in REGISTRY:
            parser.error(
                f"--q1-methods: {method!r} is not a registered method; available: {', '.join(sorted(REGISTRY))}"
            )
    for method in args.q2_methods:
        if method not in REGISTRY or REGISTRY[method].needs_pairs:
            parser.error(
                f"--q2-methods: {method!r} is not a registered unpaired method; available: "
                + ", ".join(sorted(m for m, cls in REGISTRY.items() if not cls.needs_pairs))
            )
    if len(args.train_seeds) < 3:
        print("note: the protocol asks for ≥ 3 training seeds per method", file=sys.stderr)

    import torch

    torch.set_num_threads(1)
    recipe = RECIPES[args.scale]
    work = args.work_dir / args.scale
    work.mkdir(parents=True, exist_ok=True)
    started, load_start = datetime.now(timezone.utc), os.getloadavg()[0]
    runs = plan(args, recipe)
    costs = train_all(runs, recipe, work, args.device, args.jobs)
    train_wall, train_load = time.time() - started.timestamp(), os.getloadavg()[0]
    train_cpu = sum(c.get("cpu_s", 0.0) for c in costs.values())
    if args.train_only:
        print(f"trained {len(runs)} runs in {work} ({train_cpu / 60:.1f} CPU min summed)")
        return 0

    from napari_medtrans.segmenter import load_segmenter, shipped_segmenter

    segmenter_file = shipped_segmenter("CT")
    if segmenter_file is None:
        raise SystemExit("the shipped CT segmenter (sample_data/segmenters/segmenter-ct.safetensors) is missing")
    segmenter = load_segmenter(segmenter_file)
    shape = (recipe["depth"], recipe["size"], recipe["size"])
    cases = test_cases(args.test_seeds, shape)
    constant, constant_errors = constant_baseline(recipe, cases)
    base = {
        "segmenter": segmenter,
        "label_names": {k: v for k, v in segmenter.metadata.labels.items() if k},
        "frd_image_types": ["Original"],
        "frd_max_slices": recipe["frd_max_slices"],
        "set_bootstrap": recipe["set_bootstrap"],
    }
    folder = args.out / "evaluation_study"
    eval_started = time.time()
    sections, results = [], {}
    q1 = [r for r in runs if r.question == 1]
    if q1:
        settings = evaluation.EvalSettings(scenarios=["GN0"], frd=False, **base)
        results[1] = evaluate_runs(q1, work, cases, settings, work / "eval_cache", args.jobs)
        sections += question1(results[1], q1)
    q2 = [r for r in runs if r.question == 2]
    if q2:
        frd_scenarios = [s for s in recipe["frd_scenarios"] or args.scenarios if s in args.scenarios]
        settings = evaluation.EvalSettings(scenarios=args.scenarios, frd_scenarios=frd_scenarios, **base)
        results[2] = evaluate_runs(q2, work, cases, settings, work / "eval_cache", args.jobs)
        for number, section in ((2, question2), (3, question3), (4, question4)):
            if number in args.questions:
                sections += section(results[2], q2)
    for number, result in results.items():
        write_report(result, folder / f"question{number}")
    eval_seconds = time.time() - eval_started
    eval_cpu = sum(c or 0.0 for r in results.values() for c in r.settings["evaluation_cpu_s"].values())
    atomic_write_json(
        folder / "runs.json",
        {
            "recipe": recipe,
            "runs": [asdict(r) | {"name": r.name, "argv": r.argv(recipe, work, args.device)} for r in runs],
        },
    )
    command = "python benchmarks/evaluation_study.py " + " ".join(sys.argv[1:])
    reference = results[max(results)].reference
    header = [
        f"# Evaluation study ({args.scale} scale) under the protocol of docs/evaluation.md",
        "",
        f"Command: `{command.strip()}`  ",
        (
            f"Date: {started:%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, training on {args.device} ({args.jobs} runs in parallel, niced, 1 thread "
            f"each), evaluation on CPU ({args.jobs} processes, 1 thread each).  "
        ),
        (
            f"Cost: training {train_cpu / 60:.1f} CPU min, evaluation {eval_cpu / 60:.1f} CPU min, summed over "
            f"every model (also those reused from an earlier invocation; per model in the last table); wall time "
            f"of this invocation: training {train_wall / 60:.1f} min, evaluation {eval_seconds / 60:.1f} min. "
            f"Load: during this invocation's training {load_note(load_start, train_load)} "
            f"{run_loads(costs)} "
            f"At the end: 1-min load average {os.getloadavg()[0]:.1f}.  "
        ),
        (
            f"Test subjects: phantom seeds {', '.join(map(str, args.test_seeds))} (shape {shape}); training seeds "
            f"{', '.join(map(str, args.train_seeds))}.  "
        ),
        (
            f"Segmenter: shipped segmenter-ct; Dice on the real test CT (ceiling): "
            f"{_f(reference.get('dice_mean'))}{_ci((reference.get('ci95') or {}).get('dice_mean'))}.  "
        ),
        f"Metric conventions: {evaluation.CONVENTIONS}  ",
        (
            f"Reference point: a constant output (the training cohort's median body value, {constant:.0f} HU) "
            f"scores MAE {np.mean(constant_errors):.0f} HU on the test subjects "
            f"({min(constant_errors):.0f}–{max(constant_errors):.0f}); a model that does not beat it has not "
            "learned the mapping.  "
        ),
        *(
            [
                f"FRD: Original features, ≤ {recipe['frd_max_slices']} slices per set, under "
                f"{', '.join(recipe['frd_scenarios'] or args.scenarios)}; SWD/FRD intervals: "
                f"{recipe['set_bootstrap']} subject resamples.  "
            ]
            if q2
            else []
        ),
        f"Departures from the protocol (machine time): {deviations(args, recipe) or 'none'}.  ",
        "Full tables, metrics.json and plots: `benchmarks/results/evaluation_study/question*/`.",
        "",
    ]
    parameters = {name: n for r in results.values() for name, n in r.settings.get("parameters", {}).items()}
    text = "\n".join(header + sections + regimes(runs, recipe, parameters, costs, work))
    atomic_write_bytes(args.out / "evaluation_study.md", text.encode())
    print(f"wrote {args.out / 'evaluation_study.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
