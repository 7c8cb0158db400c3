"""Real T1s through the phantom-trained translators: scanner-robust normalisation and plausibility.

    python benchmarks/real_t1_normalisation.py [--models t1-ct-resnet,t1-ct-regression,t1-ct-regression-phantom] [--threads 1]

Issue 18 item 2 and the MNI152 check of issue 17. Two real T1s, both offline: nilearn's MNI152
template (skull-stripped, 1 mm) and nibabel's ``anatomical.nii`` (a 2 mm crop of a real head's
central brain). Each is translated as a user's file is: the engine resamples its axial slices in-plane to
the translator's training spacing (the phantom's 1.2 mm) and the outputs back to the file's grid
(:mod:`napari_medtrans.resampling`), with each translator's own, stored normalisation: ``t1-ct-resnet`` uses the
foreground percentiles (0.5–99.5 % → ±1), ``t1-ct-regression`` the ratio to the head's median
(``data.source_intensity=median``, :mod:`napari_medtrans.intensity`). Reported: HU in the MNI152 brain
mask, its grey- and white-matter masks (grey = the GM mask minus the WM mask) and the whole
``anatomical.nii`` crop. Goals: brain tissue in 0–80 HU with no brain voxel above 300 HU (issue 18);
grey matter 25–55 HU, white matter 15–45 HU, grey > white (issue 17). There is no ground truth: this
is a plausibility check. A reference: the phantom's TRUE CT on three validation subjects (cohort seed
77, never the test seeds), where brain voxels next to the skull take bone HU from the scanner blur;
so the brain's outer rim is also reported apart from its interior (more than :data:`RIM_VOXELS`
voxels inside the mask). Writes ``benchmarks/results/real_t1_normalisation.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note
from napari_medtrans.inference import Translator, load_translator
from napari_medtrans.io import Volume, read_volume
from napari_medtrans.rundir import atomic_write_bytes

RIM_VOXELS = 2
"""Depth of a brain mask's outer rim (voxels, 3-D erosion); the rest is its interior."""
HOT_HU = 300.0
"""Issue 18: no brain voxel above this (bone-level HU)."""
COLD_HU = -100.0
"""Below this a brain voxel reads as air or fat, not tissue: the failure opposite to :data:`HOT_HU`."""
ANATOMICAL = Path(str(__import__("nibabel").__file__)).parent / "tests" / "data" / "anatomical.nii"
RESULTS = Path(__file__).resolve().parent / "results" / "real_t1_normalisation.md"


def in_range(hu: np.ndarray) -> float:
    """Share of ``hu`` in issue 18's brain range, 0–80 HU."""
    return float(((hu >= 0) & (hu <= 80)).mean())


def stats(hu: np.ndarray) -> str:
    return (
        f"{hu.mean():.0f} | {np.median(hu):.0f} | {np.percentile(hu, 5):.0f} to {np.percentile(hu, 95):.0f} | "
        f"{100 * in_range(hu):.0f} % | {counted(hu > HOT_HU)} | {counted(hu < COLD_HU)}"
    )


def counted(selected: np.ndarray) -> str:
    """The voxels where ``selected`` is true (e.g. ``hu > HOT_HU``): count and share."""
    return f"{selected.sum()} ({100 * selected.mean():.2f} %)"


def grey_white(out: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> str:
    """Mean HU of grey and white matter against issue 17's ranges."""
    g, w = float(out[gm].mean()), float(out[wm].mean())
    return (
        f"GM {g:.0f} HU ({'in' if 25 <= g <= 55 else 'outside'} 25–55), WM {w:.0f} HU "
        f"({'in' if 15 <= w <= 45 else 'outside'} 15–45), GM {'>' if g > w else '≤'} WM."
    )


def model_grid(translator: Translator, real: RealT1) -> str:
    """The MNI152 brain's numbers on ``translator``'s grid: its slices resampled to the training spacing and
    translated there, the masks resampled by nearest neighbour (no interpolation of the output).
    """
    grid = translator.resampling(real.mni.array.shape, real.mni.spacing)
    if grid is None:
        return "the same grid."
    out = translator.translate_volume(grid.to_model(real.mni.array), batch_size=8).image
    brain, gm, wm = (grid.to_model(mask, labels=True) for mask in (real.brain, real.gm, real.wm))
    inside = out[brain]
    return (
        f"brain mean {inside.mean():.0f} HU, {100 * in_range(inside):.0f} % in 0–80 HU, "
        f"{counted(inside > HOT_HU)} above {HOT_HU:.0f} HU; " + grey_white(out, gm, wm)
    )


def interior(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its outer rim of :data:`RIM_VOXELS` voxels."""
    return ndimage.binary_erosion(mask, iterations=RIM_VOXELS)


def phantom_truth_lines() -> list[str]:
    """The true CT's brain voxels above :data:`HOT_HU` on three validation phantoms, whole brain and interior."""
    from benchmarks.regression_recipe import VALIDATION_COHORT_SEED
    from napari_medtrans.phantom import generate_subject
    from napari_medtrans.phantom.anatomy import CSF, GM, WM
    from napari_medtrans.phantom.cohort import subject_seed

    lines = [
        "## Reference: the phantom's true CT",
        "",
        f"Brain = the grey matter, white matter and CSF labels; three validation subjects (cohort seed "
        f"{VALIDATION_COHORT_SEED}, shape (32, 128, 128)); the translators trained on such CTs.",
        "",
        f"| subject seed | brain voxels > {HOT_HU:.0f} HU | interior voxels > {HOT_HU:.0f} HU |",
        "|---|---|---|",
    ]
    for seed in (subject_seed(VALIDATION_COHORT_SEED, index) for index in range(3)):
        subject = generate_subject(seed, shape=(32, 128, 128))
        brain = np.isin(subject.labels, (GM, WM, CSF))
        lines.append(
            f"| {seed} | {counted(subject.ct[brain] > HOT_HU)} | {counted(subject.ct[interior(brain)] > HOT_HU)} |"
        )
    return [*lines, ""]


@dataclass
class RealT1:
    """The two real T1s on their own grids: the MNI152 template with its masks (1 mm), and the crop (2 mm)."""

    mni: Volume
    brain: np.ndarray
    brain_interior: np.ndarray
    """The brain mask without its outer rim (:func:`interior`)."""
    gm: np.ndarray
    """Grey matter: the GM mask minus the WM mask."""
    wm: np.ndarray
    crop: Volume


def real_t1s() -> RealT1:
    """Load (offline) nilearn's MNI152 template and masks and nibabel's ``anatomical.nii``."""
    import nibabel
    from nilearn.datasets import (
        load_mni152_brain_mask,
        load_mni152_gm_mask,
        load_mni152_template,
        load_mni152_wm_mask,
    )

    with tempfile.TemporaryDirectory() as tmp:
        images = {"t1": load_mni152_template(), "brain": load_mni152_brain_mask()}
        images.update(gm=load_mni152_gm_mask(), wm=load_mni152_wm_mask())
        for key, image in images.items():
            nibabel.save(image, f"{tmp}/{key}.nii.gz")
        mni = read_volume(f"{tmp}/t1.nii.gz")
        brain, gm, wm = (read_volume(f"{tmp}/{k}.nii.gz").array > 0 for k in ("brain", "gm", "wm"))
    return RealT1(mni, brain, interior(brain), gm & ~wm, wm, read_volume(ANATOMICAL))


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="t1-ct-resnet,t1-ct-regression,t1-ct-regression-phantom", help="shipped names or paths"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start, start = os.getloadavg()[0], time.time()
    real = real_t1s()
    brain, gm, wm = real.brain, real.gm, real.wm
    header = f"| region | mean | median | 5–95 % | in 0–80 HU | voxels > {HOT_HU:.0f} HU | voxels < {COLD_HU:.0f} HU |"
    lines = [
        "# Real T1s through phantom-trained translators",
        "",
        f"`python benchmarks/real_t1_normalisation.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        "nilearn's MNI152 template (skull-stripped) and nibabel's `anatomical.nii` (a crop of a real head's "
        "central brain), translated slice by slice with each translator's stored normalisation, the slices "
        "resampled in-plane by the engine to the training spacing (1.2 mm) and the outputs back to the files' "
        "grids (MNI152 1 mm, crop 2 mm). HU in the MNI152 brain, grey-matter (GM mask minus "
        "WM mask) and white-matter masks, and in the whole crop. No ground truth: a plausibility check. Goals: "
        "brain 0–80 HU with no voxel above 300 HU (issue 18); GM 25–55 HU, WM 15–45 HU, GM > WM (issue 17). "
        f"Voxels below {COLD_HU:.0f} HU read as air or fat: holes in the brain. "
        f"The brain's interior: more than {RIM_VOXELS} voxels (mm) inside its mask; the "
        "rim is where the phantom's true CT itself has bone HU (last section).",
        "",
    ]
    for name in args.models.split(","):
        translator = load_translator(name, device="cpu")
        kind = translator.source_model.kind
        out = translator.translate_volume(real.mni, batch_size=8).image
        crop_out = translator.translate_volume(real.crop, batch_size=8).image
        lines += [
            f"## {name} (normalisation: {kind})",
            "",
            header,
            "|---|---|---|---|---|---|---|",
            f"| MNI152 brain | {stats(out[brain])} |",
            f"| MNI152 brain interior | {stats(out[real.brain_interior])} |",
            f"| MNI152 grey matter | {stats(out[gm])} |",
            f"| MNI152 white matter | {stats(out[wm])} |",
            f"| anatomical.nii crop | {stats(crop_out.reshape(-1))} |",
            "",
            grey_white(out, gm, wm),
            "",
            "On the translator's own grid (the output before it is resampled back, masks by nearest neighbour; "
            f"how this benchmark measured before the engine resampled): {model_grid(translator, real)}",
            "",
        ]
    lines += phantom_truth_lines()
    lines += [f"{time.time() - start:.0f} s. " + load_note(load_start, os.getloadavg()[0]), ""]
    atomic_write_bytes(RESULTS, "\n".join(lines).encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
