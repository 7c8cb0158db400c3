"""Confidence of pseudo labels: per voxel and per slice, and how well it finds the errors.

Per-voxel confidence in [0, 1] is the segmenter's margin (probability of the
chosen class minus that of the runner-up), times ``1 − flip disagreement``
where the segmenter ran with a test-time flip, optionally times the boundary
factor ``1 − exp(−d / BOUNDARY_SCALE)`` (``d``: in-plane distance in voxels to
the nearest voxel of another label), averaged over a 3×3 in-plane
neighbourhood (wrong labels come in blobs and borders), times, where the
translator gives an uncertainty (scale) map, a translator reliability
``exp(-σ / σ_ref)``. Of the probability, the margin, the entropy, the flip
disagreement and their products, margin × flip agreement had the highest voxel
AUROC for "label wrong" on a held-out CT phantom (0.90 vs 0.87 for the
probability). The boundary factor is for segmentations of *translated* images
(adaptation), whose errors gather on the borders of the labelled regions while
the segmenter stays sure of itself: on validation phantoms (seeds 304, 305) it
raised the voxel AUROC of adaptation from 0.870 to 0.893 (T1 from labelled CT)
and from 0.780 to 0.917 (T1 from labelled T2), but lowered that of tutorship
(CT from labelled T1, a segmenter of real images) from 0.860 to 0.847, which
therefore goes without it (scales 0.75–6, exponents 0.25–1 and 3-D distances
measured; benchmarks/results/pseudolabel_comparison.md has the held-out figures).

Per-slice scores (slices along array axis 0), in :data:`SLICE_SCORES`:

- ``"mean"``: the mean voxel confidence over the slice's labelled voxels (the
  whole slice when nothing is labelled in it);
- ``"expected_dice"``: the Dice the labels would reach if the class
  probabilities were calibrated, ``2 Σ p_k·[l = k] / (Σ p_k + Σ [l = k])``
  averaged over the tissues labelled or predicted in the slice (1 when none
  is). It weighs a doubtful voxel by how much it matters to the Dice of its
  tissue, so a small tissue with a doubtful border scores low;
- ``"volume_impact"``: ``1 −`` the expected share of each tissue's voxels in
  the volume that are wrong in this slice (``Σ (1 − confidence)`` over the
  slice's voxels of the tissue divided by the tissue's voxels in the volume),
  averaged over the tissues: how much fixing the slice would raise the
  volume's mean Dice. Comparable across volumes.

:func:`slice_spearman` and :func:`voxel_auroc` measure how well a score finds
the errors where ground truth exists. Both the pseudo-label pipeline and the
review queue use these, so they live in one place.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata, spearmanr

from napari_medtrans.metrics import dice_per_label, mean_dice

SLICE_SCORES = ("mean", "expected_dice", "volume_impact")

#: Probability mass (voxels) a tissue needs in a slice to count as predicted there.
PREDICTED_MASS = 0.5

#: In-plane neighbourhood (voxels) over which the voxel confidence is averaged.
SMOOTHING = 3

#: In-plane distance (voxels) from a label border at which the boundary factor reaches 1 − 1/e.
BOUNDARY_SCALE = 6.0


def segmenter_confidence(probabilities: np.ndarray) -> np.ndarray:
    """Margin: probability of the most likely class minus the runner-up's, from (C, z, y, x) probabilities."""
    top_two = np.partition(np.asarray(probabilities, dtype=np.float32), -2, axis=0)[-2:]
    return top_two[1] - top_two[0]


def boundary_factor(labels: np.ndarray, scale: float = BOUNDARY_SCALE) -> np.ndarray:
    """``1 − exp(−d / scale)`` per voxel, ``d`` the in-plane distance to the nearest voxel of another label.

    Slices are the leading axis; voxels on a border (next to another label) get 0,
    a slice with one label everywhere gets 1.
    """
    labels = np.asarray(labels)
    planes = labels.reshape(-1, *labels.shape[-2:])
    factor = np.ones(planes.shape, np.float32)
    for z, plane in enumerate(planes):
        border = np.zeros(plane.shape, bool)
        rows, cols = plane[1:] != plane[:-1], plane[:, 1:] != plane[:, :-1]
        border[1:] |= rows
        border[:-1] |= rows
        border[:, 1:] |= cols
        border[:, :-1] |= cols
        if border.any():
            factor[z] = 1 - np.exp(-ndimage.distance_transform_edt(~border) / scale)
    return factor.reshape(labels.shape)


def translator_reliability(sigma: np.ndarray, sigma_ref: float) -> np.ndarray:
    """Map a translator scale map σ (image units) to [0, 1]: ``exp(-σ / σ_ref)``.

    ``sigma_ref`` is the σ at which reliability drops to 1/e, in the same units
    (e.g. 10 % of the target intensity range).
    """
    if sigma_ref <= 0:
        raise ValueError(f"sigma_ref must be positive, got {sigma_ref}")
    return np.exp(-np.clip(np.asarray(sigma, dtype=np.float32), 0, None) / sigma_ref)


def voxel_confidence(
    probabilities: np.ndarray,
    sigma: np.ndarray | None = None,
    sigma_ref: float | None = None,
    flip_disagreement: np.ndarray | None = None,
    boundary_scale: float | None = None,
) -> np.ndarray:
    """Per-voxel confidence (z, y, x) float32 in [0, 1] (see the module); ``boundary_scale`` adds the boundary factor."""
    confidence = segmenter_confidence(probabilities)
    if flip_disagreement is not None:
        confidence = confidence * (1 - np.clip(flip_disagreement, 0, 1))
    if boundary_scale is not None:
        confidence = confidence * boundary_factor(np.argmax(probabilities, axis=0), boundary_scale)
    size = (1,) * (confidence.ndim - 2) + (SMOOTHING, SMOOTHING)
    confidence = ndimage.uniform_filter(confidence, size, mode="nearest")
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


def expected_dice(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Expected Dice per slice (axis 0 of ``labels``) from class probabilities (C, z, y, x); see the module."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1:] != labels.shape:
        raise ValueError(f"probabilities {probabilities.shape} do not fit labels {labels.shape}")
    n, classes = labels.shape[0], probabilities.shape[0]
    p = probabilities.reshape(classes, n, -1)[1:]  # tissues only
    onehot = labels.reshape(1, n, -1) == np.arange(1, classes)[:, None, None]
    overlap, mass, count = (p * onehot).sum(-1), p.sum(-1), onehot.sum(-1)
    counted = (count > 0) | (mass >= PREDICTED_MASS)  # (tissues, slices)
    dice = np.where(counted, 2 * overlap / np.maximum(mass + count, 1e-12), 0.0)
    n_counted = counted.sum(0)
    return np.where(n_counted > 0, dice.sum(0) / np.maximum(n_counted, 1), 1.0).astype(np.float32)


def volume_impact(confidence: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``1 −`` mean over tissues of the slice's expected wrong voxels / the tissue's voxels in the volume."""
    if confidence.shape != labels.shape:
        raise ValueError(f"confidence {confidence.shape} and labels {labels.shape} differ in shape")
    n = labels.shape[0]
    tissues = [t for t in np.unique(labels) if t != 0]
    if not tissues:
        return np.ones(n, np.float32)
    doubt = (1 - np.asarray(confidence, dtype=np.float64)).reshape(n, -1)
    flat = labels.reshape(n, -1)
    shares = [np.where(flat == t, doubt, 0.0).sum(1) / np.count_nonzero(flat == t) for t in tissues]
    return (1 - np.mean(shares, axis=0)).astype(np.float32)


def slice_scores(probabilities: np.ndarray, labels: np.ndarray, confidence: np.ndarray) -> dict[str, np.ndarray]:
    """Every score of :data:`SLICE_SCORES`, per slice."""
    return {
        "mean": slice_confidence(confidence, labels),
        "expected_dice": expected_dice(probabilities, labels),
        "volume_impact": volume_impact(confidence, labels),
    }


# -- how well a score finds the errors (where ground truth exists) ---------------------------
def slice_dice(labels: np.ndarray, truth: np.ndarray, tissues: dict[int, str]) -> list[float | None]:
    """Mean Dice per slice over the tissues present in either (``None`` where neither has any)."""
    return [mean_dice(dice_per_label(labels[z], truth[z], tissues)) for z in range(labels.shape[0])]


def slice_spearman(scores: np.ndarray, dice: list[float | None]) -> float | None:
    """Spearman ρ between per-slice scores and per-slice Dice (slices with a Dice; ``None`` if < 3)."""
    keep = [z for z, d in enumerate(dice) if d is not None]
    if len(keep) < 3:
        return None
    rho = spearmanr(np.asarray(scores)[keep], [dice[z] for z in keep]).statistic
    return None if np.isnan(rho) else float(rho)


def voxel_auroc(confidence: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> float | None:
    """AUROC of ``1 − confidence`` for "label wrong" over all voxels (Mann–Whitney; ``None`` if one class)."""
    wrong = (np.asarray(labels) != np.asarray(truth)).ravel()
    n_wrong, n_right = int(wrong.sum()), int((~wrong).sum())
    if not n_wrong or not n_right:
        return None
    ranks = rankdata(-np.asarray(confidence, dtype=np.float64).ravel())  # low confidence ranks high
    return float((ranks[wrong].sum() - n_wrong * (n_wrong + 1) / 2) / (n_wrong * n_right))
