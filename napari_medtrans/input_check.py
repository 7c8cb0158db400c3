"""Input check: is a volume like the data a translator was trained on?

A translator trained on one kind of image turns anything else into a
plausible-looking but wrong output (a CT given to a T1→CT translator comes out
as a smooth "CT" with bone at 90 HU). :func:`check_input` compares an input
with the *signature* stored in the translator's metadata (``input_signature``,
written at training export by :func:`build_signature`) and returns a
:class:`Verdict` with reasons. The CLI (``medtrans translate``, ``medtrans
check-input``), the Translate widget and :meth:`Translator.check_input` all
call this one function.

What is compared:

- **Header modality** (where the file says one): ``CT`` given to a translator
  expecting ``T1`` is refused by rule; a generic ``MR`` passes for any MR
  weighting (a DICOM header does not say T1 or T2).
- **Image features** of the volume normalised exactly as inference does
  (source intensity model, slice axis first; see :data:`FEATURES`): the
  foreground fraction, the mean and spread of the normalised foreground, the
  distance of its histogram from the training histogram, the in-plane
  gradient, its row/column anisotropy, the noise level (Immerkær's Laplacian
  estimator), the fraction of flat (piecewise-constant) foreground and a
  radial profile (mean intensity of the outer, middle and inner shell). Each is
  compared with the training mean ± :data:`THRESHOLD` training standard
  deviations (the deviation floored at :data:`RELATIVE_FLOOR` of the mean and
  at :data:`ABSOLUTE_FLOOR`, since a training set of a few phantoms
  underestimates the spread).
- **Geometry** (a :class:`~napari_medtrans.io.Volume` with a header): the
  in-plane spacing and field of view (a factor of :data:`GEOMETRY_TOLERANCE`
  either way is tolerated; without a recorded spacing, the slice size in
  pixels) and the anatomical plane of the slices (axial, coronal, sagittal).

The verdict's ``score`` is the largest measured distance in units of its
threshold (above 1: out of distribution); ``ood`` is true when the score
exceeds 1 or a header rule (modality, slice plane) fails. Computing the
features needs numpy and scipy only (no network weights).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from napari_medtrans.intensity import IntensityModel
from napari_medtrans.io import Volume
from napari_medtrans.resampling import in_plane, in_plane_resampling, training_spacing

SIGNATURE_VERSION = 1
#: Normalised value above which a voxel counts as foreground (as the trainer's slice sampler).
FOREGROUND_LEVEL = -0.9
HISTOGRAM_BINS = 16
#: A feature is out of distribution beyond this many training standard deviations from the mean.
THRESHOLD = 4.0
#: Floors of the training standard deviation: relative to |mean| and absolute (normalised units).
RELATIVE_FLOOR = 0.05
ABSOLUTE_FLOOR = 0.01
#: Spacing and field of view may differ from training by this factor either way.
GEOMETRY_TOLERANCE = 2.0
#: Features are measured on at most about this many voxels (evenly strided slices).
MAX_VOXELS = 1 << 21
#: Shell boundaries of the radial profile, as fractions of the deepest in-plane depth.
SHELLS = (0.2, 0.5)
#: Header modalities that say "some MR" without naming the weighting.
GENERIC_MR = {"MR", "MRI"}
PLANES = ("sagittal", "coronal", "axial")  # slices normal to physical x, y, z

FEATURES: dict[str, str] = {
    "foreground_fraction": "foreground fraction",
    "mean": "mean normalised intensity of the foreground",
    "std": "spread of the normalised foreground",
    "histogram_distance": "intensity histogram distance from training",
    "gradient": "mean in-plane gradient",
    "anisotropy": "row/column gradient ratio (log)",
    "noise": "noise level",
    "flat_fraction": "flat (piecewise-constant) fraction of the foreground",
    "rim_mean": "mean intensity of the outer shell of the foreground",
    "middle_mean": "mean intensity of the middle shell of the foreground",
    "core_mean": "mean intensity of the inner core of the foreground",
}
"""Image features (name → what the reason calls it)."""


@dataclass
class Verdict:
    """The outcome of :func:`check_input`."""

    ood: bool
    score: float
    reasons: list[str] = field(default_factory=list)
    distances: dict[str, float] = field(default_factory=dict)

    def to_dict(self, file: str | None = None) -> dict[str, Any]:
        """``{"file", "ood", "score", "reasons"}`` (what ``check-input --json`` prints)."""
        return {"file": file, "ood": self.ood, "score": round(self.score, 3), "reasons": list(self.reasons)}

    def summary(self) -> str:
        """One line for a status bar or terminal."""
        if not self.ood:
            return f"input check: like the training data (score {self.score:.2f})"
        return f"WARNING: input unlike the training data (score {self.score:.2f}): " + "; ".join(self.reasons)


# ----------------------------------------------------------------------------- features
def _histogram(values: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=HISTOGRAM_BINS, range=(FOREGROUND_LEVEL, 1.0))
    return counts / max(int(counts.sum()), 1)


def _noise(slices: np.ndarray, foreground: np.ndarray) -> float:
    """Immerkær's noise σ from the in-plane Laplacian difference kernel, over the foreground."""
    x = slices
    if x.shape[1] < 3 or x.shape[2] < 3:
        return 0.0
    response = (
        x[:, :-2, :-2]
        - 2 * x[:, :-2, 1:-1]
        + x[:, :-2, 2:]
        - 2 * x[:, 1:-1, :-2]
        + 4 * x[:, 1:-1, 1:-1]
        - 2 * x[:, 1:-1, 2:]
        + x[:, 2:, :-2]
        - 2 * x[:, 2:, 1:-1]
        + x[:, 2:, 2:]
    )
    inside = foreground[:, 1:-1, 1:-1]
    if not inside.any():
        return 0.0
    return float(math.sqrt(math.pi / 2) / 6 * np.abs(response[inside]).mean())


def _shell_means(x: np.ndarray, foreground: np.ndarray) -> list[float]:
    """Mean intensity of the foreground's outer, middle and inner shells (by in-plane depth).

    Depth is the in-plane distance to the background (holes filled); the shells
    are depths up to :data:`SHELLS` [0] and [1] of the deepest voxel and beyond.
    A radial profile tells a T1 (bright scalp fat and white matter) from a T2
    (bright CSF inside, dark rim) that has a similar histogram.
    """
    filled = ndimage.binary_fill_holes(foreground)
    depth = np.stack([ndimage.distance_transform_edt(plane) for plane in filled])  # in-plane only
    deepest = float(depth.max())
    if deepest == 0:
        return [-1.0, -1.0, -1.0]
    edges = [0.0, SHELLS[0] * deepest, SHELLS[1] * deepest, np.inf]
    means = []
    for low, high in itertools.pairwise(edges):
        shell = (depth > low) & (depth <= high)
        means.append(float(x[shell].mean()) if shell.any() else -1.0)
    return means


def volume_features(slices: np.ndarray) -> dict[str, Any]:
    """Image features of a normalised volume, slice axis first (n, rows, cols), values in [-1, 1].

    Returns the scalar features of :data:`FEATURES` (except ``histogram_distance``,
    which needs the training histogram) and ``histogram`` (bin fractions). A
    volume of more than :data:`MAX_VOXELS` voxels is measured on every k-th slice.
    """
    x = np.asarray(slices, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected normalised slices (n, rows, cols), got shape {x.shape}")
    x = x[:: max(1, math.ceil(x.size / MAX_VOXELS))]
    foreground = x > FOREGROUND_LEVEL
    values = x[foreground]
    rows = np.abs(np.diff(x, axis=1))[:, :, :-1]
    cols = np.abs(np.diff(x, axis=2))[:, :-1, :]
    inner = foreground[:, :-1, :-1]
    row_mean = float(rows[inner].mean()) if inner.any() else 0.0
    col_mean = float(cols[inner].mean()) if inner.any() else 0.0
    flat = (rows + cols)[inner] < 1e-6
    rim, middle, core = _shell_means(x, foreground)
    return {
        "foreground_fraction": float(foreground.mean()),
        "mean": float(values.mean()) if values.size else -1.0,
        "std": float(values.std()) if values.size else 0.0,
        "histogram": _histogram(values).tolist(),
        "gradient": float(np.hypot(rows[inner], cols[inner]).mean()) if inner.any() else 0.0,
        "anisotropy": float(math.log((row_mean + 1e-6) / (col_mean + 1e-6))),
        "noise": _noise(x, foreground),
        "flat_fraction": float(flat.mean()) if flat.size else 1.0,
        "rim_mean": rim,
        "middle_mean": middle,
        "core_mean": core,
    }


def normalised_slices(array: np.ndarray, model: IntensityModel, axis: int) -> np.ndarray:
    """``array`` mapped to network units by ``model`` (fitted on it), slice axis first."""
    return np.moveaxis(model.fit(array).to_network(array), axis, 0)


def _histogram_distance(histogram: Sequence[float], reference: Sequence[float]) -> float:
    """Total-variation distance (half the L1 distance) between two histograms, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(histogram) - np.asarray(reference)).sum())


# ----------------------------------------------------------------------------- geometry
def slice_plane(direction: Sequence[float], axis: int) -> str:
    """The anatomical plane of slices along array ``axis`` (normal closest to physical x, y or z)."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    normal = matrix[:, 2 - axis]  # array axis a is image (ITK) axis 2 - a
    return PLANES[int(np.argmax(np.abs(normal)))]


def geometry_of(volume: Volume, axis: int) -> dict[str, Any]:
    """In-plane spacing (mm, rows/cols), slice shape and plane of ``volume``'s slices along ``axis``."""
    return {
        "spacing": list(in_plane(tuple(volume.spacing)[::-1], axis)),
        "slice_shape": list(in_plane(volume.array.shape, axis)),
        "plane": slice_plane(volume.direction, axis),
    }


def training_geometry(description: Mapping[str, Any], axis: int) -> dict[str, Any]:
    """Slice geometry of phantom training volumes from a cohort description; {} for other data.

    Folder cohorts do not record their spacing, so their signature has no geometry.
    """
    if "phantom" not in description or "shape" not in description:
        return {}
    from napari_medtrans.phantom.fields import Grid

    depth, rows, cols = (int(n) for n in description["shape"])
    grid = Grid((depth, rows, cols))
    blank = np.broadcast_to(np.uint8(0), grid.shape)
    return geometry_of(Volume(blank, grid.spacing, grid.origin), axis)


# ----------------------------------------------------------------------------- signature
def build_signature(
    volumes: Iterable[np.ndarray],
    *,
    geometry: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The input signature of a training set: feature statistics over ``volumes``.

    ``volumes`` are normalised source volumes, slice axis first (what the trainer
    holds); ``geometry`` is :func:`geometry_of` one training volume (or at least
    its ``slice_shape``), ``source`` the data it came from (for the card).
    """
    per_volume = [volume_features(v) for v in volumes]
    if not per_volume:
        raise ValueError("build_signature needs at least one training volume")
    histograms = np.asarray([f["histogram"] for f in per_volume])
    reference = histograms.mean(axis=0)
    for features, histogram in zip(per_volume, histograms):
        features["histogram_distance"] = _histogram_distance(histogram, reference)
    stats = {
        name: {
            "mean": float(np.mean(col)),
            "std": float(np.std(col)),
            "min": float(np.min(col)),
            "max": float(np.max(col)),
        }
        for name in FEATURES
        for col in [[f[name] for f in per_volume]]
    }
    return {
        "version": SIGNATURE_VERSION,
        "volumes": len(per_volume),
        "histogram": [round(float(v), 6) for v in reference],
        "features": stats,
        "threshold": THRESHOLD,
        "geometry": dict(geometry or {}),
        "source": source,
    }


# ----------------------------------------------------------------------------- the check
def _modality_reason(header: str | None, expected: str) -> str | None:
    if not header:
        return None
    said, wanted = header.strip().upper(), expected.strip().upper()
    if said == wanted or (said in GENERIC_MR and wanted not in ("CT", "PT", "US")):
        return None
    return f"header says {header}; this translator expects {expected}"


def _feature_distances(features: Mapping[str, Any], signature: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
    """Feature → (distance in threshold units, reason text)."""
    threshold = float(signature.get("threshold", THRESHOLD))
    out: dict[str, tuple[float, str]] = {}
    for name, label in FEATURES.items():
        stat = signature["features"].get(name)
        if stat is None:
            continue
        value = features[name]
        spread = max(stat["std"], RELATIVE_FLOOR * abs(stat["mean"]), ABSOLUTE_FLOOR)
        if name == "histogram_distance":  # one-sided: only far histograms are suspicious
            limit = stat["mean"] + threshold * spread
            distance = max(0.0, value - stat["mean"]) / (threshold * spread)
            text = f"{label} {value:.2f}, threshold {limit:.2f}"
        else:
            low, high = stat["mean"] - threshold * spread, stat["mean"] + threshold * spread
            distance = abs(value - stat["mean"]) / (threshold * spread)
            text = f"{label} {value:.3g} outside the training range {low:.3g} to {high:.3g}"
        out[name] = (distance, text)
    return out


def _ratio_distance(value: float, reference: float) -> float:
    return abs(math.log(value / reference)) / math.log(GEOMETRY_TOLERANCE)


def _geometry_distances(
    geometry: Mapping[str, Any], trained: Mapping[str, Any]
) -> tuple[dict[str, tuple[float, str]], list[str]]:
    """(measured geometry distances, rule violations) of an input's slice geometry."""
    out: dict[str, tuple[float, str]] = {}
    rules = []
    spacing, trained_spacing = geometry["spacing"], trained.get("spacing")
    shape, trained_shape = geometry["slice_shape"], trained.get("slice_shape")
    if trained_spacing:
        d = max(_ratio_distance(s, t) for s, t in zip(spacing, trained_spacing))
        out["spacing"] = (d, f"in-plane spacing {_pair(spacing)} mm, trained on {_pair(trained_spacing)} mm")
        if trained_shape:
            fov = [n * s for n, s in zip(shape, spacing)]
            trained_fov = [n * s for n, s in zip(trained_shape, trained_spacing)]
            d = max(_ratio_distance(f, t) for f, t in zip(fov, trained_fov))
            out["field_of_view"] = (d, f"field of view {_pair(fov)} mm, trained on {_pair(trained_fov)} mm")
    elif trained_shape:
        d = max(_ratio_distance(n, t) for n, t in zip(shape, trained_shape))
        out["slice_shape"] = (d, f"slices of {_pair(shape, 'd')} pixels, trained on {_pair(trained_shape, 'd')}")
    if trained.get("plane") and geometry["plane"] != trained["plane"]:
        rules.append(f"{geometry['plane']} slices; this translator was trained on {trained['plane']} slices")
    return out, rules


def _pair(values: Sequence[float], kind: str = ".3g") -> str:
    return " × ".join(format(v if kind != "d" else int(v), kind) for v in values)


def check_input(
    volume: Volume | np.ndarray, metadata: Any, *, axis: int | None = None, resample: bool = True
) -> Verdict:
    """Compare ``volume`` with the training data of the translator described by ``metadata``, as the
    translator sees it: a :class:`~napari_medtrans.io.Volume` whose in-plane spacing differs from the
    training spacing is checked resampled to it, as the engine translates it (``resample=False``: on its
    own grid, as ``medtrans translate --keep-spacing`` translates it).

    ``metadata`` is a :class:`~napari_medtrans.checkpoint.TranslatorMetadata`;
    ``axis`` the slice axis (default: the translator's). A bare array is checked
    by its image features only. A translator without ``input_signature`` is
    checked by header modality and slice size only.
    """
    array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    if array.ndim != 3:
        raise ValueError(f"the input check needs a 3-D (z, y, x) volume, got shape {array.shape}")
    axis = metadata.slice_axis if axis is None else axis
    signature = getattr(metadata, "input_signature", None) or {}
    if isinstance(volume, Volume) and resample:
        grid = in_plane_resampling(array.shape, volume.spacing, axis, training_spacing(signature))
        if grid is not None:
            volume = grid.model_volume(volume)
            array = volume.array
    rules: list[str] = []
    measured: dict[str, tuple[float, str]] = {}
    if isinstance(volume, Volume):
        reason = _modality_reason(volume.modality, metadata.source)
        if reason:
            rules.append(reason)
        if signature.get("geometry"):
            distances, geometry_rules = _geometry_distances(geometry_of(volume, axis), signature["geometry"])
            measured.update(distances)
            rules += geometry_rules
    if signature.get("features"):
        source_model = IntensityModel.from_dict(metadata.source_intensity)
        features = volume_features(normalised_slices(array, source_model, axis))
        features["histogram_distance"] = _histogram_distance(features["histogram"], signature["histogram"])
        measured.update(_feature_distances(features, signature))
    score = max((d for d, _ in measured.values()), default=0.0)
    far = sorted(((d, text) for d, text in measured.values() if d > 1.0), reverse=True)
    return Verdict(
        ood=bool(rules or far),
        score=float(score),
        reasons=rules + [text for _, text in far],
        distances={name: round(float(d), 4) for name, (d, _) in measured.items()},
    )
