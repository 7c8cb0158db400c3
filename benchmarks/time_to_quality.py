"""Time to quality: held-out MAE of a paired translator against training wall and CPU time.

    python benchmarks/time_to_quality.py [--minutes 10] [--eval-every 100] [--device cpu|cuda]
        [--methods regression,regression-2d,pix2pix] [--precision bf16]

Trains each recipe of ``RECIPES`` on the paired phantom (16 subjects, 128² slices, batch 4) at a
constant learning rate (so that every point of the curve is a model one could stop at), and every
``--eval-every`` iterations translates the held-out phantom subjects (seeds 1000–1002, never trained
on; the curve reports, it selects nothing) and records body-mask MAE, through-plane error and hot
voxels in air against the training time spent so far. Evaluation time is excluded from the clocks.
Writes ``benchmarks/results/time_to_quality.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note
from napari_medtrans.inference import load_translator
from napari_medtrans.metrics import paired_metrics, through_plane_error
from napari_medtrans.phantom import generate_subject
from napari_medtrans.rundir import atomic_write_bytes
from training.cli import build_config, build_parser
from training.loop import Trainer

COMMON = [
    "--phantom",
    "paired",
    "--size",
    "128",
    "--subjects",
    "16",
    "--batch-size",
    "4",
    "--log-every",
    "50",
    "--preview-every",
    "0",
    "--set",
    "data.phantom_depth=32",
    "--set",
    "data.min_foreground=0",
    "--set",
    "model.lr_decay_start=1.0",
]
REGRESSION = "--method regression --lr 1e-3 --set model.ngf=16 --set model.depth=4 --set model.encoder_blocks=1"
REGRESSION += " --set data.source_intensity=median"
RECIPES = {
    "regression": [*REGRESSION.split(), "--set", "data.context_slices=3"],
    "regression-2d": REGRESSION.split(),
    "pix2pix": [
        "--method",
        "pix2pix",
        "--lr",
        "3e-4",
        "--set",
        "model.ngf=16",
        "--set",
        "model.n_blocks=4",
        "--set",
        "model.ndf=16",
    ],
}
"""Networks, losses and learning rates of the shipped ``t1-ct-regression`` (regression) and ``t1-ct-resnet``
(pix2pix); all recipes here train on 16 subjects at a constant learning rate, from scratch."""
TEST_SEEDS = (1000, 1001, 1002)
SHAPE = (32, 128, 128)
HOT_HU = -500.0
RESULTS = Path(__file__).resolve().parent / "results" / "time_to_quality"


def held_out(path: Path, device: str, seeds: Sequence[int] = TEST_SEEDS) -> dict[str, float]:
    """Mean body-mask MAE, through-plane error, air voxels above −500 HU and bone mean (with the truth's)."""
    translator = load_translator(path, device=device)
    rows = []
    for seed in seeds:
        subject = generate_subject(seed, shape=SHAPE)
        image = translator.translate_volume(subject.t1, batch_size=8).image
        body, bone = subject.labels > 0, subject.labels == 2
        rows.append(
            (
                float(paired_metrics(image, subject.ct, body).values["mae"] or 0.0),
                through_plane_error(image, subject.ct, body),
                float((image[~body] > HOT_HU).sum()),
                float(image[bone].mean()),
                float(subject.ct[bone].mean()),
            )
        )
    keys = ("mae", "through_plane", "hot_voxels", "bone_mean", "true_bone_mean")
    return dict(zip(keys, np.mean(rows, axis=0).tolist()))


class TimedTrainer(Trainer):
    """A trainer that scores the held-out subjects at each checkpoint and stops at a wall budget."""

    def __init__(self, cfg: Any, budget_s: float, device: str) -> None:
        super().__init__(cfg, overwrite=True)
        self.budget_s, self.eval_device = budget_s, device
        self.curve: list[dict[str, float]] = []
        self.eval_wall = self.eval_cpu = 0.0
        self.wall0: float | None = None
        self.cpu0: float | None = None

    def _loop(self) -> str:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return super()._loop()

    def _train_clock(self) -> tuple[float, float]:
        assert self.wall0 is not None and self.cpu0 is not None
        return (time.perf_counter() - self.wall0 - self.eval_wall, time.process_time() - self.cpu0 - self.eval_cpu)

    def _stop_requested(self) -> bool:
        return super()._stop_requested() or self._train_clock()[0] > self.budget_s

    def _checkpoint(self, it: int, elapsed: float) -> None:
        wall, cpu = self._train_clock()
        super()._checkpoint(it, elapsed)
        w0, c0 = time.perf_counter(), time.process_time()
        path = self._write_translator()
        point = {"iteration": it, "train_wall_s": wall, "train_cpu_s": cpu, **held_out(path, self.eval_device)}
        point["load"] = os.getloadavg()[0]
        self.curve.append(point)
        print(json.dumps(point), flush=True)
        self.eval_wall += time.perf_counter() - w0
        self.eval_cpu += time.process_time() - c0


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one recipe within the budget; its command and curve."""
    argv = [
        *COMMON,
        *RECIPES[name],
        "--iterations",
        str(args.max_iterations),
        "--checkpoint-every",
        str(args.eval_every),
        "--set",
        "checkpoint_minutes=0",
        "--run-dir",
        str(args.work_dir / name),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--precision",
        args.precision,
    ]
    trainer = TimedTrainer(build_config(build_parser().parse_args(argv)), 60 * args.minutes, args.device)
    code = trainer.run_training()
    if code != 0:
        raise SystemExit(f"{name} failed; see {args.work_dir / name / 'log.txt'}")
    return {"command": "python -m training " + " ".join(argv), "curve": trainer.curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(RECIPES), help="comma-separated: " + ", ".join(RECIPES))
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall budget per method")
    parser.add_argument("--eval-every", type=int, default=100, help="iterations between held-out evaluations")
    parser.add_argument("--max-iterations", type=int, default=100_000)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 (fast on CPUs with AMX), fp16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("build/time_to_quality"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_start, date = os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {name: run(name, args) for name in args.methods.split(",")}
    note = load_note(load_start, os.getloadavg()[0])
    command = "python benchmarks/time_to_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Time to quality",
        "",
        f"`{command.strip()}` ({date}, device {args.device}, {args.threads} thread(s), precision {args.precision})",
        "",
        f"Held-out phantom subjects (seeds {', '.join(map(str, TEST_SEEDS))}, shape {SHAPE}), body mask; "
        "the floor is 16.6 HU MAE and 20.4 HU through-plane error (`benchmarks/results/phantom_floor.md`). "
        "Constant learning rate; training time excludes the evaluations. " + note,
        "",
    ]
    for name, r in results.items():
        lines += [
            f"## {name}",
            "",
            f"`{r['command']}`",
            "",
            "| iteration | train wall (s) | train CPU (s) | MAE (HU) | through-plane (HU) | hot voxels in air | load |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['iteration']} | {p['train_wall_s']:.0f} | {p['train_cpu_s']:.0f} | {p['mae']:.1f} | "
            f"{p['through_plane']:.1f} | {p['hot_voxels']:.0f} | {p['load']:.1f} |"
            for p in r["curve"]
        ]
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out.with_suffix(".md"), "\n".join(lines).encode())
    atomic_write_bytes(args.out.with_suffix(".json"), (json.dumps(results, indent=2) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
