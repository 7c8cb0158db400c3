"""Paired regression at 2-D vs 2.5-D: held-out MAE and through-plane error after the same training budget.

    python benchmarks/regression_context.py [--iterations 150] [--work-dir build/regression_context]

Trains ``regression`` twice on the same paired phantom cohort, once with one
input slice and once with ``data.context_slices=3``, everything else equal
(a small network, given in ``ARGS``), then translates held-out subjects
(``benchmarks/through_plane.py``'s ``measure``) and writes
``benchmarks/results/regression_context.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> None:
    """Train both variants, measure them and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument("--work-dir", type=Path, default=Path("build/regression_context"))
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    rows = []
    for k in (1, 3):
        run = args.work_dir / f"context{k}"
        start = time.perf_counter()
        code = train_main(
            [
                *ARGS,
                "--iterations",
                str(args.iterations),
                "--run-dir",
                str(run),
                "--overwrite",
                "--set",
                f"data.context_slices={k}",
            ]
        )
        if code != 0:
            raise SystemExit(f"training with context_slices={k} failed ({code}); see {run / 'log.txt'}")
        wall = time.perf_counter() - start
        rows.append((k, wall, measure(run / "translator.safetensors", args.seeds)))
    command = "python benchmarks/regression_context.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Paired regression: 2-D vs 2.5-D input",
        "",
        f"`{command.strip()}`",
        "",
        f"Training: `python -m training {' '.join(ARGS)} --iterations {args.iterations}` with",
        "`--set data.context_slices=1` or `3`. Held-out phantom subjects (seeds "
        f"{', '.join(map(str, args.seeds))}, shape (32, 128, 128)), body mask; floor: 16.6 HU MAE, 20.4 HU",
        "through-plane error (`benchmarks/results/phantom_floor.md`). A short CPU budget: the models are far",
        "from converged, so this compares the variants at equal cost, not their final quality.",
        "",
        "| input slices | iterations | train wall (s) | MAE (HU) | through-plane error (HU) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, wall, found in rows:
        lines.append(f"| {k} | {args.iterations} | {wall:.0f} | {found['mae']:.1f} | {found['through_plane']:.1f} |")
    lines += ["", load_note(load_start, os.getloadavg()[0]), ""]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(RESULT, "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
