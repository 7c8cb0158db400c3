"""Image-translation metrics: paired, distribution, anatomical, uncertainty, robustness.

Every function takes numpy volumes in array order (z, y, x) on the original
intensity scale (HU for CT). Slices are taken along axis 0. A metric that cannot
be computed raises :class:`MetricUnavailable` (with the reason as its message);
callers report it as ``null`` plus that reason, never as a number.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import linalg, ndimage, stats
from skimage.metrics import structural_similarity
from skimage.transform import pyramid_laplacian
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
class PairedMetrics:
    """Paired metrics of one volume; ``per_slice`` holds arrays (NaN where a slice has no mask)."""

    mae: float
    psnr: float
    ssim: float
    nmae: float
    per_slice: dict[str, np.ndarray] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The volume-level values."""
        return {"mae": self.mae, "psnr": self.psnr, "ssim": self.ssim, "nmae": self.nmae}


def paired_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    data_range: tuple[float, float] = CT_RANGE,
) -> PairedMetrics:
    """MAE, PSNR, SSIM and NMAE inside ``mask``, per volume and per slice (axis 0).

    Both images are clipped to ``data_range``. MAE is in image units (HU for CT);
    NMAE = MAE / (high - low); PSNR = 10 log10((high - low)² / MSE); SSIM is the mean
    of the 2D SSIM map (``skimage.metrics.structural_similarity``, per slice) over
    the mask. Accepts a 2D image as a single slice.
    """
    pred = np.clip(np.asarray(prediction, dtype=np.float64), *data_range)
    ref = np.clip(np.asarray(reference, dtype=np.float64), *data_range)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
        mask = None if mask is None else np.asarray(mask)[None]
    mask = np.ones(pred.shape, bool) if mask is None else np.asarray(mask, bool)
    if not mask.any():
        raise MetricUnavailable("the body mask is empty")
    width = float(data_range[1] - data_range[0])
    ssim_map = np.stack(
        [structural_similarity(p, r, data_range=width, full=True)[1] for p, r in zip(pred, ref)]
    )
    abs_err, sq_err = np.abs(pred - ref), (pred - ref) ** 2
    count = mask.sum(axis=(1, 2)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        slice_mae = np.where(count > 0, (abs_err * mask).sum(axis=(1, 2)) / count, np.nan)
        slice_mse = np.where(count > 0, (sq_err * mask).sum(axis=(1, 2)) / count, np.nan)
        slice_ssim = np.where(count > 0, (ssim_map * mask).sum(axis=(1, 2)) / count, np.nan)
        per_slice = {
            "mae": slice_mae,
            "nmae": slice_mae / width,
            "psnr": 10 * np.log10(width**2 / slice_mse),
            "ssim": slice_ssim,
        }
    mae = float(abs_err[mask].mean())
    mse = float(sq_err[mask].mean())
    return PairedMetrics(
        mae=mae,
        psnr=float(10 * np.log10(width**2 / mse)) if mse > 0 else float("inf"),
        ssim=float(ssim_map[mask].mean()),
        nmae=mae / width,
        per_slice=per_slice,
    )


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


# ----------------------------------------------------------------------------- anatomy


def dice_per_label(
    prediction: np.ndarray, reference: np.ndarray, labels: dict[int, str]
) -> dict[str, float | None]:
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
    of σ and residual over the images whose body fraction is at least ``min_foreground``."""

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
    scale: np.ndarray, prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None,
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


def _pyramid_patches(
    images: Sequence[np.ndarray], patches_per_image: int, patch: int, min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per Laplacian-pyramid level, an (n, patch²) array of random patch descriptors."""
    levels: list[list[np.ndarray]] = []
    for image in images:
        for level, band in enumerate(pyramid_laplacian(image, downscale=2)):
            if min(band.shape) < min_size:
                break
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


def swd(
    images: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    data_range: tuple[float, float] = CT_RANGE,
    *,
    patches_per_image: int = 128,
    patch: int = 7,
    min_size: int = 16,
    directions: int = 512,
    repeats: int = 4,
    seed: int = 0,
) -> float:
    """Sliced Wasserstein distance of Laplacian-pyramid patches (Karras et al., 2018), ×10³.

    Images (2D slices) are scaled to [0, 1] by ``data_range``; 7×7 patches are drawn
    from each pyramid level down to ``min_size`` pixels; descriptors are normalised by
    the *reference* set's mean and std (so that a global shift still counts); the
    result is the mean over levels. Patch positions are seeded, the same in both sets.
    """
    if not images or not reference:
        raise MetricUnavailable("SWD needs at least one image in each set")
    # the same patch positions in both sets, so identical sets give exactly 0
    levels_a, levels_b = (
        _pyramid_patches(_to_unit(s, data_range), patches_per_image, patch, min_size, np.random.default_rng(seed))
        for s in (images, reference)
    )
    rng = np.random.default_rng(seed)
    per_level = []
    for a, b in zip(levels_a, levels_b):
        mean, std = b.mean(), b.std() + 1e-8
        per_level.append(_sliced_wasserstein((a - mean) / std, (b - mean) / std, directions, repeats, rng))
    if not per_level:
        raise MetricUnavailable(f"images are smaller than {min_size} pixels")
    return 1e3 * float(np.mean(per_level))


def frd(
    images: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None = None,
    reference_masks: Sequence[np.ndarray] | None = None,
    *,
    image_types: Sequence[str] | None = None,
    num_workers: int = 1,
) -> float:
    """Fréchet Radiomics Distance (``frd-score``, FRDv1) between two sets of 2D images.

    Masks restrict the radiomics features to the body; ``image_types`` selects the
    PyRadiomics filters (default: frd-score's ``Original``, ``LoG``, ``Wavelet``).
    """
    try:
        from frd_score import compute_frd
    except ImportError as exc:
        raise MetricUnavailable("frd-score is not installed (pip install 'napari-medtrans[eval]')") from exc
    if len(images) < 2 or len(reference) < 2:
        raise MetricUnavailable("FRD needs at least two images in each set")
    with tempfile.TemporaryDirectory(prefix="medtrans-frd-") as tmp:
        paths = [_write_slices(Path(tmp) / "a", images), _write_slices(Path(tmp) / "b", reference)]
        mask_paths = None
        if masks is not None and reference_masks is not None:
            mask_paths = [_write_slices(Path(tmp) / "ma", masks), _write_slices(Path(tmp) / "mb", reference_masks)]
        with contextlib.redirect_stdout(io.StringIO()):
            value = float(
                compute_frd(paths, paths_masks=mask_paths, image_types=list(image_types) if image_types else None,
                            num_workers=num_workers)
            )
    if not np.isfinite(value):
        raise MetricUnavailable("the radiomics feature distributions coincide (log of distance 0)")
    return value


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
        (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
        + (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
        - 2 * k_ab.mean()
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

    Gaussian: std = level × (high − low); impulse: that fraction of pixels set to
    low or high (salt and pepper). ``value_range`` defaults to the image's min/max;
    the result is clipped to it and keeps the input dtype's float precision.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    kind, level = SCENARIOS[name]
    array = np.asarray(image, np.float32)
    if kind == "clean":
        return array.copy()
    low, high = value_range if value_range is not None else (float(array.min()), float(array.max()))
    unit = np.clip((array - low) / (high - low), 0.0, 1.0)
    if kind == "gaussian":
        noisy = random_noise(unit, mode="gaussian", var=level**2, rng=seed, clip=True)
    else:
        noisy = random_noise(unit, mode="s&p", amount=level, rng=seed)
    return (noisy * (high - low) + low).astype(np.float32)
