"""Smooth random fields, rigid/affine coordinate maps and the sampling grid of a phantom.

Everything here works on physical coordinates in millimetres, in SimpleITK's
(x, y, z) = (left, posterior, superior) order, given as three arrays that
broadcast against each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]

FIELD_OF_VIEW_MM = (153.6, 153.6, 128.0)
"""Physical extent (x, y, z) of every phantom volume; spacing = extent / shape."""

COARSE_SPACING_MM = 5.0
"""Smooth fields are evaluated on a grid about this coarse and linearly upsampled."""


@dataclass(frozen=True)
class FourierField:
    """A smooth random scalar field: a normalised sum of random plane waves (unit variance)."""

    wave_vectors: np.ndarray  # (n, 3) in rad/mm
    phases: np.ndarray  # (n,)

    @classmethod
    def sample(cls, rng: np.random.Generator, wavelength: float, terms: int = 6) -> FourierField:
        """Draw ``terms`` waves with random directions and wavelengths 0.7–1.4 × ``wavelength`` mm."""
        directions = rng.normal(size=(terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = wavelength * rng.uniform(0.7, 1.4, terms)
        return cls(directions * (2 * np.pi / lengths)[:, None], rng.uniform(0, 2 * np.pi, terms))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Evaluate at points (x, y, z) in mm; float32, shape of the broadcast inputs."""
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), np.float32)
        for (kx, ky, kz), phase in zip(self.wave_vectors.astype(np.float32), self.phases.astype(np.float32)):
            out += np.cos(kx * x + ky * y + kz * z + phase)
        out *= np.float32(np.sqrt(2.0 / len(self.phases)))
        return out


@dataclass(frozen=True)
class Affine:
    """The map p -> matrix @ p + offset on (x, y, z) points in mm."""

    matrix: np.ndarray  # (3, 3)
    offset: np.ndarray  # (3,)

    @classmethod
    def identity(cls) -> Affine:
        """The map that leaves every point where it is."""
        return cls(np.eye(3), np.zeros(3))

    def then(self, other: Affine) -> Affine:
        """The map that applies ``self`` first and ``other`` second."""
        return Affine(other.matrix @ self.matrix, other.matrix @ self.offset + other.offset)

    def __call__(self, points: Coords) -> Coords:
        m = self.matrix.astype(np.float32)
        b = self.offset.astype(np.float32)
        x, y, z = points
        return tuple(m[i, 0] * x + m[i, 1] * y + m[i, 2] * z + b[i] for i in range(3))


def rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for angles (about x, about y, about z) in degrees."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Warp:
    """One stage of a coordinate map: an affine, then an optional smooth displacement.

    ``q = a(p) + amplitude * (fx, fy, fz)(a(p))`` with unit-variance fields ``f``.
    """

    affine: Affine
    displacement: tuple[FourierField, FourierField, FourierField] | None = None
    amplitude: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __call__(self, points: Coords) -> Coords:
        moved = self.affine(points)
        if self.displacement is None:
            return moved
        return tuple(c + np.float32(a) * f(*moved) for c, a, f in zip(moved, self.amplitude, self.displacement))


def compose(points: Coords, stages: list[Warp]) -> Coords:
    """Apply ``stages`` in order to ``points``."""
    for stage in stages:
        points = stage(points)
    return points


@dataclass(frozen=True)
class Grid:
    """The voxel grid of a phantom: array shape (z, y, x) with SimpleITK geometry."""

    shape: tuple[int, int, int]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (x, y, z) in mm: the fixed field of view divided by the shape."""
        return _float32_exact(fov / n for fov, n in zip(FIELD_OF_VIEW_MM, self.shape[::-1]))

    @property
    def origin(self) -> tuple[float, float, float]:
        """Physical position (x, y, z) of voxel 0: the volume is centred on (0, 0, 0)."""
        return _float32_exact(-(n - 1) / 2 * s for n, s in zip(self.shape[::-1], self.spacing))

    def _axis_positions(self, coarse: bool) -> list[np.ndarray]:
        """Voxel indices along z, y, x of the full grid or of its coarse sub-grid."""
        positions = []
        for n, step in zip(self.shape, self.spacing[::-1]):
            count = max(2, int(np.ceil((n - 1) * step / COARSE_SPACING_MM)) + 1) if coarse else n
            positions.append(np.linspace(0, n - 1, min(count, n)))
        return positions

    def points(self, coarse: bool = False) -> Coords:
        """Physical (x, y, z) coordinates of the voxel centres as broadcastable float32 arrays."""
        iz, iy, ix = self._axis_positions(coarse)
        sx, sy, sz = self.spacing
        ox, oy, oz = self.origin
        x = (ox + sx * ix).astype(np.float32)[None, None, :]
        y = (oy + sy * iy).astype(np.float32)[None, :, None]
        z = (oz + sz * iz).astype(np.float32)[:, None, None]
        return x, y, z

    def upsample(self, coarse: np.ndarray) -> np.ndarray:
        """Linearly interpolate a field sampled on ``points(coarse=True)`` to the full grid."""
        out = coarse.astype(np.float32)
        for axis, n in enumerate(self.shape):
            out = _interpolate_axis(out, axis, n)
        return out


def _float32_exact(values) -> tuple[float, ...]:
    """Values rounded to float32, so that NIfTI headers (float32) store them exactly."""
    return tuple(float(np.float32(v)) for v in values)


def _interpolate_axis(array: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Corner-aligned linear interpolation of ``array`` to ``n_out`` samples along ``axis``."""
    n_in = array.shape[axis]
    if n_in == n_out:
        return array
    position = np.linspace(0, n_in - 1, n_out)
    low = np.minimum(np.floor(position).astype(int), n_in - 2)
    shape = [1] * array.ndim
    shape[axis] = n_out
    weight = (position - low).astype(np.float32).reshape(shape)
    below = np.take(array, low, axis=axis)
    above = np.take(array, low + 1, axis=axis)
    below += weight * (above - below)
    return below
