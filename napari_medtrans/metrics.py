"""Image-translation metrics: paired, distribution, anatomical, uncertainty, robustness.

Every function takes numpy volumes in array order (z, y, x) on the original
intensity scale (HU for CT). Slices are taken along axis 0. A metric that cannot
be computed raises :class:`MetricUnavailable` (with the reason as its message);
callers report it as ``null`` plus that reason, never as a number.

:data:`METRICS` is the one table of metric descriptors (key, title, unit, better higher or
lower, per slice / per volume / per set, definition, paired function) that the evaluation,
its report and plots and the Evaluate widget read: a new metric is one entry plus its function.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import linalg, ndimage, stats
from skimage.metrics import structural_similarity
from skimage.transform import pyramid_gaussian, resize
from skimage.util import random_noise

from napari_medtrans.constants import CT_METRIC_RANGE

CT_RANGE = CT_METRIC_RANGE
"""SynthRAD convention: CT is clipped to this HU range for PSNR/SSIM (data range 4024)."""

SCENARIOS: dict[str, tuple[str, float]] = {
    "GN0": ("clean", 0.0),
    "GN5": ("gaussian", 0.05),
    "GN10": ("gaussian", 0.10),
    "GN20": ("gaussian", 0.20),
    "IP2": ("impulse", 0.02),
    "IP5": ("impulse", 0.05),
    "IP10": ("impulse", 0.10),
}
"""Robustness scenarios: Gaussian noise with std = % of the range, impulse noise on % of pixels."""


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed; the message says why."""


# ----------------------------------------------------------------------------- masks


def body_mask(image: np.ndarray, threshold: float) -> np.ndarray:
    """Foreground mask: ``image > threshold``, largest component, holes filled per slice."""
    mask = np.asarray(image) > threshold
    components, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, components, index=range(1, n + 1))
        mask = components == (int(np.argmax(sizes)) + 1)
    return np.stack([ndimage.binary_fill_holes(s) for s in mask]) if mask.ndim == 3 else ndimage.binary_fill_holes(mask)


# ----------------------------------------------------------------------------- paired


@dataclass
class Score:
    """A paired metric of one volume: its value and its value per slice (NaN where undefined)."""

    value: float
    per_slice: np.ndarray


def intensity_range(modality: str | None, reference: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """CT: the SynthRAD HU range :data:`CT_RANGE`; otherwise the reference's min/max inside the mask."""
    if modality == "CT":
        return CT_RANGE
    values = np.asarray(reference)[mask]
    if values.size == 0:
        raise MetricUnavailable("the body mask is empty")
    if values.min() == values.max():
        raise MetricUnavailable("the reference is constant inside the body mask (no intensity range)")
    return float(values.min()), float(values.max())


def _slice_means(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    count = where.sum(axis=(1, 2)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (values * where).sum(axis=(1, 2)) / count, np.nan)


def mae(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]) -> Score:
    """Mean |prediction − reference| in the body mask, unclipped (SynthRAD 2023)."""
    if not mask.any():
        raise MetricUnavailable("the body mask is empty")
    error = np.abs(prediction - reference)
    return Score(float(error[mask].mean()), _slice_means(error, mask))


def nmae(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]) -> Score:
    """MAE divided by the width of the intensity range."""
    score, width = mae(prediction, reference, mask, value_range), value_range[1] - value_range[0]
    return Score(score.value / width, score.per_slice / width)


def psnr(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]) -> Score:
    """10 log10(width² / MSE) in the body mask, both images clipped to the range (SynthRAD 2023)."""
    if not mask.any():
        raise MetricUnavailable("the body mask is empty")
    squared = (np.clip(prediction, *value_range) - np.clip(reference, *value_range)) ** 2
    width = value_range[1] - value_range[0]
    mse = float(squared[mask].mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        return Score(
            float(10 * np.log10(width**2 / mse)) if mse > 0 else float("inf"),
            10 * np.log10(width**2 / _slice_means(squared, mask)),
        )


SSIM_WINDOW = 7
"""SSIM window edge (skimage default, as SynthRAD); the map within half a window of the border is cropped."""


def ssim(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]) -> Score:
    """SSIM the SynthRAD 2023 way: clip to the range, fill outside the mask with its low end,
    shift so the low end is 0, one 3-D SSIM map (7×7×7 window; 2-D per slice when the volume
    has fewer than 7 slices), averaged over the mask after cropping 3 voxels at each border.

    The shift matters: SSIM's luminance term compares absolute values, so on raw HU a +30 HU
    bias in soft tissue (≈ 40 HU) costs ~11 %, shifted by +1024 it costs 0.04 %.
    Per slice: the mean of the same map over that slice's cropped mask (NaN in the first and
    last 3 slices of a 3-D map).
    """
    if not mask.any():
        raise MetricUnavailable("the body mask is empty")
    low, high = value_range
    pred, ref = (np.where(mask, np.clip(a, low, high), low) - low for a in (prediction, reference))
    pad = SSIM_WINDOW // 2
    inner = np.zeros_like(mask)
    if pred.shape[0] >= SSIM_WINDOW:
        ssim_map = structural_similarity(pred, ref, data_range=high - low, win_size=SSIM_WINDOW, full=True)[1]
        inner[pad:-pad, pad:-pad, pad:-pad] = mask[pad:-pad, pad:-pad, pad:-pad]
    else:
        ssim_map = np.stack(
            [
                structural_similarity(p, r, data_range=high - low, win_size=SSIM_WINDOW, full=True)[1]
                for p, r in zip(pred, ref)
            ]
        )
        inner[:, pad:-pad, pad:-pad] = mask[:, pad:-pad, pad:-pad]
    if not inner.any():
        raise MetricUnavailable("the body mask lies entirely within 3 voxels of the volume border")
    return Score(float(ssim_map[inner].mean(dtype=np.float64)), _slice_means(ssim_map, inner))


AIR_HU = -1000.0
"""HU of air: the value a CT translation should have outside the body."""
HOT_HU = -500.0
"""Outside the body, a translated CT voxel above this is a hallucination (air is −1000 HU)."""


def _outside(mask: np.ndarray) -> np.ndarray:
    outside = ~mask
    if not outside.any():
        raise MetricUnavailable("no voxels outside the body mask")
    return outside


def _require_ct(value_range: tuple[float, float]) -> None:
    if tuple(value_range) != CT_RANGE:
        raise MetricUnavailable("defined in HU, for CT translations only")


def mae_outside(
    prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]
) -> Score:
    """Mean |prediction − reference| outside the body mask (hallucinations in air count here)."""
    outside = _outside(mask)
    error = np.abs(prediction - reference)
    return Score(float(error[outside].mean()), _slice_means(error, outside))


def p99_outside(
    prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]
) -> Score:
    """99th percentile of |prediction − (−1000 HU)| outside the body mask (CT)."""
    _require_ct(value_range)
    outside = _outside(mask)
    deviation = np.abs(prediction - AIR_HU)
    per_slice = np.array([np.percentile(d[o], 99) if o.any() else np.nan for d, o in zip(deviation, outside)])
    return Score(float(np.percentile(deviation[outside], 99)), per_slice)


def hot_voxels_outside(
    prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]
) -> Score:
    """Number of voxels above −500 HU outside the body mask (CT)."""
    _require_ct(value_range)
    hot = (prediction > HOT_HU) & _outside(mask)
    return Score(float(hot.sum()), hot.sum(axis=(1, 2)).astype(float))


@dataclass
class PairedMetrics:
    """Every paired metric of one volume: value per key (None where unavailable, with the
    reason in ``reasons``) and ``per_slice`` arrays (NaN where a slice has no value).
    """

    values: dict[str, float | None]
    per_slice: dict[str, np.ndarray] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | None]:
        """The volume-level values."""
        return dict(self.values)


def paired_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    modality: str | None = "CT",
) -> PairedMetrics:
    """Every metric of :data:`METRICS` with a paired function, per volume and per slice (axis 0).

    The intensity range is :func:`intensity_range` of ``modality``. Accepts a 2-D
    image as a single slice. Raises :class:`MetricUnavailable` for an empty mask.
    """
    pred, ref = np.asarray(prediction, np.float64), np.asarray(reference, np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
        mask = None if mask is None else np.asarray(mask)[None]
    mask = np.ones(pred.shape, bool) if mask is None else np.asarray(mask, bool)
    if not mask.any():
        raise MetricUnavailable("the body mask is empty")
    value_range = intensity_range(modality, ref, mask)
    result = PairedMetrics({})
    for spec in METRICS:
        if spec.paired is None:
            continue
        try:
            score = spec.paired(pred, ref, mask, value_range)
        except MetricUnavailable as exc:
            result.values[spec.key], result.reasons[spec.key] = None, str(exc)
            continue
        result.values[spec.key], result.per_slice[spec.key] = score.value, score.per_slice
    return result


# ----------------------------------------------------------------------------- through-plane


def through_plane_error(
    prediction: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: tuple[float, float] = CT_RANGE,
) -> float:
    """MAE of the through-plane gradient: how much more (or less) neighbouring slices differ than in the truth.

    The gradient is the difference of neighbouring slices along axis 0,
    ``x[z + 1] − x[z]``, of both images clipped to ``data_range``; its absolute
    error is averaged over the voxel pairs whose two voxels lie in ``mask``.
    A slice-wise translator that shifts each slice by its own offset makes
    stripes in sagittal and coronal views and a high value here, although a
    shift of the whole volume scores 0. Raises :class:`MetricUnavailable` for
    a volume of one slice or a mask without two neighbouring voxels.
    """
    pred = np.clip(np.asarray(prediction, dtype=np.float64), *data_range)
    ref = np.clip(np.asarray(reference, dtype=np.float64), *data_range)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    if pred.ndim != 3 or pred.shape[0] < 2:
        raise MetricUnavailable(f"the through-plane error needs a volume of at least 2 slices, got shape {pred.shape}")
    mask = np.ones(pred.shape, bool) if mask is None else np.asarray(mask, bool)
    pairs = mask[1:] & mask[:-1]
    if not pairs.any():
        raise MetricUnavailable("the body mask has no voxel in two neighbouring slices")
    return float(np.abs(np.diff(pred, axis=0) - np.diff(ref, axis=0))[pairs].mean())


def through_plane(
    prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray, value_range: tuple[float, float]
) -> Score:
    """:func:`through_plane_error` as a table entry; per slice: the pairs (z, z + 1), NaN for the last slice."""
    value = through_plane_error(prediction, reference, mask, value_range)
    pred, ref = (np.clip(a, *value_range) for a in (prediction, reference))
    pairs = mask[1:] & mask[:-1]
    error = np.abs(np.diff(pred, axis=0) - np.diff(ref, axis=0))
    per_pair = [float(e[p].mean()) if p.any() else np.nan for e, p in zip(error, pairs)]
    return Score(value, np.array([*per_pair, np.nan]))


# ----------------------------------------------------------------------------- anatomy


def dice_per_label(prediction: np.ndarray, reference: np.ndarray, labels: dict[int, str]) -> dict[str, float | None]:
    """Dice of each label (name → value); ``None`` where the label is in neither volume."""
    result: dict[str, float | None] = {}
    for value, name in labels.items():
        p, r = prediction == value, reference == value
        total = int(p.sum()) + int(r.sum())
        result[name] = None if total == 0 else 2.0 * int((p & r).sum()) / total
    return result


def mean_dice(dice: dict[str, float | None]) -> float | None:
    """Mean over the labels that have a Dice value."""
    values = [v for v in dice.values() if v is not None]
    return float(np.mean(values)) if values else None


# ----------------------------------------------------------------------------- uncertainty


@dataclass
class UncertaintyAgreement:
    """Per-image mean σ, mean |residual| and body fraction, and the Pearson correlation
    of σ and residual over the images whose body fraction is at least ``min_foreground``.
    """

    pcc: float
    mean_scale: np.ndarray
    mean_error: np.ndarray
    foreground: np.ndarray
    min_foreground: float

    @property
    def used(self) -> np.ndarray:
        """Which images the correlation uses (body fraction ≥ ``min_foreground``)."""
        return self.foreground >= self.min_foreground


def uncertainty_pcc(
    scale: np.ndarray,
    prediction: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    min_foreground: float = 0.0,
) -> UncertaintyAgreement:
    """Pearson correlation across images (slices) of mean σ and mean absolute residual in ``mask``.

    Every slice with some mask is summarised; the correlation uses those whose
    mask covers at least ``min_foreground`` of the slice (0: all of them). Slivers
    at the top of a head (a few hundred voxels of skin) have a mean error made of
    boundary voxels only; translators are trained on slices with
    ``data.min_foreground`` (default 10 %) of foreground.
    """
    scale, residual = np.asarray(scale, float), np.abs(np.asarray(prediction, float) - np.asarray(reference, float))
    mask = np.ones(scale.shape, bool) if mask is None else np.asarray(mask, bool)
    count = mask.sum(axis=(1, 2))
    keep = count > 0
    mean_scale = (scale * mask).sum(axis=(1, 2))[keep] / count[keep]
    mean_error = (residual * mask).sum(axis=(1, 2))[keep] / count[keep]
    foreground = count[keep] / (mask.shape[1] * mask.shape[2])
    agreement = UncertaintyAgreement(np.nan, mean_scale, mean_error, foreground, min_foreground)
    agreement.pcc = pearson(mean_scale[agreement.used], mean_error[agreement.used])
    return agreement


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two equally long samples (at least 3, neither constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3:
        raise MetricUnavailable(f"needs at least 3 images with foreground, got {x.size}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise MetricUnavailable("σ or error is constant across images; correlation undefined")
    return float(stats.pearsonr(x, y)[0])


# ----------------------------------------------------------------------------- distribution


def _to_unit(images: Sequence[np.ndarray], data_range: tuple[float, float]) -> list[np.ndarray]:
    low, high = data_range
    return [np.clip((np.asarray(i, np.float64) - low) / (high - low), 0.0, 1.0) for i in images]


def _pyramid(image: np.ndarray, min_size: int) -> list[np.ndarray]:
    """Laplacian pyramid as Karras et al. build it: band-pass levels G_i − up(G_{i+1}) down to
    ``min_size`` pixels, then the low-pass level G_last (so a global shift counts).
    """
    gaussian = []
    for level in pyramid_gaussian(image, downscale=2):
        if min(level.shape) < min_size:
            break
        gaussian.append(level)
    bands = [
        g - resize(g_next, g.shape, order=1, mode="edge", anti_aliasing=False)
        for g, g_next in itertools.pairwise(gaussian)
    ]
    return bands + gaussian[-1:]


def _pyramid_patches(
    images: Sequence[np.ndarray], patches_per_image: int, patch: int, min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per pyramid level, an (n, patch²) array of patch descriptors at random positions."""
    levels: list[list[np.ndarray]] = []
    for image in images:
        for level, band in enumerate(_pyramid(image, min_size)):
            windows = np.lib.stride_tricks.sliding_window_view(band, (patch, patch))
            rows = rng.integers(0, windows.shape[0], patches_per_image)
            cols = rng.integers(0, windows.shape[1], patches_per_image)
            if level == len(levels):
                levels.append([])
            levels[level].append(windows[rows, cols].reshape(patches_per_image, -1))
    return [np.concatenate(level) for level in levels]


def _sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: int, repeats: int, rng: np.random.Generator) -> float:
    n = min(len(a), len(b))
    a, b = a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]
    distances = []
    for _ in range(repeats):
        proj = rng.standard_normal((a.shape[1], directions))
        proj /= np.linalg.norm(proj, axis=0, keepdims=True)
        distances.append(np.abs(np.sort(a @ proj, axis=0) - np.sort(b @ proj, axis=0)).mean())
    return float(np.mean(distances))


@dataclass
class SwdResult:
    """SWD ×10³ (mean over levels), its value per level (finest first, low-pass last) and,
    with groups, a bootstrap interval over them.
    """

    value: float
    per_level: list[float]
    ci95: tuple[float, float] | None = None


def swd(
    images: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    data_range: tuple[float, float] = CT_RANGE,
    *,
    groups: Sequence[int] | None = None,
    reference_groups: Sequence[int] | None = None,
    bootstrap: int = 0,
    patches_per_image: int = 128,
    patch: int = 7,
    min_size: int = 16,
    directions: int = 512,
    repeats: int = 4,
    seed: int = 0,
) -> SwdResult:
    """Sliced Wasserstein distance of Laplacian-pyramid patches (Karras et al., 2018), ×10³.

    Images (2-D slices) are scaled to [0, 1] by ``data_range``; 7×7 patches are drawn at
    positions drawn independently for each set (seeded) from every pyramid level down to
    ``min_size`` pixels, including the low-pass level as in Karras et al.; descriptors are
    normalised per level by the *reference* set's mean and std (Karras et al. normalise each
    set by its own statistics, which would hide a global shift); the result is the mean over
    levels. Two sets of the same distribution give a small positive value, not 0.
    With ``groups`` (the subject of each image) and ``bootstrap`` > 0, the interval resamples
    subjects in both sets and reuses the drawn patches (each resample: one draw of a quarter
    of the directions, which widens the interval a little rather than narrowing it).
    """
    if not images or not reference:
        raise MetricUnavailable("SWD needs at least one image in each set")
    levels_a, levels_b = (
        _pyramid_patches(
            _to_unit(s, data_range), patches_per_image, patch, min_size, np.random.default_rng([seed, which])
        )
        for which, s in enumerate((images, reference))
    )
    if not levels_a or not levels_b:
        raise MetricUnavailable(f"images are smaller than {min_size} pixels")
    levels_a = [(a - b.mean()) / (b.std() + 1e-8) for a, b in zip(levels_a, levels_b)]
    levels_b = [(b - b.mean()) / (b.std() + 1e-8) for b in levels_b]
    rng = np.random.default_rng([seed, 2])
    per_level = [1e3 * _sliced_wasserstein(a, b, directions, repeats, rng) for a, b in zip(levels_a, levels_b)]
    result = SwdResult(float(np.mean(per_level)), per_level)
    if groups is not None and reference_groups is not None and bootstrap > 0:
        group_a = np.repeat(np.asarray(groups), patches_per_image)
        group_b = np.repeat(np.asarray(reference_groups), patches_per_image)
        if min(len(np.unique(group_a)), len(np.unique(group_b))) >= 2:
            draws = []
            for _ in range(bootstrap):
                pick_a, pick_b = _resample(group_a, rng), _resample(group_b, rng)
                draws.append(
                    1e3
                    * np.mean(
                        [
                            _sliced_wasserstein(a[pick_a], b[pick_b], max(1, directions // 4), 1, rng)
                            for a, b in zip(levels_a, levels_b)
                        ]
                    )
                )
            result.ci95 = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))
    return result


@dataclass
class FrdResult:
    """FRD (log of the squared Fréchet distance, FRDv1), its bootstrap interval and what it used."""

    value: float
    ci95: tuple[float, float] | None
    features: int
    features_used: int
    samples: tuple[int, int]


FRD_SAMPLES_PER_FEATURE = 2
"""Covariances are estimated from at least this many samples per feature (else fewer features)."""


def radiomics_features(
    images: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None = None,
    reference_masks: Sequence[np.ndarray] | None = None,
    *,
    image_types: Sequence[str] | None = None,
    num_workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """FRDv1 radiomics features of two sets of 2-D images, jointly normalised as ``frd-score`` does."""
    try:
        from frd_score import frd as frd_module
    except ImportError as exc:
        raise MetricUnavailable("frd-score is not installed (pip install 'napari-medtrans[eval]')") from exc
    version = frd_module.FRD_VERSION_V1
    norm_type, norm_range, groups, types, norm_ref = frd_module._resolve_defaults(
        version, None, None, None, list(image_types) if image_types else None, norm_ref=frd_module.NORM_REF_DEFAULT
    )
    frd_module._ensure_radiomics()
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = frd_module.get_feature_extractor(frd_version=version, features=groups, image_dim=2, image_types=types)
    with tempfile.TemporaryDirectory(prefix="medtrans-frd-") as tmp:
        paths = [_write_slices(Path(tmp) / "a", images), _write_slices(Path(tmp) / "b", reference)]
        mask_paths = None
        if masks is not None and reference_masks is not None:
            mask_paths = [_write_slices(Path(tmp) / "ma", masks), _write_slices(Path(tmp) / "mb", reference_masks)]
        with contextlib.redirect_stdout(io.StringIO()):
            _, _, normalised, _ = frd_module.compute_statistics_of_paths(
                paths,
                norm_type,
                norm_range,
                extractor,
                paths_mask=mask_paths,
                norm_ref=norm_ref,
                num_workers=num_workers,
                frd_version=version,
            )
    return np.asarray(normalised[0], np.float64), np.asarray(normalised[1], np.float64)


def frd_from_features(
    features: np.ndarray,
    reference: np.ndarray,
    groups: Sequence[int] | None = None,
    reference_groups: Sequence[int] | None = None,
    *,
    bootstrap: int = 200,
    seed: int = 0,
) -> FrdResult:
    """FRD of two (n, d) feature sets with a full-rank covariance and a bootstrap interval.

    With fewer than :data:`FRD_SAMPLES_PER_FEATURE` × d samples in the smaller set, the
    covariance of all d features would be rank-deficient (its noise dominates the distance),
    so only the n_min // 2 features of largest variance in the reference set are used.
    The interval resamples ``groups`` (subjects; default: single images) with replacement,
    in both sets, ``bootstrap`` times (percentiles 2.5 and 97.5; None for fewer than 2 groups).
    """
    features, reference = np.asarray(features, np.float64), np.asarray(reference, np.float64)
    keep = np.isfinite(features).all(0) & np.isfinite(reference).all(0) & (reference.std(0) > 0)
    n_min, d = min(len(features), len(reference)), int(keep.sum())
    if n_min < 4 or d == 0:
        raise MetricUnavailable(f"FRD needs at least 4 images with features in each set, got {n_min}")
    used = min(d, n_min // FRD_SAMPLES_PER_FEATURE)
    order = np.argsort(-reference[:, keep].var(0), kind="stable")[:used]
    a, b = features[:, keep][:, order], reference[:, keep][:, order]

    def distance(x: np.ndarray, y: np.ndarray) -> float:
        value = frechet_distance(x, y)
        return float(np.log(value)) if value > 0 else float("-inf")

    value = distance(a, b)
    if not np.isfinite(value):
        raise MetricUnavailable("the radiomics feature distributions coincide (log of distance 0)")
    group_a = np.asarray(groups if groups is not None else np.arange(len(a)))
    group_b = np.asarray(reference_groups if reference_groups is not None else np.arange(len(b)))
    ci95 = None
    if min(len(np.unique(group_a)), len(np.unique(group_b))) >= 2 and bootstrap > 0:
        rng = np.random.default_rng(seed)
        samples = [distance(a[_resample(group_a, rng)], b[_resample(group_b, rng)]) for _ in range(bootstrap)]
        samples = [s for s in samples if np.isfinite(s)]
        ci95 = (float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))) if samples else None
    return FrdResult(value, ci95, d, used, (len(a), len(b)))


def _resample(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a bootstrap sample that draws whole groups with replacement."""
    names = np.unique(groups)
    return np.concatenate([np.flatnonzero(groups == g) for g in rng.choice(names, len(names))])


def frd(
    images: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None = None,
    reference_masks: Sequence[np.ndarray] | None = None,
    *,
    groups: Sequence[int] | None = None,
    reference_groups: Sequence[int] | None = None,
    image_types: Sequence[str] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    num_workers: int = 1,
) -> FrdResult:
    """Fréchet Radiomics Distance (``frd-score`` FRDv1 features) between two sets of 2-D images.

    Masks restrict the radiomics features to the body; ``image_types`` selects the
    PyRadiomics filters (default: frd-score's ``Original``, ``LoG``, ``Wavelet``).
    See :func:`frd_from_features` for the full-rank rule and the interval.
    """
    if len(images) < 2 or len(reference) < 2:
        raise MetricUnavailable("FRD needs at least two images in each set")
    features_a, features_b = radiomics_features(
        images, reference, masks, reference_masks, image_types=image_types, num_workers=num_workers
    )
    if len(features_a) != len(images) or len(features_b) != len(reference):
        # PyRadiomics skipped some images (a mask too small for a feature): subjects are no longer
        # known per row, so the interval resamples images
        groups = reference_groups = None
    return frd_from_features(features_a, features_b, groups, reference_groups, bootstrap=bootstrap, seed=seed)


def _write_slices(folder: Path, images: Sequence[np.ndarray]) -> list[str]:
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:05d}.nii.gz"
        array = np.asarray(image)
        array = array.astype(np.uint8 if array.dtype == bool else np.float32)
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        paths.append(str(path))
    return paths


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (n, d) feature sets (the FID formula)."""
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(covmean)))


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel (the KID formula)."""
    d = features_a.shape[1]

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x @ y.T / d + 1.0) ** 3

    k_aa, k_bb, k_ab = kernel(features_a, features_a), kernel(features_b, features_b), kernel(features_a, features_b)
    m, n = len(features_a), len(features_b)
    return float(
        (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1)) + (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1)) - 2 * k_ab.mean()
    )


def feature_extractor_from_file(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """Load a local TorchScript feature extractor for FID/KID (e.g. ``inception-2015-12-05.pt``).

    The returned callable maps (n, H, W) images in [0, 1] to (n, d) features; the
    module receives uint8 RGB batches (n, 3, 299, 299) and ``return_features=True``.
    Nothing is downloaded; without a file FID/KID are unavailable.
    """
    import torch
    import torch.nn.functional as F

    path = Path(path)
    if not path.is_file():
        raise MetricUnavailable(f"feature-extractor weights not found: {path}")
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def extract(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.asarray(images, np.float32))[:, None]
        batch = F.interpolate(batch, size=(299, 299), mode="bilinear", align_corners=False)
        batch = (batch.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
        with torch.no_grad():
            return module(batch, return_features=True).double().numpy()

    return extract


def fid_kid(
    images: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    extractor: Callable[[np.ndarray], np.ndarray],
    data_range: tuple[float, float] = CT_RANGE,
) -> tuple[float, float]:
    """FID and KID of two sets of 2D images with a local feature extractor."""
    if len(images) < 2 or len(reference) < 2:
        raise MetricUnavailable("FID/KID need at least two images in each set")
    features_a = extractor(np.stack(_to_unit(images, data_range)))
    features_b = extractor(np.stack(_to_unit(reference, data_range)))
    return frechet_distance(features_a, features_b), kernel_distance(features_a, features_b)


# ----------------------------------------------------------------------------- robustness


def apply_scenario(
    name: str, image: np.ndarray, seed: int, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Corrupt ``image`` as scenario ``name`` (a key of :data:`SCENARIOS`), reproducibly.

    Gaussian: std = level × (high − low), clipped to the range; impulse (the UAPI paper's
    IP): each pixel, with probability ``level``, is replaced by a value drawn uniformly from
    [low, high]. ``value_range`` defaults to the image's min/max.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    kind, level = SCENARIOS[name]
    array = np.asarray(image, np.float32)
    if kind == "clean":
        return array.copy()
    low, high = value_range if value_range is not None else (float(array.min()), float(array.max()))
    if kind == "impulse":
        rng = np.random.default_rng(seed)
        hit = rng.random(array.shape) < level
        noisy = array.copy()
        noisy[hit] = rng.uniform(low, high, int(hit.sum()))
        return noisy
    unit = np.clip((array - low) / (high - low), 0.0, 1.0)
    noisy = random_noise(unit, mode="gaussian", var=level**2, rng=seed, clip=True)
    return (noisy * (high - low) + low).astype(np.float32)


# ----------------------------------------------------------------------------- intervals


def bootstrap_ci(
    values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean, *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """95 % percentile-bootstrap interval of ``statistic`` over ``values`` (one per subject).

    None for fewer than 2 values; values that are None/NaN are left out.
    """
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if array.size < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(array[rng.integers(0, array.size, array.size)]) for _ in range(resamples)])
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def intervals_overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    """Whether two [low, high] intervals overlap (None when either is missing)."""
    if a is None or b is None:
        return None
    return bool(a[0] <= b[1] and b[0] <= a[1])


# ----------------------------------------------------------------------------- the metric table


PairedFunction = Callable[[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]], Score]


@dataclass(frozen=True)
class MetricSpec:
    """What every consumer (evaluation, report, plots, Evaluate widget) knows about a metric.

    ``scope``: "slice" (a value per volume and per slice), "volume" (per volume/subject) or
    "set" (between two sets of images; per-case values do not exist). ``paired``: the function
    ``(prediction, reference, mask, value_range) -> Score`` for paired metrics, else None (the
    evaluation computes it from sets, a segmenter or a scale map).
    """

    key: str
    title: str
    unit: str
    better: int
    """+1: higher is better; −1: lower is better."""
    scope: str
    definition: str
    paired: PairedFunction | None = None
    headline: bool = False
    """Drawn in the robustness and metric-vs-Dice plots and compared with Dice in the rankings."""


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "mae", "MAE", "HU", -1, "slice", "mean |translated − reference| in the body mask, unclipped", mae, headline=True
    ),
    MetricSpec(
        "psnr", "PSNR", "dB", +1, "slice", "10 log10(width² / MSE) in the body mask, clipped to the range", psnr
    ),
    MetricSpec(
        "ssim",
        "SSIM",
        "",
        +1,
        "slice",
        "SynthRAD SSIM: clip, fill outside the mask, shift, 3-D map, mean over the mask",
        ssim,
        headline=True,
    ),
    MetricSpec("nmae", "NMAE", "", -1, "slice", "MAE / range width", nmae),
    MetricSpec(
        "mae_outside", "MAE out", "HU", -1, "slice", "mean |translated − reference| outside the body mask", mae_outside
    ),
    MetricSpec(
        "p99_outside",
        "P99 air",
        "HU",
        -1,
        "slice",
        "99th percentile of |translated − (−1000 HU)| outside the body mask (CT)",
        p99_outside,
        headline=True,
    ),
    MetricSpec(
        "hot_voxels_outside",
        "hot air",
        "voxels",
        -1,
        "slice",
        "voxels above −500 HU outside the body mask (CT)",
        hot_voxels_outside,
    ),
    MetricSpec(
        "through_plane",
        "Through-plane",
        "HU",
        -1,
        "slice",
        "MAE of the slice-to-slice difference (z) in the body mask, clipped to the range: stripes of "
        "slice-wise translators",
        through_plane,
    ),
    MetricSpec(
        "swd",
        "SWD",
        "×10³",
        -1,
        "set",
        "sliced Wasserstein distance of Laplacian-pyramid patches "
        "(with the low-pass level), descriptors normalised by the reference set",
        headline=True,
    ),
    MetricSpec(
        "frd",
        "FRD",
        "",
        -1,
        "set",
        "Fréchet Radiomics Distance (FRDv1 features, log d²), full-rank covariance (≥ 2 slices per feature used)",
        headline=True,
    ),
    MetricSpec("fid", "FID", "", -1, "set", "Fréchet Inception distance with local feature-extractor weights"),
    MetricSpec("kid", "KID", "", -1, "set", "kernel Inception distance with local feature-extractor weights"),
    MetricSpec(
        "dice_mean",
        "Dice",
        "",
        +1,
        "volume",
        "mean over tissues of the target-modality segmenter's Dice on the translated image against the source labels",
        headline=True,
    ),
    MetricSpec(
        "uncertainty_pcc",
        "σ PCC",
        "",
        +1,
        "volume",
        "Pearson correlation over slices of mean σ and mean "
        "|error| in the body, per subject; the summary is the median over subjects",
    ),
)
"""The one table of metrics: a new metric is one entry here (plus its function)."""

METRIC_BY_KEY: dict[str, MetricSpec] = {m.key: m for m in METRICS}
SLICE_METRICS: tuple[str, ...] = tuple(m.key for m in METRICS if m.scope == "slice")
"""Metrics with a value per slice (the Evaluate widget's curve, the per-slice plot)."""
PAIRED_METRICS: tuple[str, ...] = tuple(m.key for m in METRICS if m.paired is not None)
SET_METRICS: tuple[str, ...] = tuple(m.key for m in METRICS if m.scope == "set")
HEADLINE_METRICS: tuple[str, ...] = tuple(m.key for m in METRICS if m.headline)
