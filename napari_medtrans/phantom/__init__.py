"""Procedural, deterministic head phantoms: tissue labels rendered as T1, T2 and CT.

``generate_subject`` makes one head from a seed, ``misalign`` moves a copy of it
(RegGAN's noise levels 0–5), ``generate_cohort`` builds paired, unpaired or
misaligned training pairs in memory and ``write_cohort`` writes them as NIfTI
files with a ``manifest.json``.
"""

from .anatomy import TISSUES
from .cohort import MANIFEST, REGIMES, PhantomPair, generate_cohort, subject_seed, write_cohort
from .subject import DEFAULT_SHAPE, MAX_LEVEL, MODALITY_TAGS, PhantomSubject, expected_ct, generate_subject, misalign

__all__ = [
    "DEFAULT_SHAPE",
    "MANIFEST",
    "MAX_LEVEL",
    "MODALITY_TAGS",
    "REGIMES",
    "TISSUES",
    "PhantomPair",
    "PhantomSubject",
    "expected_ct",
    "generate_cohort",
    "generate_subject",
    "misalign",
    "subject_seed",
    "write_cohort",
]
