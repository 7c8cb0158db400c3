"""``anatomical.nii`` through inference against the crop placed in air by hand: the engine's padding of small slices.

    python benchmarks/real_t1_crop_padding.py --models t1-ct-regression

nibabel's ``anatomical.nii`` is a crop of a real head's central brain: 68 × 55 pixels at the training spacing.
Every training window was ``size``² with air wherever the slice (or, with ``data.augment_fov_crop``, the
field-of-view box) ends. The engine used to pad a slice by reflection only to the network's size multiple, so
the network saw brain from edge to edge and the crop came out as air (−676 HU with the 4000-iteration
``t1-ct-regression``); it now pads with air up to the training window. This translates the crop both ways, as
inference does and centred by hand in a ``size``² slice of air (zero signal, as training pads), and reports HU
in the crop: the two agree up to the normalisation, which is fitted on the crop in both. Writes
``benchmarks/results/real_t1_crop_padding.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note
from benchmarks.real_t1_normalisation import ANATOMICAL, resampled, stats
from napari_medtrans.inference import load_translator
from napari_medtrans.io import read_volume
from napari_medtrans.rundir import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "real_t1_crop_padding.md"


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="t1-ct-regression", help="shipped names or translator paths")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_start, start = os.getloadavg()[0], time.time()
    crop, _ = resampled(read_volume(ANATOMICAL))
    depth, height, width = crop.shape
    lines = [
        "# anatomical.nii: inference's padding against air placed by hand",
        "",
        f"`python benchmarks/real_t1_crop_padding.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"The crop is {height} × {width} pixels per slice ({depth} slices). HU over the whole crop.",
        "",
        "| model | padding | mean | median | 5–95 % | in 0–80 HU | voxels > 300 HU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.models.split(","):
        translator = load_translator(name, device="cpu")
        size = max(translator.metadata.size, height, width)
        top, left = (size - height) // 2, (size - width) // 2
        in_air = np.zeros((depth, size, size), np.float32)
        in_air[:, top : top + height, left : left + width] = crop
        inferred = translator.translate_volume(crop, batch_size=8).image
        aired = translator.translate_volume(in_air, batch_size=8).image[:, top : top + height, left : left + width]
        lines.append(f"| {name} | inference (air to the training window) | {stats(inferred.reshape(-1))} |")
        lines.append(f"| {name} | air to {size}² by hand | {stats(aired.reshape(-1))} |")
        print("\n".join(lines[-2:]), flush=True)
    lines += ["", f"{time.time() - start:.0f} s. " + load_note(load_start, os.getloadavg()[0]), ""]
    atomic_write_bytes(RESULTS, "\n".join(lines).encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
