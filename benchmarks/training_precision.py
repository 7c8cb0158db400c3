"""Does bf16 autocast training cost accuracy? The demo recipes trained in fp32 and in bf16.

Each recipe of ``sample_data/make_demo_models.py`` (same data, seed, networks and
iterations) is trained twice with the project trainer, ``--precision fp32`` and
``--precision bf16``, one run after the other on the same threads, and both
translators are scored by that script's held-out evaluation (MAE/PSNR/SSIM in
the body mask on phantom seeds never seen in training; σ–error correlation for
UAPI). Inference is fp32 for both, so only the training arithmetic differs.

    python benchmarks/training_precision.py                      # pix2pix and UAPI recipes
    python benchmarks/training_precision.py --models t1-ct-resnet --scale 0.5

Writes ``benchmarks/results/training_precision.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sample_data"))

import make_demo_models as demo  # noqa: E402
from _machine import bf16_native, write_result  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def train_and_score(name: str, precision: str, work: Path, scale: float, threads: int) -> dict[str, Any]:
    """Train one recipe at one precision; its held-out metrics and wall time."""
    from training.cli import build_config, build_parser
    from training.loop import train

    spec = demo.MODELS[name]
    iterations = max(1, int(round(spec["iterations"] * scale)))
    run_dir = work / f"{name}-{precision}"
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists: remove it or choose another --work folder")
    argv = [
        *spec["args"],
        *demo.COMMON,
        "--run-dir",
        str(run_dir),
        "--iterations",
        str(iterations),
        "--name",
        f"{name}-{precision}",
        "--threads",
        str(threads),
        "--precision",
        precision,
    ]
    start = time.time()
    if train(build_config(build_parser().parse_args(argv))) != 0:
        raise SystemExit(f"training {name} in {precision} failed; see {run_dir / 'log.txt'}")
    wall = time.time() - start
    scores = demo.evaluate(run_dir / "translator.safetensors")["mean"]
    return {
        "model": name,
        "precision": precision,
        "iterations": iterations,
        "wall_seconds": round(wall, 1),
        "command": "python -m training " + " ".join(argv),
        **scores,
    }


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The markdown table of both precisions per recipe."""
    lines = [
        "# Training precision: fp32 vs bf16 autocast on the demo recipes",
        "",
        f"Command: `python benchmarks/training_precision.py --models {' '.join(args.models)} "
        f"--scale {args.scale} --threads {args.threads}`",
        "",
        f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
        f"{os.cpu_count()} CPUs; bf16 matrix instructions (amx_bf16/avx512_bf16): "
        f"{'yes' if bf16_native() else 'no'}. Held-out phantom seeds {demo.TEST_SEEDS}, shape "
        f"{demo.TEST_SHAPE}, body mask; inference in fp32.",
        "",
        "| recipe | precision | iterations | train wall (s) | speed-up | MAE (HU) | PSNR (dB) | SSIM | "
        "bone mean (HU) | air mean (HU) | σ–error r (per slice, pooled) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    walls = {(r["model"], r["precision"]): r["wall_seconds"] for r in rows}
    for r in rows:
        speed = walls[(r["model"], "fp32")] / r["wall_seconds"] if (r["model"], "fp32") in walls else float("nan")
        pcc = r.get("sigma_error_slice_pcc")
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['iterations']} | {r['wall_seconds']:.0f} | "
            f"{speed:.2f}× | {r['mae']:.1f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
            f"{r['bone_mean_hu']:.0f} | {r['air_mean_hu']:.0f} | "
            f"{'–' if pcc is None else f'{pcc:.2f}'} |"
        )
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows] + [""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["t1-ct-resnet", "t1-ct-uapi-supervised"],
        choices=sorted(n for n, spec in demo.MODELS.items() if "init" not in spec),
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every recipe's iterations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "training_precision")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training_precision.md")
    args = parser.parse_args()
    rows = [
        train_and_score(name, precision, args.work, args.scale, args.threads)
        for name in args.models
        for precision in PRECISIONS
    ]
    text = report(rows, args)
    print(text)
    write_result(args.out, text)
    write_result(args.out.with_suffix(".json"), json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
