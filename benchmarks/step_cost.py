"""Cost of one training iteration of a method with its paper-sized networks (CPU seconds and wall time).

Builds each method as the trainer does (registered defaults, optional ``--set``
overrides), feeds it random batches of the regime's shape (labels for SPADE)
and times ``train_step`` after one warm-up step. CPU seconds (process time)
are the figure to compare on a shared machine: with one thread they hardly
depend on what else runs, while wall time does. CycleGAN is the yardstick.

    python benchmarks/step_cost.py --methods cyclegan,maskgan,spade --size 128 --iters 2
    python benchmarks/step_cost.py --methods nicegan --set nicegan:light=true
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import load_note

from training.config import options_from_dict
from training.methods import get_method
from training.methods.base import StepContext

RESULTS = Path(__file__).resolve().parent / "results"


def overrides(items: list[str]) -> dict[str, dict[str, object]]:
    """``method:key=json`` items → {method: {key: value}}."""
    found: dict[str, dict[str, object]] = {}
    for item in items:
        method, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        found.setdefault(method, {})[key] = json.loads(value)
    return found


def measure(name: str, options: dict[str, Any], size: int, iters: int) -> dict[str, Any]:
    cls = get_method(name)
    torch.manual_seed(0)
    method = cls(
        options_from_dict(cls.Options, options, name),
        in_channels=1,
        out_channels=1,
        lr=cls.default_lr,
        device=torch.device("cpu"),
    )
    ctx = StepContext(torch.device("cpu"), torch.amp.GradScaler("cpu", enabled=False), None, lambda params: None)
    ctx.iterations = iters + 1
    batch = {"source": torch.rand(1, 1, size, size) * 2 - 1, "target": torch.rand(1, 1, size, size) * 2 - 1}
    batch["source_labels"] = torch.randint(0, 10, (1, size, size))
    batch["target_labels"] = torch.randint(0, 10, (1, size, size))
    walls, cpus = [], []
    for it in range(iters + 1):
        ctx.iteration = it + 1
        wall, cpu = time.perf_counter(), time.process_time()
        method.train_step(batch, ctx)
        if it:  # the first step warms up
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return {
        "method": name,
        "options": options,
        "parameters_m": sum(p.numel() for p in method.parameters()) / 1e6,
        "translator_parameters_m": sum(p.numel() for m in method.translator_modules().values() for p in m.parameters())
        / 1e6,
        "wall_s": walls,
        "cpu_s": cpus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="cyclegan,nicegan,maskgan,spade")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=JSON")
    parser.add_argument("--out", default="step_cost")
    args = parser.parse_args()
    torch.set_num_threads(1)
    extra = overrides(args.set)
    load_start = os.getloadavg()[0]
    rows = [measure(m, extra.get(m, {}), args.size, args.iters) for m in args.methods.split(",")]
    load_end = os.getloadavg()[0]
    command = "python benchmarks/step_cost.py " + " ".join(sys.argv[1:])
    note = load_note(load_start, load_end)
    date = datetime.now(timezone.utc).isoformat(timespec="minutes")
    lines = [
        "# Cost of one training iteration (CPU, 1 thread)",
        "",
        f"Command: `{command}`",
        "",
        f"{args.size}² batch 1, random images (and label maps), registered paper defaults plus the options shown; "
        f"{platform.machine()}, torch {torch.__version__}, 1 thread, {date}. {note} "
        "CPU seconds are the load-independent figure; wall seconds include waiting for the shared cores.",
        "",
        "| method | options | parameters (M) | translator (M) | CPU s / it | wall s / it |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cpu = ", ".join(f"{v:.1f}" for v in row["cpu_s"])
        wall = ", ".join(f"{v:.1f}" for v in row["wall_s"])
        opts = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["options"].items()) or "defaults"
        lines.append(
            f"| {row['method']} | {opts} | {row['parameters_m']:.1f} | {row['translator_parameters_m']:.1f} "
            f"| {cpu} | {wall} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = {"command": command, "date": date, "load": [load_start, load_end], "size": args.size, "rows": rows}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
