"""Like-for-like short runs of each method with the code before and after issue 13.

``python benchmarks/methods_before_after.py --old /work/main --new .`` trains
every method in :data:`RUNS` twice — once with the trainer of the ``--old``
tree and once with the ``--new`` tree (each on its own ``PYTHONPATH``) — with
the same arguments, data (phantom cohort, seed 0), iterations and seed, then
translates held-out phantom subjects (seeds 1000…) with the new loader and
writes MAE/SSIM in the body mask (and the σ–error PCC for UAPI) to
``benchmarks/results/methods_before_after.md`` (+ ``.json``).

The runs are short and small (64² slices, ngf 16) so that they fit a loaded
2-core CPU: they show whether a change helps or hurts early training, not what
either version reaches when trained to convergence. Each method runs with its
registered defaults of the respective version, except the sizes listed in
``SMALL`` (and the NCE layers CUT needs with 6 residual blocks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._machine import load_note, write_result  # noqa: E402

SMALL = [
    "--size",
    "64",
    "--subjects",
    "8",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--seed",
    "0",
    "--log-every",
    "50",
    "--checkpoint-every",
    "1000",
    "--preview-every",
    "0",
    "--set",
    "data.phantom_depth=16",
    "--set",
    "data.val_slices=4",
    "--set",
    "model.ngf=16",
]
RESNET = ["--set", "model.n_blocks=6", "--set", "model.ndf=16"]
UNET = ["--set", "model.generator_options.depth=4", "--set", "model.ndf=16"]

RUNS: dict[str, list[str]] = {
    "pix2pix": ["--method", "pix2pix", "--phantom", "paired", *RESNET],
    "cut": ["--method", "cut", "--phantom", "unpaired", *RESNET, "--set", "model.num_patches=64"],
    "reggan": ["--method", "reggan", "--phantom", "misaligned", "--level", "3", *RESNET],
    "uapi": ["--method", "uapi", "--phantom", "unpaired", *UNET, "--set", "model.n_critic=5"],
    "cyclegan": ["--method", "cyclegan", "--phantom", "unpaired", *RESNET],
}
TEST_SEEDS = (1000, 1001)
TEST_SHAPE = (16, 64, 64)


def train(tree: Path, run_dir: Path, args: list[str], iterations: int) -> float:
    """Train with the trainer of ``tree``; returns the wall time in seconds."""
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "training", *SMALL, *args, "--iterations", str(iterations), "--run-dir", str(run_dir)]
    start = time.time()
    with open(run_dir.with_suffix(".log"), "w") as log:
        code = subprocess.call(argv, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"{run_dir}: training failed; see {run_dir.with_suffix('.log')}")
    return time.time() - start


def evaluate(path: Path) -> dict[str, float]:
    """MAE (HU) and SSIM in the body mask on held-out phantom subjects (+ σ–error PCC)."""
    from napari_medtrans.inference import load_translator
    from napari_medtrans.metrics import paired_metrics, uncertainty_pcc
    from napari_medtrans.phantom import generate_subject

    translator = load_translator(path, device="cpu")
    rows = []
    for seed in TEST_SEEDS:
        subject = generate_subject(seed, shape=TEST_SHAPE)
        result = translator.translate_volume(subject.t1, batch_size=8)
        mask = subject.labels > 0
        row = {
            k: v for k, v in paired_metrics(result.image, subject.ct, mask).as_dict().items() if k in ("mae", "ssim")
        }
        if result.scale is not None:
            row["sigma_error_pcc"] = uncertainty_pcc(
                result.scale, result.image, subject.ct, mask, min_foreground=0.1
            ).pcc
        rows.append(row)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def write_report(results: dict[str, Any], out: Path, iterations: int, note: str) -> None:
    """The markdown table of :func:`main`'s results (also for a partial run)."""
    lines = [
        "# Methods before and after issue 13 (short like-for-like runs)",
        "",
        f"`python benchmarks/methods_before_after.py --old /work/main --new . --iterations {iterations}`: "
        f"each method trained for {iterations} iterations with the same arguments, data and seed by "
        "the code before (main) and after (branch methods); held-out phantom subjects "
        f"{', '.join(map(str, TEST_SEEDS))} of shape {TEST_SHAPE}, metrics in the body mask. "
        "Short runs: early-training behaviour, not converged quality. One run per version and method; the "
        "seed is the same, but the new trainer derives its streams with SeedSequence([seed, rank]), so the "
        "two versions draw different batches: differences of this size are within run-to-run spread. "
        "Iterations are critic iterations for UAPI (after: 10 per generator update during the warm-up, so "
        "20 generator updates in 200 iterations; before: 40). " + note,
        "",
        (
            "| method | MAE before (HU) | MAE after (HU) | SSIM before | SSIM after | σ–error PCC before | "
            "σ–error PCC after | wall before (s) | wall after (s) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, e in results.items():
        b, a = e["before"], e["after"]
        pcc = [f"{x['sigma_error_pcc']:.2f}" if "sigma_error_pcc" in x else "–" for x in (b, a)]
        lines.append(
            f"| {method} | {b['mae']:.1f} | {a['mae']:.1f} | {b['ssim']:.3f} | {a['ssim']:.3f} | "
            f"{pcc[0]} | {pcc[1]} | {b['wall_seconds']} | {a['wall_seconds']} |"
        )
    lines += ["", "Arguments per method (plus `--iterations N --run-dir DIR`):", ""]
    lines += [f"- {m}: `python -m training {e['args']}`" for m, e in results.items()]
    write_result(out, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="source tree of the code before")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="source tree of the code after")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--methods", default=",".join(RUNS))
    parser.add_argument("--work-dir", type=Path, default=HERE.parent / "build" / "before_after")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "methods_before_after")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    out_json = args.out.with_suffix(".json")
    results: dict[str, Any] = json.loads(out_json.read_text()) if out_json.is_file() else {}
    load_start = os.getloadavg()[0]
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        entry: dict[str, Any] = {"args": " ".join(SMALL + RUNS[method]), "iterations": args.iterations}
        for version, tree in (("before", args.old), ("after", args.new)):
            run_dir = args.work_dir / f"{method}-{version}"
            wall = train(tree, run_dir, RUNS[method], args.iterations)
            entry[version] = {"wall_seconds": round(wall, 1), **evaluate(run_dir / "translator.safetensors")}
            print(method, version, entry[version], flush=True)
        results[method] = entry
        write_result(out_json, json.dumps(results, indent=2) + "\n")
    write_report(results, args.out.with_suffix(".md"), args.iterations, load_note(load_start, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
