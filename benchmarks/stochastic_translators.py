"""SynDiff and UNSB on a CPU: cost per training iteration and per translated slice, sampling
time vs the number of steps, and a short held-out phantom MAE next to CUT and CycleGAN.

Run (1 thread, niced; a few minutes for ``cost``, hours for ``mae`` at 200 iterations on a shared CPU):

    nice -n 10 python benchmarks/stochastic_translators.py cost
    nice -n 10 python benchmarks/stochastic_translators.py mae --iterations 200 --methods syndiff unsb cyclegan

``cost`` builds each method with its paper defaults (``Options()``), times training
steps on random 64² batches (batch 1) and the exported generator on 128² slices,
in CPU seconds of this process (``time.process_time``, one torch thread) next to
wall seconds. ``mae`` trains each method with the small settings of
``benchmarks/methods_before_after.py`` (ngf 16, 6 blocks, ndf 16, 64², batch 4,
8 phantom subjects, seed 0; SynDiff's U-Net and UNSB's networks at the same
width) and evaluates MAE/SSIM in the body mask on held-out phantom subjects
1000 and 1001; stochastic translators also with the mean and spread of 4
samples. Results: ``benchmarks/results/stochastic_translators.{md,json}``
(each part updates its own section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._machine import load_note, write_result  # noqa: E402
from benchmarks.methods_before_after import RESNET, RUNS, SMALL, TEST_SEEDS, TEST_SHAPE, evaluate, train  # noqa: E402

RESULTS = HERE / "results"
STOCHASTIC_RUNS: dict[str, list[str]] = {
    "syndiff": [
        "--method",
        "syndiff",
        "--phantom",
        "unpaired",
        *RESNET,
        "--set",
        "model.nf=16",
        "--set",
        "model.ch_mult=[1,2,2,4]",
        "--set",
        "model.attn_levels=[3]",
        "--set",
        "model.ema_decay=0.99",
    ],
    "unsb": ["--method", "unsb", "--phantom", "unpaired", *RESNET, "--set", "model.num_patches=64"],
}
COST_METHODS = ("syndiff", "unsb", "cut", "cyclegan")
SLICE = 128
TRAIN_SIZE = 64


def _timed(fn: Any, repeats: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per call of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.process_time() - cpu) / repeats, (time.perf_counter() - wall) / repeats


def cost(repeats: int) -> dict[str, Any]:
    """Training step and slice translation costs of each method with its paper defaults."""
    import torch

    from training.methods import StepContext, get_method

    torch.set_num_threads(1)
    device = torch.device("cpu")
    out: dict[str, Any] = {}
    for name in COST_METHODS:
        cls = get_method(name)
        torch.manual_seed(0)
        method = cls(cls.Options(), in_channels=1, out_channels=1, lr=cls.default_lr, device=device)
        ctx = StepContext(device, torch.amp.GradScaler("cpu", enabled=False), None, lambda p: None)
        ctx.generator = torch.Generator().manual_seed(0)
        batch = {k: torch.rand(1, 1, TRAIN_SIZE, TRAIN_SIZE) * 2 - 1 for k in ("source", "target")}

        def step(method: Any = method, ctx: StepContext = ctx, batch: dict = batch) -> None:
            ctx.iteration += 1
            method.train_step(batch, ctx)

        step_cpu, step_wall = _timed(step, repeats)
        generator = method.generator.eval()
        params = sum(p.numel() for p in method.parameters()) / 1e6
        row: dict[str, Any] = {
            "parameters_M": round(params, 2),
            "translator_parameters_M": round(sum(p.numel() for p in generator.parameters()) / 1e6, 2),
            "train_step_cpu_s": step_cpu,
            "train_step_wall_s": step_wall,
            "slice": {},
        }
        x = torch.rand(1, 1, SLICE, SLICE) * 2 - 1
        stochastic = getattr(generator, "stochastic", False)
        steps = range(1, generator.num_timesteps + 1) if stochastic else [None]
        for k in steps:
            with torch.inference_mode():
                if stochastic:
                    generator.steps = k

                    def run(g: Any = generator, x: Any = x) -> None:
                        g(x, noise=torch.Generator().manual_seed(0))
                else:

                    def run(g: Any = generator, x: Any = x) -> None:
                        g(x)

                slice_cpu, slice_wall = _timed(run, repeats)
            row["slice"][str(k or 1)] = {"cpu_s": slice_cpu, "wall_s": slice_wall}
        out[name] = row
        print(name, json.dumps(row), flush=True)
    return out


def evaluate_samples(path: Path, samples: int = 4) -> dict[str, float]:
    """MAE/SSIM of the mean of ``samples`` samples and the spread–error PCC on the held-out subjects."""
    from napari_medtrans.inference import load_translator
    from napari_medtrans.metrics import paired_metrics, uncertainty_pcc
    from napari_medtrans.phantom import generate_subject

    translator = load_translator(path, device="cpu")
    rows = []
    for seed in TEST_SEEDS:
        subject = generate_subject(seed, shape=TEST_SHAPE)
        result = translator.translate_volume(subject.t1, uncertainty="samples", mc_samples=samples, seed=0)
        mask = subject.labels > 0
        metrics = paired_metrics(result.image, subject.ct, mask).as_dict()
        pcc = uncertainty_pcc(result.uncertainty, result.image, subject.ct, mask, min_foreground=0.1).pcc
        rows.append({"mae": metrics["mae"], "ssim": metrics["ssim"], "spread_error_pcc": pcc})
    return {f"{k}_mean{samples}": float(np.mean([r[k] for r in rows])) for k in rows[0]}


def mae(methods: list[str], iterations: int, work: Path, existing: bool = False) -> dict[str, Any]:
    """Train each method for ``iterations`` (small settings) and evaluate on held-out subjects;
    ``existing``: evaluate the runs already in ``work`` (e.g. stopped early with a STOP file).
    """
    tree = HERE.parent
    out: dict[str, Any] = {}
    work.mkdir(parents=True, exist_ok=True)
    for name in methods:
        args = [*(STOCHASTIC_RUNS.get(name) or RUNS[name]), "--set", f"val_every={max(iterations // 4, 1)}"]
        run_dir = work / f"{name}-{iterations}"
        cpu_before = os.times()
        wall = None if existing else train(tree, run_dir, args, iterations)
        cpu_after = os.times()
        children_cpu = (cpu_after.children_user + cpu_after.children_system) - (
            cpu_before.children_user + cpu_before.children_system
        )
        status = json.loads((run_dir / "status.json").read_text())
        row: dict[str, Any] = {
            "iterations": status["iteration"],
            "wall_s": wall,
            "cpu_s": None if existing else children_cpu,
            "command": "python -m training " + " ".join([*SMALL, *args, "--iterations", str(iterations)]),
        }
        row.update(evaluate(run_dir / "translator.safetensors"))
        if name in STOCHASTIC_RUNS:
            row.update(evaluate_samples(run_dir / "translator.safetensors"))
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        row["val_mae_units"] = [(r["iteration"], r["val_mae_units"]) for r in records if "val_mae_units" in r]
        out[name] = row
        print(name, json.dumps(row), flush=True)
    return out


def _machine(load_start: float) -> str:
    import torch

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Measured {when} on {platform.processor() or platform.machine()}, torch {torch.__version__}, one torch "
        f"thread, `nice -n 10`; {load_note(load_start, os.getloadavg()[0])}"
    )


def write(part: str, data: dict[str, Any], note: str, command: str) -> None:
    """Update ``part`` in the JSON record and rewrite the markdown report from it."""
    record_path = RESULTS / "stochastic_translators.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record[part] = {"machine": note, "command": command, "results": data}
    write_result(record_path, json.dumps(record, indent=1) + "\n")
    lines = ["# SynDiff and UNSB on a CPU", ""]
    if "cost" in record:
        c = record["cost"]
        lines += [
            "## Cost with the papers' networks",
            "",
            f"Command: `{c['command']}`  ",
            c["machine"],
            "",
            f"Training step: batch 1 of {TRAIN_SIZE}² (CPU seconds, one thread). Slice: one {SLICE}² slice through "
            "the exported translator; for SynDiff/UNSB per number of sampling steps (NFE).",
            "",
            "| method | parameters (M, all nets) | translator (M) | train step CPU s | train step wall s | "
            "slice CPU s by steps |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in c["results"].items():
            slices = ", ".join(f"{k}: {v['cpu_s']:.3f}" for k, v in row["slice"].items())
            lines.append(
                f"| {name} | {row['parameters_M']} | {row['translator_parameters_M']} | "
                f"{row['train_step_cpu_s']:.2f} | {row['train_step_wall_s']:.2f} | {slices} |"
            )
        lines.append("")
    if "mae" in record:
        m = record["mae"]
        lines += [
            "## Held-out phantom MAE at a short budget",
            "",
            f"Command: `{m['command']}`  ",
            m["machine"],
            "",
            f"Held-out phantom subjects {', '.join(map(str, TEST_SEEDS))} of shape {TEST_SHAPE}, body mask; "
            "one sample (seed 0), and for SynDiff/UNSB the mean of 4 samples with the spread–|error| PCC. "
            "Validation MAE during training in the last column (iteration: HU).",
            "",
            "| method | iterations | CPU s | MAE (HU) | SSIM | MAE mean of 4 (HU) | spread–error PCC | val MAE curve |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in m["results"].items():
            curve = ", ".join(f"{i}: {v:.0f}" for i, v in row["val_mae_units"])
            mean4 = row.get("mae_mean4")
            pcc = row.get("spread_error_pcc_mean4")
            cpu = "–" if row["cpu_s"] is None else f"{row['cpu_s']:.0f}"
            lines.append(
                f"| {name} | {row['iterations']} | {cpu} | {row['mae']:.1f} | {row['ssim']:.3f} | "
                f"{'–' if mean4 is None else f'{mean4:.1f}'} | {'–' if pcc is None else f'{pcc:.2f}'} | {curve} |"
            )
        lines += ["", "Training commands (plus `--run-dir DIR`):", ""]
        lines += [f"- {name}: `{row['command']}`" for name, row in m["results"].items()]
        lines.append("")
    write_result(RESULTS / "stochastic_translators.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("cost", "mae"))
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after one warm-up (cost)")
    parser.add_argument("--iterations", type=int, default=200, help="training iterations (mae)")
    parser.add_argument("--methods", nargs="+", default=["syndiff", "unsb", "cut", "cyclegan"])
    parser.add_argument("--existing", action="store_true", help="evaluate the runs in --work without training (mae)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/stochastic_translators"), help="run directories")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load_start = os.getloadavg()[0]
    command = "python benchmarks/stochastic_translators.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.part == "cost":
        data = cost(args.repeats)
    else:
        data = mae(args.methods, args.iterations, args.work, args.existing)
        previous = (
            json.loads((RESULTS / "stochastic_translators.json").read_text()).get("mae", {}).get("results", {})
            if (RESULTS / "stochastic_translators.json").exists()
            else {}
        )
        data = {**previous, **data}
    write(args.part, data, _machine(load_start), command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
