"""In-plane resampling to a translator's training spacing and back.

A translator sees anatomy at the pixel size it was trained on: a 0.5 mm scan shows it a skull twice
as thick in pixels as it learnt. When a translator records its training spacing (the geometry of its
input signature, :mod:`napari_medtrans.input_check`) and a volume's in-plane spacing differs from it
by more than :data:`TOLERANCE`, the engine resamples the slices in-plane to that spacing (linear for
images, nearest for label maps; the slice axis is kept, so context slices stay the scanner's),
translates, and resamples the outputs back to the input's grid, as nnU-Net does. The field of view
is kept: the new pixels tile the same extent (``scipy.ndimage.zoom`` with ``grid_mode=True``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from napari_medtrans.io import Volume

TOLERANCE = 0.01
"""Relative in-plane spacing difference below which a volume is translated on its own grid."""


def training_spacing(input_signature: Mapping[str, Any]) -> tuple[float, float] | None:
    """The in-plane (rows, cols) spacing in mm a translator was trained on, or None when not recorded."""
    spacing = input_signature.get("geometry", {}).get("spacing")
    return None if not spacing else (float(spacing[0]), float(spacing[1]))


@dataclass(frozen=True)
class InPlaneResampling:
    """Slices along ``axis`` resampled from ``input_shape`` to ``model_shape`` (same extent) and back."""

    axis: int
    input_shape: tuple[int, int, int]
    model_shape: tuple[int, int, int]
    input_spacing: tuple[float, float]
    """In-plane (rows, cols) spacing of the input, mm."""
    model_spacing: tuple[float, float]
    """In-plane (rows, cols) spacing of the translator's grid (its training spacing, up to rounding), mm."""

    def to_model(self, array: np.ndarray, *, labels: bool = False) -> np.ndarray:
        """A volume on the input's grid, on the translator's grid (``labels``: nearest neighbour)."""
        return _zoom(array, self.input_shape, self.model_shape, labels)

    def model_volume(self, volume: Volume) -> Volume:
        """``volume`` (of the input's shape) on the translator's grid: the array resampled, the in-plane
        spacing the model's and the origin moved by half the change of a pixel (the extent is kept).
        """
        spacing_zyx = list(volume.spacing[::-1])
        for axis, model in zip((a for a in range(3) if a != self.axis), self.model_spacing):
            spacing_zyx[axis] = model
        new_spacing = np.array(spacing_zyx[::-1])
        shift = np.reshape(volume.direction, (3, 3)) @ ((new_spacing - np.array(volume.spacing)) / 2)
        return replace(
            volume,
            array=self.to_model(volume.array),
            spacing=tuple(new_spacing.tolist()),
            origin=tuple((np.array(volume.origin) + shift).tolist()),
        )

    def to_input(self, array: np.ndarray) -> np.ndarray:
        """A volume (or one slice, 2-D) on the translator's grid, back on the input's grid (linear)."""
        if array.ndim == 2:
            rows, cols = in_plane(self.input_shape, self.axis)
            return _zoom(array[None], (1, *array.shape), (1, rows, cols), False)[0]
        return _zoom(array, self.model_shape, self.input_shape, False)

    def describe(self) -> str:
        """One line for logs and status bars."""
        a, b = self.input_spacing, self.model_spacing
        return f"resampled in-plane from {a[0]:.3g} × {a[1]:.3g} mm to the training {b[0]:.3g} × {b[1]:.3g} mm and back"


def in_plane_resampling(
    shape: Sequence[int], spacing_xyz: Sequence[float], axis: int, trained: tuple[float, float] | None
) -> InPlaneResampling | None:
    """How a volume of ``shape`` (z, y, x) and ``spacing_xyz`` (SimpleITK order) is resampled for slices
    along ``axis`` to the ``trained`` in-plane spacing; None when it need not be (or nothing is recorded).
    """
    if trained is None:
        return None
    spacing = in_plane(tuple(spacing_xyz[::-1]), axis)
    if all(abs(s / t - 1) <= TOLERANCE for s, t in zip(spacing, trained)):
        return None
    sizes = in_plane(tuple(shape), axis)
    sides = [max(1, round(n * s / t)) for n, s, t in zip(sizes, spacing, trained)]
    model_shape = list(shape)
    for a, side in zip((a for a in range(3) if a != axis), sides):
        model_shape[a] = side
    return InPlaneResampling(
        axis=axis,
        input_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        model_shape=(model_shape[0], model_shape[1], model_shape[2]),
        input_spacing=(float(spacing[0]), float(spacing[1])),
        model_spacing=(sizes[0] * spacing[0] / sides[0], sizes[1] * spacing[1] / sides[1]),
    )


def in_plane(values: Sequence[Any], axis: int) -> tuple:
    """The two entries (rows, cols) of a (z, y, x) triple that lie in slices along array ``axis``."""
    return tuple(v for a, v in enumerate(values) if a != axis)


def _zoom(array: np.ndarray, shape: Sequence[int], new_shape: Sequence[int], labels: bool) -> np.ndarray:
    """``array`` of ``shape`` resampled to ``new_shape`` over the same extent (pixel edges aligned): float32
    (linear), or ``array``'s own dtype for ``labels`` (nearest).
    """
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"expected an array of shape {tuple(shape)}, got {array.shape}")
    factors = [m / n for n, m in zip(shape, new_shape)]
    source = array if labels else array.astype(np.float32, copy=False)
    return ndimage.zoom(source, factors, order=0 if labels else 1, mode="nearest", grid_mode=True)
