"""The phantom's floor: the CT error no translator can remove.

    python benchmarks/phantom_floor.py [--seeds 1000 1001 1002] [--shape 32 128 128]

A phantom CT is its tissue labels' HU values (jittered per subject), plus a
texture field the MR images share, plus a CT-only texture field, blurred, plus
15 HU Gaussian noise. An MR image carries the labels and the shared field but
nothing of the CT-only field, the subject's HU jitter or the noise, so the
best prediction a translator can make is the expected CT given the labels and
the shared field (:func:`napari_medtrans.phantom.expected_ct`). Its error
against the rendered CT, in the body mask (labels > 0) of held-out subjects,
is the floor every accuracy number is read against. Two more oracles bracket
it: knowing every latent factor (noise alone remains) and knowing the labels
only. Writes ``benchmarks/results/phantom_floor.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note, write_result
from napari_medtrans.metrics import paired_metrics, through_plane_error
from napari_medtrans.phantom import expected_ct, generate_subject

ORACLES: dict[str, tuple[str, ...]] = {
    "labels + shared field (the floor)": ("shared",),
    "labels only": (),
    "every latent factor (noise only)": ("shared", "own", "jitter"),
}
"""Oracle name -> the latent factors it knows besides the true labels."""
FLOOR = "labels + shared field (the floor)"
RESULT = Path(__file__).resolve().parent / "results" / "phantom_floor.md"


def floor_metrics(seeds: list[int], shape: tuple[int, int, int]) -> dict[str, list[dict[str, float]]]:
    """Per oracle, the paired metrics (MAE, PSNR, SSIM; body mask, HU) and the through-plane error
    (:func:`~napari_medtrans.metrics.through_plane_error`) of each subject in ``seeds``.
    """
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ORACLES}
    for seed in seeds:
        subject = generate_subject(seed, shape=shape)
        mask = subject.labels > 0
        for name, known in ORACLES.items():
            prediction = expected_ct(seed, shape, known)
            row = paired_metrics(prediction, subject.ct, mask).as_dict()
            row["through_plane"] = through_plane_error(prediction, subject.ct, mask)
            results[name].append(row)
    return results


def report(
    results: dict[str, list[dict[str, float]]], seeds: list[int], shape: tuple[int, int, int], command: str, note: str
) -> str:
    """The Markdown table of ``results``."""
    lines = [
        "# The phantom's floor",
        "",
        f"`{command}`",
        "",
        f"Held-out phantom subjects (seeds {', '.join(map(str, seeds))}, shape {shape}), body mask (labels > 0),",
        "CT clipped to the SynthRAD range like every evaluation. Each oracle predicts the noise-free, blurred CT",
        "from the true labels and the latent factors it knows (the others at their expected value):",
        "`napari_medtrans.phantom.expected_ct`. A T1/T2 → CT translator sees the labels and the shared",
        "texture field at best, never the CT-only field, the subject's HU jitter or the CT noise, so the",
        f"**{FLOOR}** row is the floor: no translator can be expected to beat it on these subjects.",
        "",
        "| oracle | MAE (HU) | PSNR (dB) | SSIM | through-plane error (HU) | MAE per subject (HU) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in results.items():
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("mae", "psnr", "ssim", "through_plane")}
        per = ", ".join(f"{r['mae']:.2f}" for r in rows)
        lines.append(
            f"| {name} | {mean['mae']:.2f} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | "
            f"{mean['through_plane']:.2f} | {per} |"
        )
    lines += [
        "",
        "Through-plane error: the MAE of the slice-to-slice difference (`metrics.through_plane_error`);",
        "independent 15 HU noise in neighbouring slices alone gives 15·√2·√(2/π) ≈ 16.9 HU.",
        "",
        "The expected value is the MSE-optimal prediction; the MAE-optimal one (the conditional median)",
        "can differ slightly where the blur mixes tissues, so the floor is approximate to a fraction of a HU.",
        "",
        note,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure the floor and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 128, 128])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    load_start = os.getloadavg()[0]
    results = floor_metrics(args.seeds, shape)
    note = load_note(load_start, os.getloadavg()[0])
    command = "python benchmarks/phantom_floor.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(results, args.seeds, shape, command.strip(), note)
    write_result(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
