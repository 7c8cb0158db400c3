"""Array maths behind the viewer's overlays and comparison tools (no Qt, no napari).

All volumes are (z, y, x) arrays; in-plane operations act on the last two axes.
Displacement fields follow :mod:`napari_medtrans.nets.registration` (channel 0 =
Δrow, channel 1 = Δcol), stacked per slice as (z, 2, y, x).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from napari_medtrans.io import Volume
from napari_medtrans.nets.registration import warp


def checkerboard(a: np.ndarray, b: np.ndarray, tile: int) -> np.ndarray:
    """Interleave ``a`` and ``b`` in squares of ``tile`` pixels in every slice."""
    _check_same_shape(a, b)
    rows = np.arange(a.shape[-2]) // max(tile, 1)
    cols = np.arange(a.shape[-1]) // max(tile, 1)
    use_b = (rows[:, None] + cols[None, :]) % 2 == 1
    return np.where(use_b, b, a)


def curtain(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Show ``a`` left of the curtain at ``fraction`` of the width, ``b`` right of it."""
    _check_same_shape(a, b)
    edge = round(float(np.clip(fraction, 0.0, 1.0)) * a.shape[-1])
    out = np.array(b, copy=True)
    out[..., :edge] = a[..., :edge]
    return out


def body_mask(image: np.ndarray) -> np.ndarray:
    """Voxels brighter than 10 % of the 99th percentile: the body in an MR or CT image."""
    image = np.asarray(image, dtype=np.float32)
    low = float(np.min(image))
    return image - low > 0.1 * (float(np.percentile(image, 99)) - low)


def slice_pearson(sigma: np.ndarray, error: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson r of ``sigma`` vs ``error`` for every slice (NaN where undefined).

    ``mask`` (same shape, bool) restricts each slice to the voxels of interest.
    """
    _check_same_shape(sigma, error)
    out = np.full(sigma.shape[0], np.nan)
    for k in range(sigma.shape[0]):
        keep = mask[k] if mask is not None else slice(None)
        s = sigma[k][keep].astype(np.float64).ravel()
        e = error[k][keep].astype(np.float64).ravel()
        if s.size < 2:
            continue
        s, e = s - s.mean(), e - e.mean()
        denominator = np.sqrt((s * s).sum() * (e * e).sum())
        if denominator > 0:
            out[k] = float((s * e).sum() / denominator)
    return out


def field_magnitude(field_mm: np.ndarray) -> np.ndarray:
    """Length of each displacement (z, y, x) of a (z, 2, y, x) field in mm."""
    return np.sqrt(field_mm[:, 0] ** 2 + field_mm[:, 1] ** 2)


def field_vectors(
    field_mm: np.ndarray, spacing_zyx: tuple[float, float, float], step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Subsample a (z, 2, y, x) field in mm into napari vectors.

    Returns ``(data, magnitude)``: ``data`` (N, 2, 3) holds positions and
    projections in voxel coordinates of the volume (a Vectors layer with the
    volume's scale then draws them with their length in mm), ``magnitude`` (N,)
    the length of each vector in mm.
    """
    step = max(int(step), 1)
    z, _, height, width = field_mm.shape
    zz, rr, cc = np.meshgrid(
        np.arange(z), np.arange(step // 2, height, step), np.arange(step // 2, width, step), indexing="ij"
    )
    d_row = field_mm[zz, 0, rr, cc].ravel()
    d_col = field_mm[zz, 1, rr, cc].ravel()
    positions = np.stack([zz.ravel(), rr.ravel(), cc.ravel()], axis=1).astype(np.float32)
    projections = np.stack([np.zeros_like(d_row), d_row / spacing_zyx[1], d_col / spacing_zyx[2]], axis=1).astype(
        np.float32
    )
    return np.stack([positions, projections], axis=1), np.hypot(d_row, d_col)


def warped_grid(field_mm: np.ndarray, spacing_zyx: tuple[float, float, float], period: int = 8) -> np.ndarray:
    """A grid of lines every ``period`` pixels, warped by a (z, 2, y, x) field in mm."""
    _, _, height, width = field_mm.shape
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    lines = ((rows % period == 0) | (cols % period == 0)).astype(np.float32)
    pixels = torch.from_numpy(field_mm.astype(np.float32))
    pixels = pixels / torch.tensor([spacing_zyx[1], spacing_zyx[2]], dtype=torch.float32).view(1, 2, 1, 1)
    image = torch.from_numpy(lines).expand(field_mm.shape[0], 1, height, width)
    return warp(image, pixels)[:, 0].numpy()


def resample_like(moving: Volume, reference: Volume) -> np.ndarray:
    """``moving`` resampled (linear) onto ``reference``'s grid, in physical space.

    Returns the array unchanged when both share shape and geometry; voxels
    outside ``moving`` get its minimum value.
    """
    same = moving.array.shape == reference.array.shape and all(
        np.allclose(getattr(moving, k), getattr(reference, k), atol=1e-6) for k in ("spacing", "origin", "direction")
    )
    if same:
        return np.asarray(moving.array, dtype=np.float32)
    fill = float(np.min(moving.array))
    image = sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    grid = reference.with_array(np.zeros(reference.array.shape, np.float32)).to_sitk()
    return sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, fill))


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}; resample one onto the other first")
