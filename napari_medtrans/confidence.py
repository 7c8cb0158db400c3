"""Confidence of pseudo labels: per voxel and per slice.

Per-voxel confidence in [0, 1] is the segmenter's probability of the chosen
class, multiplied, where the translator gives an uncertainty (scale) map, by a
translator reliability ``exp(-σ / σ_ref)``. Per-slice confidence (slices along
array axis 0) is the mean voxel confidence over the slice's labelled voxels, or
over the whole slice when nothing is labelled in it. Both the pseudo-label
pipeline and the review queue use these, so they live in one place.
"""

from __future__ import annotations

import numpy as np


def segmenter_confidence(probabilities: np.ndarray) -> np.ndarray:
    """Probability of the most likely class, from per-class probabilities (C, z, y, x)."""
    return np.asarray(probabilities, dtype=np.float32).max(axis=0)


def translator_reliability(sigma: np.ndarray, sigma_ref: float) -> np.ndarray:
    """Map a translator scale map σ (image units) to [0, 1]: ``exp(-σ / σ_ref)``.

    ``sigma_ref`` is the σ at which reliability drops to 1/e, in the same units
    (e.g. 10 % of the target intensity range).
    """
    if sigma_ref <= 0:
        raise ValueError(f"sigma_ref must be positive, got {sigma_ref}")
    return np.exp(-np.clip(np.asarray(sigma, dtype=np.float32), 0, None) / sigma_ref)


def voxel_confidence(
    probabilities: np.ndarray, sigma: np.ndarray | None = None, sigma_ref: float | None = None
) -> np.ndarray:
    """Per-voxel confidence (z, y, x) float32 in [0, 1]."""
    confidence = segmenter_confidence(probabilities)
    if sigma is not None:
        if sigma_ref is None:
            raise ValueError("sigma_ref is required when a translator scale map is given")
        confidence = confidence * translator_reliability(sigma, sigma_ref)
    return confidence.astype(np.float32)


def slice_confidence(confidence: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean confidence per slice (axis 0) over labelled voxels (whole slice if none)."""
    if confidence.shape != labels.shape:
        raise ValueError(f"confidence {confidence.shape} and labels {labels.shape} differ in shape")
    n = confidence.shape[0]
    conf = confidence.reshape(n, -1).astype(np.float64)
    fg = labels.reshape(n, -1) > 0
    counts = fg.sum(axis=1)
    fg_mean = np.where(fg, conf, 0.0).sum(axis=1) / np.maximum(counts, 1)
    return np.where(counts > 0, fg_mean, conf.mean(axis=1)).astype(np.float32)
