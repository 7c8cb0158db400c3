"""Paired regression at 2-D vs 2.5-D vs 3-D: step cost, held-out MAE and through-plane error.

    python benchmarks/regression_context.py [--iterations 150] [--work-dir build/regression_context]
    python benchmarks/regression_context.py --cpu-budget 300   # equal CPU seconds of training per variant
    python benchmarks/regression_context.py --cost-only        # only the cost table

First measures the CPU time of one training step of each variant at equal
voxels per step with the method's default network (a 3-D patch of
``COST_PATCH`` against a batch of as many 2-D / 2.5-D slices), on one thread.
Then trains ``regression`` on the same paired phantom cohort with one input
slice, with ``data.context_slices=3`` and with 3-D patches of
``PATCH_DEPTH`` × 128² (``model.dims=3``), everything else equal (a small
network, given in ``ARGS``): for ``--iterations`` each, or, with
``--cpu-budget``, for as many iterations as the budget buys at each variant's
measured step cost. Then translates held-out subjects
(``benchmarks/through_plane.py``'s ``measure``; the 3-D translator by sliding
windows) and writes ``benchmarks/results/regression_context.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note
from benchmarks.through_plane import measure
from napari_medtrans.rundir import atomic_write_bytes
from training.cli import main as train_main

ARGS = [
    "--method",
    "regression",
    "--phantom",
    "paired",
    "--size",
    "128",
    "--subjects",
    "8",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--log-every",
    "25",
    "--checkpoint-every",
    "1000",
    "--preview-every",
    "1000",
    "--set",
    "data.phantom_depth=32",
    "--set",
    "model.ngf=16",
    "--set",
    "model.depth=4",
    "--set",
    "model.encoder_blocks=1",
]
RESULT = Path(__file__).resolve().parent / "results" / "regression_context.md"
PATCH_DEPTH = 16
"""Slices of the trained 3-D variant's patches (a multiple of 2 ** depth = 16)."""
VARIANTS = {
    "2-D": ["--set", "data.context_slices=1"],
    "2.5-D": ["--set", "data.context_slices=3"],
    "3-D": ["--set", "model.dims=3", "--set", f"model.patch_depth={PATCH_DEPTH}", "--batch-size", "1"],
}
"""Training arguments of each variant on top of ``ARGS`` (the 3-D one: one patch per step)."""
COST_PATCH = (32, 64, 64)
"""Voxels per step of the cost table: one 3-D patch, or this many slices of this size."""


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (training runs in-process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def step_cost(variant: str, repeats: int = 3) -> tuple[float, float]:
    """(CPU s, wall s) of one training step of ``variant`` at :data:`COST_PATCH` voxels with the
    method's default network, one thread, after one warm-up step.
    """
    from training.methods import StepContext, get_method

    torch.set_num_threads(1)
    cls = get_method("regression")
    depth, size = COST_PATCH[0], COST_PATCH[1]
    shape: tuple[int, ...]
    if variant == "3-D":
        options, channels, shape = cls.Options(dims=3, patch_depth=depth), 1, (1, 1, *COST_PATCH)
    else:
        channels = 3 if variant == "2.5-D" else 1
        options, shape = cls.Options(), (depth, channels, size, size)
    method = cls(options, in_channels=channels, out_channels=1, lr=cls.default_lr, device=torch.device("cpu"))
    ctx = StepContext(torch.device("cpu"), torch.amp.GradScaler("cpu", enabled=False), None, lambda params: None)
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(shape, generator=generator) * 2 - 1
    batch = {"source": source, "target": source[:, channels // 2 : channels // 2 + 1].clone()}
    method.train_step(batch, ctx)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        method.train_step(batch, ctx)
    return (time.process_time() - cpu) / repeats, (time.perf_counter() - wall) / repeats


def _train(variant: str, iterations: int, run: Path) -> tuple[float, float]:
    """Train ``variant`` for ``iterations`` into ``run``; (CPU s, wall s) of the whole run."""
    cpu, wall = _cpu_seconds(), time.perf_counter()
    args = [*ARGS, *VARIANTS[variant], "--iterations", str(iterations), "--run-dir", str(run), "--overwrite"]
    if train_main(args) != 0:
        raise SystemExit(f"training {variant} failed; see {run / 'log.txt'}")
    return _cpu_seconds() - cpu, time.perf_counter() - wall


def train_cost(variant: str, work_dir: Path) -> float:
    """CPU seconds per training step of ``variant`` as trained here: a 7-step run minus a 2-step run, / 5."""
    short, _ = _train(variant, 2, work_dir / f"cost-{variant}")
    long, _ = _train(variant, 7, work_dir / f"cost-{variant}")
    return max(long - short, 1e-3) / 5


def main(argv: list[str] | None = None) -> None:
    """Measure the step costs, train the variants, measure them and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--cpu-budget", type=float, help="CPU seconds of training per variant (replaces --iterations)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--cost-only", action="store_true", help="only the step-cost table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument("--work-dir", type=Path, default=Path("build/regression_context"))
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    costs = {variant: step_cost(variant) for variant in VARIANTS}
    command = "python benchmarks/regression_context.py " + " ".join(argv if argv is not None else sys.argv[1:])
    patch = "×".join(map(str, COST_PATCH))
    lines = [
        "# Paired regression: 2-D vs 2.5-D vs 3-D",
        "",
        f"`{command.strip()}`",
        "",
        f"## Cost of a training step at equal voxels ({patch} per step)",
        "",
        "The method's default network (ngf 32, depth 5, 2 residual blocks per encoder stage; 3-D widths capped",
        f"at 320, 2-D at 512), one thread, fp32, one 3-D patch of {patch} against a batch of {COST_PATCH[0]}",
        f"slices of {COST_PATCH[1]}² (1 or 3 input channels); mean of 3 steps after a warm-up step.",
        "",
        "| variant | CPU s / step | wall s / step | CPU relative to 2.5-D |",
        "| --- | --- | --- | --- |",
    ]
    for variant, (cpu, wall) in costs.items():
        lines.append(f"| {variant} | {cpu:.2f} | {wall:.2f} | {cpu / costs['2.5-D'][0]:.2f}× |")
    if not args.cost_only:
        rows = []
        for variant in args.variants:
            per_step = train_cost(variant, args.work_dir) if args.cpu_budget else None
            iterations = max(1, round(args.cpu_budget / per_step)) if per_step else args.iterations
            run = args.work_dir / variant
            cpu, wall = _train(variant, iterations, run)
            rows.append((variant, iterations, cpu, wall, measure(run / "translator.safetensors", args.seeds)))
        budget = f"{args.cpu_budget:g} CPU s of training steps each" if args.cpu_budget else "equal iterations"
        lines += [
            "",
            f"## Held-out accuracy after a short training ({budget})",
            "",
            f"Training: `python -m training {' '.join(ARGS)}` plus, per variant, "
            + "; ".join(f"{v}: `{' '.join(a)}`" for v, a in VARIANTS.items())
            + ". With `--cpu-budget` each variant trains for the budget divided by its step cost, measured "
            "first on a 7-step minus a 2-step run (CPU s of the whole run, including setup, validation and "
            "writing the translator, in the table). Held-out phantom subjects (seeds "
            f"{', '.join(map(str, args.seeds))}, shape (32, 128, 128); the 3-D translator by sliding windows), body "
            "mask; floor: 16.6 HU MAE, 20.4 HU through-plane error (`benchmarks/results/phantom_floor.md`). A short "
            "CPU budget: the models are far from converged, so this compares the variants at equal cost, not "
            "their final quality.",
            "",
            "| variant | iterations | train CPU (s) | train wall (s) | MAE (HU) | through-plane error (HU) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for variant, iterations, cpu, wall, found in rows:
            lines.append(
                f"| {variant} | {iterations} | {cpu:.0f} | {wall:.0f} | {found['mae']:.1f} | "
                f"{found['through_plane']:.1f} |"
            )
    lines += ["", load_note(load_start, os.getloadavg()[0]), ""]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(RESULT, "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
