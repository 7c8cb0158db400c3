"""Through-plane error of the shipped translators against the phantom's floor.

    python benchmarks/through_plane.py [--seeds 1000 1001 1002] [--threads 1]

Slice-wise translators translate each axial slice on its own; where their
output level drifts from slice to slice, sagittal and coronal views show
stripes. For every translator in ``sample_data/models`` this translates the
T1 of held-out phantom subjects and reports the body-mask MAE and the
through-plane error (:func:`napari_medtrans.metrics.through_plane_error`)
next to the floor's (``benchmarks/phantom_floor.py``). Writes
``benchmarks/results/through_plane.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note
from benchmarks.phantom_floor import FLOOR, floor_metrics
from napari_medtrans.inference import load_translator
from napari_medtrans.metrics import paired_metrics, through_plane_error
from napari_medtrans.phantom import generate_subject
from napari_medtrans.rundir import atomic_write_bytes

MODELS = Path(__file__).resolve().parents[1] / "sample_data" / "models"
RESULT = Path(__file__).resolve().parent / "results" / "through_plane.md"
SHAPE = (32, 128, 128)


def measure(path: Path, seeds: list[int]) -> dict[str, float]:
    """Mean body-mask MAE and through-plane error of the translator at ``path`` over ``seeds``."""
    translator = load_translator(path, device="cpu")
    mae, through = [], []
    for seed in seeds:
        subject = generate_subject(seed, shape=SHAPE)
        image = translator.translate_volume(subject.t1).image
        mask = subject.labels > 0
        mae.append(paired_metrics(image, subject.ct, mask).values["mae"])
        through.append(through_plane_error(image, subject.ct, mask))
    return {"mae": float(np.mean(mae)), "through_plane": float(np.mean(through))}


def main(argv: list[str] | None = None) -> None:
    """Measure every shipped translator and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    floor = floor_metrics(args.seeds, SHAPE)[FLOOR]
    rows = [
        (
            f"floor ({FLOOR.split(' (')[0]})",
            float(np.mean([r["mae"] for r in floor])),
            float(np.mean([r["through_plane"] for r in floor])),
            "",
        )
    ]
    for path in sorted(MODELS.glob("*.safetensors")):
        start = time.perf_counter()
        found = measure(path, args.seeds)
        rows.append((path.stem, found["mae"], found["through_plane"], f"{time.perf_counter() - start:.0f}"))
    command = "python benchmarks/through_plane.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Through-plane error of the shipped translators",
        "",
        f"`{command.strip()}`",
        "",
        f"Held-out phantom subjects (seeds {', '.join(map(str, args.seeds))}, shape {SHAPE}), T1 → CT, body mask",
        "(labels > 0). Through-plane error: MAE of the slice-to-slice difference against the true CT's, HU.",
        "",
        "| model | MAE (HU) | through-plane error (HU) | ratio to the floor's | wall (s, translate + metrics) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, mae, through, wall in rows:
        lines.append(f"| {name} | {mae:.1f} | {through:.1f} | {through / rows[0][2]:.2f} | {wall} |")
    lines += ["", f"torch threads {args.threads}. " + load_note(load_start, os.getloadavg()[0]), ""]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(RESULT, "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
