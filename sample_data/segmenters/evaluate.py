"""Dice per tissue of segmenter files on held-out phantom subjects of their modality.

Run: ``python sample_data/segmenters/evaluate.py [FILE ...] [--subjects N] [--first-seed S] [--flip]``
(default: the shipped segmenters, 2 subjects from the evaluation's held-out
seed 5000, shape 32×128×128; select recipes with ``--first-seed`` on
validation subjects, e.g. 2900, never on the held-out ones). Prints a Markdown table: one row per file, one
column per tissue, the mean and the file's training provenance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_medtrans.evaluation import HELD_OUT_SEED
from napari_medtrans.metrics import dice_per_label, mean_dice
from napari_medtrans.phantom import TISSUES, generate_subject
from napari_medtrans.segmenter import load_segmenter


def held_out_dice(path: Path, subjects: int, flip: bool, first_seed: int = HELD_OUT_SEED) -> dict[str, float | None]:
    """Dice per tissue over ``subjects`` phantoms from ``first_seed`` pooled, plus ``"mean"``."""
    segmenter = load_segmenter(path, device="cpu")
    heads = [generate_subject(first_seed + i) for i in range(subjects)]
    modality = segmenter.metadata.modality.lower()
    predicted = np.concatenate([segmenter.segment(getattr(h, modality), flip=flip).labels.ravel() for h in heads])
    truth = np.concatenate([h.labels.ravel() for h in heads])
    dice = dice_per_label(predicted, truth, {k: v for k, v in TISSUES.items() if k})
    return dice | {"mean": mean_dice(dice)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=sorted(Path(__file__).parent.glob("*.safetensors")))
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=HELD_OUT_SEED, help="first subject seed (default 5000)")
    parser.add_argument("--flip", action="store_true", help="average with the left-right flipped pass")
    args = parser.parse_args()
    tissues = [v for k, v in TISSUES.items() if k]
    print("| segmenter | " + " | ".join(tissues) + " | mean | trained |")
    print("|---" * (len(tissues) + 3) + "|")
    for path in args.files:
        dice = held_out_dice(path, args.subjects, args.flip, args.first_seed)
        p = load_segmenter(path).metadata.provenance
        trained = (
            f"{p.get('iterations')} it, {p.get('volumes')} vol, crop {p.get('crop')}, "
            f"{p.get('loss', 'ce+dice')}, {p.get('seconds')} s"
        )
        print(
            f"| {path.name} | "
            + " | ".join("n/a" if dice[t] is None else f"{dice[t]:.3f}" for t in tissues)
            + f" | {dice['mean']:.3f} | {trained} |"
        )


if __name__ == "__main__":
    main()
