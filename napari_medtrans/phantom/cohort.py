"""Cohorts of phantom pairs in the three data regimes, in memory or written as NIfTI files.

- ``paired``: source and target images of the same subject, aligned.
- ``unpaired``: source and target from disjoint subjects (2 n subjects for n pairs).
- ``misaligned``: the target is the same subject moved by ``misalign`` at ``level``.

On disk (``write_cohort``) every subject gets ``<name>_t1``, ``_t2``, ``_ct`` and
``_labels`` ``.nii.gz``; for misaligned pairs the source frame holds T1 and the
labels, while T2, CT and ``_labels_moved`` are moved, with ``_t2_aligned`` and
``_ct_aligned`` the ground truth in the source frame. ``manifest.json`` lists
subjects, files (with modality, frame and SHA-256) and pairs. The same
arguments give byte-identical files (same platform and numpy version: float
rounding of vectorised math may differ between CPUs).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .. import constants
from ..io import write_volume
from ..rundir import atomic_write_json
from .anatomy import TISSUES
from .subject import DEFAULT_SHAPE, MODALITY_TAGS, PhantomSubject, generate_subject, misalign

Regime = Literal["paired", "unpaired", "misaligned"]
REGIMES: tuple[str, ...] = constants.REGIMES
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "napari-medtrans phantom cohort"

# misaligned regime: output key -> (side of the pair, image); the others write all images of each subject
_MISALIGNED_FILES = {
    "t1": ("source", "t1"),
    "labels": ("source", "labels"),
    "t2": ("target", "t2"),
    "ct": ("target", "ct"),
    "labels_moved": ("target", "labels"),
    "t2_aligned": ("source", "t2"),
    "ct_aligned": ("source", "ct"),
}


@dataclass
class PhantomPair:
    """One training pair: source images come from ``source``, target images from ``target``."""

    source: PhantomSubject
    target: PhantomSubject  # the same object (paired), a moved copy (misaligned), another subject (unpaired)
    regime: str

    @property
    def aligned_target(self) -> PhantomSubject | None:
        """The target subject in the source's frame (ground truth); None for unpaired pairs."""
        return None if self.regime == "unpaired" else self.source


def subject_seed(seed: int, index: int, stream: int = 0) -> int:
    """The seed of subject ``index`` (stream 0) or of its misalignment (stream 1) in a cohort."""
    return int(np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(1)[0])


def _check(n: int, regime: str) -> None:
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose one of {', '.join(REGIMES)}")
    if int(n) < 1:
        raise ValueError(f"a cohort needs at least 1 subject, got {n}")


def generate_cohort(n: int, regime: Regime, seed: int = 0, level: int = 3, shape=DEFAULT_SHAPE) -> list[PhantomPair]:
    """``n`` phantom pairs of ``regime`` (``level`` is used by ``misaligned`` only)."""
    _check(n, regime)

    def subject(index: int) -> PhantomSubject:
        return generate_subject(subject_seed(seed, index), shape, name=f"sub-{index:03d}")

    pairs = []
    for i in range(n):
        source = subject(i)
        if regime == "paired":
            target = source
        elif regime == "unpaired":
            target = subject(n + i)
        else:
            target = misalign(source, level, subject_seed(seed, i, stream=1))
        pairs.append(PhantomPair(source, target, regime))
    return pairs


def _outputs(pair: PhantomPair) -> list[tuple[str, str, PhantomSubject, str]]:
    """(subject name, output key, subject, image) of every file one pair writes."""
    if pair.regime == "misaligned":
        sides = {"source": pair.source, "target": pair.target}
        return [(pair.source.name, key, sides[side], image) for key, (side, image) in _MISALIGNED_FILES.items()]
    subjects = [pair.source] if pair.target is pair.source else [pair.source, pair.target]
    return [(s.name, image, s, image) for s in subjects for image in MODALITY_TAGS]


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir}: folder is not empty; not writing into it without overwrite")


def write_cohort(
    out_dir: str | os.PathLike[str],
    n: int,
    regime: Regime,
    seed: int = 0,
    level: int = 3,
    shape=DEFAULT_SHAPE,
    *,
    overwrite: bool = False,
) -> dict:
    """Write ``n`` pairs as ``.nii.gz`` files plus ``manifest.json`` into ``out_dir``; return the manifest.

    Refuses a non-empty ``out_dir`` unless ``overwrite`` (then files of the same
    names are replaced; other files are left alone).
    """
    _check(n, regime)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    pairs = generate_cohort(n, regime, seed, level, shape)
    subjects: dict[str, dict] = {}
    for pair in pairs:
        for name, key, subject, image in _outputs(pair):
            entry = subjects.setdefault(name, {"name": name, "seed": subject.seed, "files": {}})
            if subject.misalignment is not None:
                entry["misalignment"] = subject.misalignment
            path = write_volume(subject.volume(image), out_dir / f"{name}_{key}.nii.gz", overwrite=overwrite)
            entry["files"][key] = {
                "path": path.name,
                "modality": MODALITY_TAGS[image],
                "frame": "moved" if subject.misalignment is not None else "source",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
    first = pairs[0].source
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "regime": regime,
        "seed": int(seed),
        "level": int(level) if regime == "misaligned" else None,
        "shape": list(first.shape),
        "spacing": list(first.spacing),
        "origin": list(first.origin),
        "direction": list(first.direction),
        "tissues": {str(k): v for k, v in TISSUES.items()},
        "subjects": list(subjects.values()),
        "pairs": [{"source": p.source.name, "target": p.target.name} for p in pairs],
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest
