"""Intensity models: each modality's fixed mapping to the network range [-1, 1].

- CT (``kind="window"``): Hounsfield units clipped to ``[low, high]`` (default
  [-1024, 3000], the SynthRAD convention) and mapped linearly to [-1, 1].
- MR (``kind="percentile"``): the ``low``/``high`` percentiles of the foreground
  of each volume are mapped to -1/1 (clipped). The foreground is every voxel
  above 5 % of the robust range [min, 99.9th percentile]. Percentiles are taken
  on at most ``MAX_SAMPLES`` evenly strided voxels, so fitting is fast on large
  volumes and deterministic.
- MR (``kind="median"``, scanner-robust): each volume divided by the median of
  its foreground (the same foreground as above, an automatic head mask), and
  the ratios ``low``/``high`` of that median mapped to -1/1 (clipped). MR
  intensities are proportional to the signal (air ≈ 0) but in arbitrary units
  that differ between scanners and sequences; the ratio to the head's median
  tissue removes the unit and, unlike the upper percentiles, does not depend on
  whether bright fat or marrow is in the field of view (a skull-stripped or
  cropped T1 keeps its tissues where a phantom's are).

A percentile model on the *target* side has no fixed inverse; the checkpoint
stores a ``reference`` (bounds averaged over the training volumes, see
:meth:`IntensityModel.with_reference`) that :meth:`IntensityModel.output_mapping`
uses to bring network outputs back to image units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from napari_medtrans.constants import CT_METRIC_RANGE

#: Largest number of voxels a percentile fit looks at.
MAX_SAMPLES = 1 << 22
#: Foreground threshold, as a fraction of the robust range [min, p99.9].
FOREGROUND_FRACTION = 0.05
#: Kinds of intensity model.
KINDS = ("window", "percentile", "median")
#: Ratios to the foreground median that ``mr_median`` maps to -1 and 1 by default: 0 (no signal)
#: and 2.25 (the phantom's T1 fat, the brightest tissue, is 1.8 times its median).
MEDIAN_RATIO_RANGE = (0.0, 2.25)


@dataclass(frozen=True)
class IntensityMapping:
    """Concrete bounds (``lo``, ``hi``) in image units ↔ [-1, 1]."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.hi > self.lo:
            raise ValueError(f"intensity bounds must satisfy hi > lo, got lo={self.lo}, hi={self.hi}")

    def to_network(self, array: np.ndarray) -> np.ndarray:
        """Image units → float32 in [-1, 1] (clipped)."""
        out = np.asarray(array, dtype=np.float32) - np.float32(self.lo)
        out *= np.float32(2.0 / (self.hi - self.lo))
        out -= np.float32(1.0)
        return np.clip(out, -1.0, 1.0, out=out)

    def from_network(self, array: np.ndarray) -> np.ndarray:
        """Network units → float32 image units."""
        out = np.asarray(array, dtype=np.float32) + np.float32(1.0)
        out *= np.float32((self.hi - self.lo) / 2.0)
        out += np.float32(self.lo)
        return out

    def scale_from_network(self, sigma: np.ndarray) -> np.ndarray:
        """A scale or std in network units → image units (σ·(hi−lo)/2)."""
        return np.asarray(sigma, dtype=np.float32) * np.float32((self.hi - self.lo) / 2.0)

    def to_dict(self) -> dict[str, float]:
        return {"lo": float(self.lo), "hi": float(self.hi)}


@dataclass(frozen=True)
class IntensityModel:
    """How a modality is normalised; stored in checkpoints via ``to_dict``."""

    kind: Literal["window", "percentile", "median"]
    low: float
    high: float
    reference: IntensityMapping | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"intensity kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.high > self.low:
            raise ValueError(f"intensity model needs high > low, got low={self.low}, high={self.high}")
        if self.kind == "percentile" and not 0 <= self.low < self.high <= 100:
            raise ValueError(f"percentiles must lie in [0, 100], got {self.low}, {self.high}")
        if self.kind == "median" and self.low < 0:
            raise ValueError(f"median ratios must be ≥ 0, got {self.low}, {self.high}")

    def fit(self, array: np.ndarray) -> IntensityMapping:
        """The mapping for one volume: the window itself, its foreground percentiles or median ratios."""
        if self.kind == "window":
            return IntensityMapping(self.low, self.high)
        if self.kind == "median":
            median = foreground_median(array)
            scale = median if median > 0 else 1.0
            return IntensityMapping(self.low * scale, self.high * scale)
        lo, hi = foreground_percentiles(array, (self.low, self.high))
        return IntensityMapping(lo, hi if hi > lo else lo + 1.0)

    def with_reference(self, arrays: Iterable[np.ndarray]) -> IntensityModel:
        """This model plus a reference mapping: the bounds averaged over ``arrays``."""
        bounds = np.array([[m.lo, m.hi] for m in map(self.fit, arrays)])
        if bounds.size == 0:
            raise ValueError("with_reference needs at least one array")
        lo, hi = bounds.mean(axis=0)
        return IntensityModel(self.kind, self.low, self.high, IntensityMapping(float(lo), float(hi)))

    def output_mapping(self) -> IntensityMapping:
        """The mapping that brings network outputs of this modality to image units."""
        if self.kind == "window":
            return IntensityMapping(self.low, self.high)
        if self.reference is None:
            raise ValueError(f"a {self.kind} intensity model needs a reference mapping to invert outputs")
        return self.reference

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "low": float(self.low), "high": float(self.high)}
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityModel:
        try:
            ref = data.get("reference")
            return cls(
                data["kind"],
                float(data["low"]),
                float(data["high"]),
                IntensityMapping(float(ref["lo"]), float(ref["hi"])) if ref else None,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad intensity model {data!r}: {exc}") from exc


def foreground_percentiles(array: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``percentiles`` of the foreground voxels of ``array`` (see module doc)."""
    lo, hi = np.percentile(_foreground_sample(array), percentiles)
    return float(lo), float(hi)


def foreground_median(array: np.ndarray) -> float:
    """Median of the foreground voxels of ``array`` (see module doc)."""
    return float(np.median(_foreground_sample(array)))


def _foreground_sample(array: np.ndarray) -> np.ndarray:
    """The foreground of an evenly strided sample of ``array`` (all of it when nothing stands out)."""
    flat = np.asarray(array).reshape(-1)
    if flat.size == 0:
        raise ValueError("cannot fit intensities of an empty array")
    sample = flat[:: max(1, flat.size // MAX_SAMPLES)].astype(np.float32)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise ValueError("cannot fit intensities: the array has no finite values")
    vmin, vtop = np.percentile(sample, [0.0, 99.9])
    foreground = sample[sample > vmin + FOREGROUND_FRACTION * (vtop - vmin)]
    return foreground if foreground.size else sample


def ct_window(low: float = CT_METRIC_RANGE[0], high: float = CT_METRIC_RANGE[1]) -> IntensityModel:
    """CT in HU clipped to [low, high]."""
    return IntensityModel("window", low, high)


def mr_percentile(low: float = 0.5, high: float = 99.5) -> IntensityModel:
    """MR by robust foreground percentiles."""
    return IntensityModel("percentile", low, high)


def mr_median(low: float = MEDIAN_RATIO_RANGE[0], high: float = MEDIAN_RATIO_RANGE[1]) -> IntensityModel:
    """MR by ratios to the foreground median (scanner-robust, see the module doc)."""
    return IntensityModel("median", low, high)


def default_for(modality: str | None) -> IntensityModel:
    """CT → :func:`ct_window`; any other (MR, T1, T2, unknown) → :func:`mr_percentile`."""
    return ct_window() if modality == "CT" else mr_percentile()
