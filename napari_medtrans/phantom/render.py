"""Render a phantom label map as T1 MR, T2 MR and CT.

Each tissue has a base value per modality (table below), varied per subject,
plus texture: a smooth field shared by the three modalities with a tissue- and
modality-specific slope (a latent tissue property, e.g. the fat fraction of
marrow: brighter in T1, lower in HU) and a smooth field of each modality's own,
so that the translation between modalities is not a pure lookup of intensity.
The image is then blurred (partial volume), MR images get a multiplicative bias
field and Rician noise, CT gets Gaussian noise and is clipped to [-1024, 3071] HU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_medtrans.constants import CT_STORAGE_RANGE

from .fields import FourierField

MODALITIES = ("t1", "t2", "ct")

# tissue:         air  fat   bone  marrow  GM   WM   CSF   sinus  eye  soft
_BASE = {
    "t1": [0, 950, 70, 720, 520, 760, 160, 0, 190, 460],
    "t2": [0, 720, 50, 480, 680, 470, 1250, 0, 1150, 320],
    "ct": [-1000, -100, 1500, 450, 38, 28, 8, -980, 12, 50],
}
"""Base intensity per tissue: MR in arbitrary units (WM ≈ 760 in T1), CT in HU."""

_SHARED_SLOPE = {  # MR: fraction of the base per unit of the shared field; CT: HU
    "t1": [0, 0.04, -0.3, 0.15, 0.03, 0.03, 0.05, 0, 0.03, 0.06],
    "t2": [0, 0.04, -0.3, 0.12, 0.03, 0.03, 0.03, 0, 0.03, 0.06],
    "ct": [0, -15, 200, -75, 3, 3, 3, 10, 3, 10],
}
_OWN_SLOPE = {  # same units, for each modality's own field
    "t1": [0, 0.03, 0.1, 0.04, 0.02, 0.02, 0.03, 0, 0.02, 0.04],
    "t2": [0, 0.03, 0.1, 0.04, 0.02, 0.02, 0.02, 0, 0.02, 0.04],
    "ct": [5, 10, 60, 25, 3, 3, 3, 10, 3, 8],
}
_SUBJECT_JITTER = {"t1": 0.04, "t2": 0.04, "ct": 8.0}  # per-tissue base variation between subjects
PARTIAL_VOLUME_SIGMA = (0.45, 0.5, 0.5)
"""Gaussian blur (z, y, x) in voxels that stands for the scanner's point spread."""
MR_NOISE = 0.02
"""Rician noise σ as a fraction of white matter in T1 (before gain)."""
CT_NOISE_HU = 15.0
CT_RANGE = CT_STORAGE_RANGE
"""Rendered CT is clipped to the 12-bit scanner range (not the narrower metric range)."""


@dataclass(frozen=True)
class Appearance:
    """Per-subject intensity model: tissue values, texture fields, MR gain and bias."""

    base: dict[str, np.ndarray]
    gain: float  # MR scanner gain
    bias_strength: float
    shared: FourierField  # anatomical (moves with the anatomy)
    own: dict[str, FourierField]  # anatomical
    bias: dict[str, FourierField]  # scanner frame (does not move)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Appearance:
        """Draw a subject's appearance."""
        base = {}
        for kind in MODALITIES:
            values = population_base(kind)
            jitter = rng.normal(0, _SUBJECT_JITTER[kind], values.shape)
            base[kind] = values + jitter * (1 if kind == "ct" else values)
        return cls(
            base=base,
            gain=float(rng.uniform(0.8, 1.25)),
            bias_strength=float(rng.uniform(0.08, 0.2)),
            shared=FourierField.sample(rng, 25.0),
            own={kind: FourierField.sample(rng, 15.0) for kind in MODALITIES},
            bias={kind: FourierField.sample(rng, 250.0, terms=4) for kind in ("t1", "t2")},
        )

    def tissue_image(self, kind: str, labels: np.ndarray, shared: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Noise-free, sharp image of one modality from labels and the evaluated texture fields."""
        base = self.base[kind]
        scale = 1.0 if kind == "ct" else base
        shared_slope = (np.asarray(_SHARED_SLOPE[kind]) * scale).astype(np.float32)
        own_slope = (np.asarray(_OWN_SLOPE[kind]) * scale).astype(np.float32)
        image = base.astype(np.float32)[labels]
        image += shared_slope[labels] * np.clip(shared, -2, 2)
        image += own_slope[labels] * np.clip(own, -2, 2)
        return image


def population_base(kind: str) -> np.ndarray:
    """Tissue values of ``kind`` before the per-subject jitter (the population's expected values)."""
    return np.asarray(_BASE[kind], np.float64)


def blur(image: np.ndarray) -> np.ndarray:
    """The partial-volume blur every rendering applies (:data:`PARTIAL_VOLUME_SIGMA`)."""
    return ndimage.gaussian_filter(image, PARTIAL_VOLUME_SIGMA)


def render_mr(image: np.ndarray, gain: float, bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, apply ``gain`` and the multiplicative ``bias`` field, add Rician noise (float32 ≥ 0)."""
    signal = blur(image) * (np.float32(gain) * bias)
    sigma = np.float32(MR_NOISE * _BASE["t1"][5] * gain)
    real = signal + sigma * rng.standard_normal(signal.shape, np.float32)
    imaginary = sigma * rng.standard_normal(signal.shape, np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def render_ct(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, add Gaussian noise and clip to the CT range (float32 HU)."""
    signal = blur(image)
    signal += np.float32(CT_NOISE_HU) * rng.standard_normal(signal.shape, np.float32)
    return np.clip(signal, *CT_RANGE, out=signal)
