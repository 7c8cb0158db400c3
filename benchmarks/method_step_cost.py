"""Cost of one training iteration of registered methods with their paper-sized networks.

Builds each method with its registered defaults (the paper's networks), runs
one warm-up step and then ``--steps`` timed steps of :meth:`Method.train_step`
on random [-1, 1] images and random label maps of 10 classes (for the
label-using methods: SPADE, shape-cyclegan) (batch 1, float32, CPU, ``--threads``
intra-op threads; ``--set METHOD:KEY=JSON`` changes an option, e.g. NICE-GAN's ``light``) and reports, per method, the parameters, the wall-clock and
the process CPU seconds per iteration, with the 1-minute load average at start
and end (on a shared machine the CPU seconds are the steadier figure).

    python benchmarks/method_step_cost.py --methods unit munit --size 128 --steps 2
    python benchmarks/method_step_cost.py --methods nicegan --set nicegan:light=true --out method_step_cost_nicegan_light
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import load_note, write_result

from training.config import options_from_dict
from training.methods import get_method
from training.methods.base import StepContext

RESULTS = Path(__file__).resolve().parent / "results"
LABELS = ("source_labels", "target_labels")


def measure(name: str, size: int, steps: int, options: dict[str, object] | None = None) -> dict[str, float | int | str]:
    """Parameters and per-iteration wall/CPU seconds of ``name`` at ``size``² (after one warm-up step)."""
    cls = get_method(name)
    torch.manual_seed(0)
    settings = options_from_dict(cls.Options, options or {}, name)
    method = cls(settings, in_channels=1, out_channels=1, lr=cls.default_lr, device=torch.device("cpu"))
    ctx = StepContext(
        torch.device("cpu"),
        torch.amp.GradScaler("cpu", enabled=False),
        None,
        lambda params: None,
        torch.Generator().manual_seed(0),
    )
    ctx.iterations = steps + 1
    generator = torch.Generator().manual_seed(1)

    def batch() -> dict[str, torch.Tensor]:
        images = {k: torch.rand(1, 1, size, size, generator=generator) * 2 - 1 for k in ("source", "target")}
        labels = {k: torch.randint(0, 10, (1, size, size), generator=generator) for k in LABELS}
        return {**images, **labels}

    method.train_step(batch(), ctx)
    wall, cpu = time.perf_counter(), time.process_time()
    for iteration in range(steps):
        ctx.iteration = iteration + 1
        method.train_step(batch(), ctx)
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in (options or {}).items())
    return {
        "method": f"{name} ({shown})" if shown else name,
        "parameters": sum(p.numel() for p in method.parameters()),
        "translator_parameters": sum(p.numel() for p in method.generator.parameters()),
        "wall_s_per_it": (time.perf_counter() - wall) / steps,
        "cpu_s_per_it": (time.process_time() - cpu) / steps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="method_step_cost", help="file stem under benchmarks/results/")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=JSON", help="change an option")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    options: dict[str, dict[str, object]] = {}
    for item in args.set:
        method, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        options.setdefault(method, {})[key] = json.loads(value)
    rows = [measure(name, args.size, args.steps, options.get(name)) for name in args.methods]
    load_end = os.getloadavg()[0]
    command = "python benchmarks/method_step_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "size": args.size,
        "steps": args.steps,
        "threads": args.threads,
        "load": [load_start, load_end],
        "rows": rows,
    }
    lines = [
        f"# Training cost per iteration ({', '.join(args.methods)})",
        "",
        f"`{command}` — {record['date']}, {record['machine']}; {args.size}² images, batch 1, float32,",
        f"{args.threads} thread(s), {args.steps} timed iterations after one warm-up, the registered (paper) defaults.",
        load_note(load_start, load_end),
        "",
        "| method | parameters (all nets) | translator parameters | wall s / it | CPU s / it |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {int(r['parameters']) / 1e6:.2f} M | {int(r['translator_parameters']) / 1e6:.2f} M "
        f"| {float(r['wall_s_per_it']):.1f} | {float(r['cpu_s_per_it']):.1f} |"
        for r in rows
    ]
    write_result(RESULTS / f"{args.out}.json", json.dumps(record, indent=2) + "\n")
    write_result(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
