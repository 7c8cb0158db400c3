"""The inference engine: one path for the CLI, the Python API and the viewer.

A :class:`Translator` runs a loaded generator slice-wise along an axis of a
(z, y, x) volume. A volume whose in-plane spacing differs from the training
spacing is resampled to it and the outputs back (:mod:`napari_medtrans.resampling`).
Slices are normalised per batch (the source intensity model is
fitted once per volume), padded with air to the training window and the network's size multiple,
translated under ``torch.inference_mode`` (optionally with bf16/fp16 autocast),
cropped back and mapped to target units (a synthetic CT comes out in HU). A 3-D
translator (metadata ``patch``) translates by overlapping sliding windows with
Gaussian blending instead (:mod:`napari_medtrans.sliding_window`); on the fly it
translates the slab of its patch's thickness around the slice. Only
the output arrays are allocated at full size; memory does not grow with a copy
of the volume per stage.

Uncertainty: the generator's scale map (when it has one, in target units), and
for any model a per-voxel std over test-time flips (``"tta"``) or over
MC-dropout samples (``"mc_dropout"``, for generators with dropout); with either,
the returned image is the mean over the samples.

Stochastic translators (SynDiff, UNSB, MUNIT: a generator with
``stochastic = True``, an int ``steps`` and ``forward(x, noise)``) take a
``seed`` and a number of sampling ``steps``; ``uncertainty="samples"`` draws
``mc_samples`` samples, the translation is their mean and the uncertainty their
per-voxel std (target units). Sample k of slice i draws all its noise from a
``torch.Generator`` seeded from (seed, k, i) (:func:`sample_noise`), so a seed
reproduces a translation whatever the batch size, and two seeds differ. Without
an uncertainty one sample (k = 0) is drawn.

Precision: ``"fp32"`` is the default for results. bf16/fp16 autocast differs
from fp32 by a few to about ten HU on average (a few hundred at single voxels
of a ResNet-9) and pays off on GPUs and on CPUs with bf16 instructions
(AVX512-BF16/AMX: 2.2–2.6× the naive fp32 loop here); on an AVX-512 CPU without
them, bf16 is emulated and slower than fp32 (see
``benchmarks/results/inference_throughput.md``). The generators' input layer
stays in fp32, and uniform slices (pure air) are translated in fp32.

Batch size: by default measured once per (translator, slice size, device,
threads, precision) on the first slices of a volume and cached in the user's
cache folder (:mod:`napari_medtrans.batch_size`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_medtrans import constants, cpu_features
from napari_medtrans.batch_size import (
    BatchKey,
    BatchSizeCache,
    MeasuredBatches,
    network_id,
)
from napari_medtrans.checkpoint import TranslatorMetadata, load_modules
from napari_medtrans.input_check import Verdict, check_input
from napari_medtrans.intensity import IntensityMapping
from napari_medtrans.io import Volume
from napari_medtrans.nets.registration import warp
from napari_medtrans.registry import resolve
from napari_medtrans.resampling import InPlaneResampling, in_plane_resampling, training_spacing
from napari_medtrans.sliding_window import translate_slab, translate_volume_3d

Precision = Literal["fp32", "bf16", "fp16"]
Uncertainty = Literal["tta", "mc_dropout", "samples"]
#: Autocast dtype of each precision (None: plain fp32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
UNCERTAINTIES = ("tta", "mc_dropout", "samples")
DEVICES = constants.DEVICES
#: Test-time augmentations: flips over these tensor dims (identity first).
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
#: Batch size of the registration network: slices per batch × padded pixels × channels of its
#: first layer stays within this many activations (on a CPU a batch is fastest while its feature
#: maps fit the caches); accelerators get a larger budget.
ACTIVATION_BUDGET = {"cpu": 2**21}
ACCELERATOR_BUDGET = 2**26
MAX_BATCH = 64
#: Output outside a translation mask, per target modality (others: the low bound of the output mapping).
BACKGROUND = {"CT": -1000.0}
#: Measured generator batch sizes (the user's cache folder).
BATCH_SIZES = BatchSizeCache()


def sample_noise(seed: int, sample: int, index: int, device: torch.device) -> torch.Generator:
    """The noise of sample ``sample`` of slice ``index``: a generator on ``device`` seeded from all three."""
    state = np.random.SeedSequence([seed, sample, index]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1))


@dataclass(frozen=True)
class Sampling:
    """How a stochastic generator samples a batch: ``seed``, ``steps`` (None: its own) and the
    volume index of each slice of the batch (``first`` + row).
    """

    seed: int
    steps: int | None
    indices: tuple[int, ...]

    def subset(self, mask: torch.Tensor) -> Sampling:
        """The plan of the rows where ``mask`` is true."""
        return Sampling(self.seed, self.steps, tuple(i for i, m in zip(self.indices, mask.tolist()) if m))


class Cancelled(Exception):
    """Raised by :meth:`Translator.translate_volume` when ``cancel()`` became true."""


@dataclass
class SliceResult:
    """One translated slice (2-D, target units)."""

    image: np.ndarray
    scale: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


@dataclass
class TranslationResult:
    """A translated volume: same shape as the input, float32, target units."""

    image: np.ndarray
    scale: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


@dataclass
class RegistrationResult:
    """A registration of ``moving`` onto ``fixed``.

    ``field`` is in mm, shape (slices, 2, rows, cols) with slices taken along
    ``axis`` (for axis 0: (z, 2, y, x)); component 0 = displacement along the
    slice's rows, 1 = along its columns (see :mod:`napari_medtrans.nets.registration`).
    For 2-D input it is (2, rows, cols). ``warped`` is ``moving`` warped, in
    target units, with the input's shape.
    """

    field: np.ndarray
    warped: np.ndarray
    axis: int


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → cuda, else mps, else cpu; an unavailable device is a ValueError."""
    name = str(device)
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if kind == "auto":
        return torch.device(next(k for k in ("cuda", "mps", "cpu") if available[k]))
    if not available[kind]:
        raise ValueError(f"device {name!r} is not available on this machine")
    return torch.device(name)


class PreparedVolume:
    """A source volume ready for slice-wise translation.

    Holds a reference to the array (no copy), the intensity mapping fitted once,
    and an LRU cache of translated slices for the on-the-fly viewer.
    """

    def __init__(
        self,
        array: np.ndarray,
        axis: int,
        mapping: IntensityMapping,
        context: int,
        cache_size: int = 32,
        labels: np.ndarray | None = None,
        label_classes: int = 0,
        resampling: InPlaneResampling | None = None,
        input_labels: np.ndarray | None = None,
    ) -> None:
        if array.ndim != 3:
            raise ValueError(f"expected a 3-D (z, y, x) array, got shape {array.shape}")
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        self.array = array
        self.labels = labels
        """Label map (the volume's shape) appended one-hot to each slice for label-conditioned translators."""
        self.resampling = resampling
        """How ``array`` was resampled from the input's grid (None: it is the input)."""
        self.input_labels = labels if resampling is None else input_labels
        """``labels`` on the input's grid."""
        self.label_classes = label_classes
        self.axis = axis
        self.mapping = mapping
        self.context = context
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, SliceResult] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def n_slices(self) -> int:
        return self.array.shape[self.axis]

    @property
    def slice_shape(self) -> tuple[int, int]:
        """(rows, cols) of one slice."""
        rows, cols = (n for a, n in enumerate(self.array.shape) if a != self.axis)
        return rows, cols

    def network_input(self, start: int, stop: int) -> torch.Tensor:
        """Slices ``start:stop`` as (B, k, H, W) float32 in [-1, 1] (k context slices, edges repeated)."""
        half = self.context // 2
        index = np.clip(np.arange(start - half, stop + half), 0, self.n_slices - 1)
        block = np.moveaxis(np.take(self.array, index, axis=self.axis), self.axis, 0)
        slices = torch.from_numpy(self.mapping.to_network(block))
        stack = slices.unfold(0, self.context, 1).permute(0, 3, 1, 2)
        if self.labels is None:
            return stack
        labels = torch.from_numpy(
            np.moveaxis(np.take(self.labels, np.arange(start, stop), axis=self.axis), self.axis, 0)
        )
        one_hot = F.one_hot(labels.long(), self.label_classes).permute(0, 3, 1, 2).to(stack.dtype)
        return torch.cat([stack, one_hot], 1)

    def cached(self, key: tuple) -> SliceResult | None:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def store(self, key: tuple, result: SliceResult) -> None:
        with self._lock:
            self._cache[key] = result
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)


def _padded_size(n: int, multiple: int, minimum: int = 0) -> int:
    """A side of ``n`` pixels padded to at least ``minimum`` and to a multiple of ``multiple`` (≥ 2 multiples)."""
    return max(math.ceil(max(n, minimum) / multiple) * multiple, 2 * multiple)


def _pad(
    x: torch.Tensor, multiple: int, *, minimum: int = 0, image_channels: int | None = None
) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Pad (B, C, H, W) with air, centred, as training pads its windows (see :func:`_padded_size`).

    ``minimum`` is the training window: a smaller slice (a crop of the brain, a small field of view) is
    shown to the network inside background, as no training window showed tissue from edge to edge.
    Image channels pad with −1 (air, no signal); channels from ``image_channels`` on are a one-hot
    label map and pad with label 0. Returns the padded tensor and the (row, col) slices that crop it back.
    """
    height, width = x.shape[-2:]
    target = [_padded_size(n, multiple, minimum) for n in (height, width)]
    top, left = (target[0] - height) // 2, (target[1] - width) // 2
    bottom, right = target[0] - height - top, target[1] - width - left
    crop = (slice(top, top + height), slice(left, left + width))
    if not (top or bottom or left or right):
        return x, crop
    pads = (left, right, top, bottom)
    padded = F.pad(x, pads, value=-1.0)
    image_channels = x.shape[1] if image_channels is None else image_channels
    if image_channels < x.shape[1]:
        padded[:, image_channels:] = F.pad(x[:, image_channels:], pads, value=0.0)
        outside = torch.ones(target, dtype=torch.bool, device=x.device)
        outside[crop] = False
        padded[:, image_channels, outside] = 1.0
    return padded, crop


def _has_dropout(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in module.modules())


class Translator:
    """A loaded translator: generator (+ registration network) and metadata."""

    def __init__(
        self, modules: dict[str, nn.Module], metadata: TranslatorMetadata, device: str | torch.device = "cpu"
    ) -> None:
        self.metadata = metadata
        self.device = resolve_device(device)
        self.generator = modules["generator"].eval().to(self.device)
        self.registration = modules.get("registration")
        if self.registration is not None:
            self.registration = self.registration.eval().to(self.device)
        self.source_model, self.target_model = metadata.intensity_models()
        self.output_mapping = self.target_model.output_mapping()
        self._mc_generator: nn.Module | None = None
        self._mc_lock = threading.Lock()
        self._steps_lock = threading.RLock()

    @property
    def provides_scale(self) -> bool:
        """Whether the generator outputs a scale (uncertainty) map."""
        return bool(getattr(self.generator, "provides_scale", False))

    @property
    def stochastic(self) -> bool:
        """Whether the generator samples (takes a seed and ``steps``; ``uncertainty="samples"``)."""
        return bool(getattr(self.generator, "stochastic", False))

    @property
    def steps(self) -> int | None:
        """The generator's default number of sampling steps (None for a deterministic generator)."""
        return int(self.generator.steps) if self.stochastic else None

    @property
    def max_steps(self) -> int | None:
        """The most sampling steps the generator takes: the number it was trained with
        (``num_timesteps``; else its ``steps``); None for a deterministic generator.
        """
        return int(getattr(self.generator, "num_timesteps", self.generator.steps)) if self.stochastic else None

    @property
    def supports_mc_dropout(self) -> bool:
        """Whether the generator has dropout layers (needed for ``uncertainty="mc_dropout"``)."""
        return _has_dropout(self.generator)

    # ----------------------------------------------------------------- public API
    def check_input(self, volume: Volume | np.ndarray, *, axis: int | None = None, resample: bool = True) -> Verdict:
        """Is ``volume`` like this translator's training data, as it sees it (``resample``: at the training
        spacing, see :meth:`translate_volume`)? (:func:`~napari_medtrans.input_check.check_input`).
        """
        return check_input(volume, self.metadata, axis=axis, resample=resample)

    @property
    def training_spacing(self) -> tuple[float, float] | None:
        """In-plane (rows, cols) spacing in mm of the training slices, when recorded."""
        return training_spacing(self.metadata.input_signature)

    def resampling(
        self, shape: tuple[int, ...], spacing: tuple[float, ...], axis: int | None = None
    ) -> InPlaneResampling | None:
        """How slices along ``axis`` of a volume of ``shape`` and (x, y, z) ``spacing`` in mm are resampled
        to the training spacing (None: they are translated on their own grid).
        """
        along = self.metadata.slice_axis if axis is None else axis
        return in_plane_resampling(shape, spacing, along, self.training_spacing)

    def prepare(
        self,
        array: np.ndarray,
        *,
        axis: int | None = None,
        cache_size: int = 32,
        labels: np.ndarray | None = None,
        spacing: tuple[float, ...] | None = None,
    ) -> PreparedVolume:
        """Fit the source intensity model once; ``axis`` defaults to the model's slice axis.

        ``labels``: the label map of ``array`` (same shape, integers in [0, classes)), required
        by a label-conditioned translator (``metadata.label_classes`` > 0, e.g. SPADE) and
        refused by any other. ``spacing``: the array's (x, y, z) spacing in mm; when given and the
        slices' in-plane spacing differs from :attr:`training_spacing`, the slices are resampled to it
        (:mod:`napari_medtrans.resampling`) and :meth:`translate_slice` resamples its results back.
        """
        array = np.asarray(array)
        if array.ndim != 3:
            raise ValueError(f"expected a 3-D (z, y, x) array, got shape {array.shape}")
        axis = self.metadata.slice_axis if axis is None else axis
        classes = self.metadata.label_classes
        labels = self._checked_labels(labels, array.shape, classes)
        resampling = None if spacing is None else self.resampling(array.shape, spacing, axis)
        input_labels = labels
        if resampling is not None:
            array = resampling.to_model(array)
            labels = None if labels is None else resampling.to_model(labels, labels=True)
        return PreparedVolume(
            array,
            axis,
            self.source_model.fit(array),
            self.metadata.context_slices,
            cache_size,
            labels=labels,
            label_classes=classes,
            resampling=resampling,
            input_labels=input_labels,
        )

    def _checked_labels(self, labels: np.ndarray | None, shape: tuple[int, ...], classes: int) -> np.ndarray | None:
        """``labels`` as an integer array when this translator needs them; a ValueError saying what is wrong."""
        name = self.metadata.name
        if not classes:
            if labels is not None:
                raise ValueError(f"translator {name!r} is not conditioned on a label map; do not pass labels")
            return None
        if labels is None:
            raise ValueError(
                f"translator {name!r} ({self.metadata.method}) is conditioned on the input's label map "
                f"({classes} classes): pass one (medtrans translate --labels FILE; a Labels layer in the viewer)"
            )
        labels = np.asarray(labels)
        if labels.shape != tuple(shape):
            raise ValueError(f"label map shape {labels.shape} differs from the volume's {tuple(shape)}")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.array_equal(labels, np.round(labels)):
                raise ValueError(f"label map of {name!r} must hold integer labels, got {labels.dtype} values")
            labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(
                f"label values must lie in [0, {classes}) for translator {name!r}, got [{labels.min()}, {labels.max()}]"
            )
        return labels

    def translate_slice(
        self,
        prepared: PreparedVolume,
        index: int,
        *,
        precision: Precision = "fp32",
        uncertainty: Uncertainty | None = None,
        mc_samples: int = 8,
        seed: int = 0,
        steps: int | None = None,
    ) -> SliceResult:
        """Translate one slice (cached per index, precision, uncertainty and, for a stochastic
        translator, samples, seed and steps), on the input's grid when ``prepared`` was resampled.
        """
        if not 0 <= index < prepared.n_slices:
            raise IndexError(f"slice {index} out of range [0, {prepared.n_slices})")
        key: tuple = (index, precision, uncertainty)
        if self.stochastic:
            key += (mc_samples, seed, steps)
        result = prepared.cached(key)
        if result is None and self.metadata.patch is not None:
            result = self._translate_slab(prepared, index, precision, uncertainty)
        elif result is None:
            sampling = Sampling(seed, steps, (index,))
            out = self._run(
                prepared.network_input(index, index + 1), precision, uncertainty, mc_samples, True, sampling
            )
            result = SliceResult(**{name: value[0] if value is not None else None for name, value in out.items()})
            prepared.store(key, result)
        if prepared.resampling is None:
            return result
        back = prepared.resampling.to_input
        return SliceResult(
            back(result.image),
            None if result.scale is None else back(result.scale),
            None if result.uncertainty is None else back(result.uncertainty),
        )

    def auto_batch_size(self, height: int, width: int, network: nn.Module | None = None) -> int:
        """Slices per batch for ``height`` × ``width`` slices estimated from :data:`ACTIVATION_BUDGET`."""
        network = network or self.generator
        multiple, minimum = network.size_multiple, self.metadata.size if network is self.generator else 0
        pixels = _padded_size(height, multiple, minimum) * _padded_size(width, multiple, minimum)
        first = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.out_channels if first is not None else 1
        budget = ACTIVATION_BUDGET.get(self.device.type, ACCELERATOR_BUDGET)
        return max(1, min(MAX_BATCH, budget // (pixels * channels)))

    def batch_key(self, height: int, width: int, precision: str) -> BatchKey:
        """What the measured batch size of ``height`` × ``width`` slices is cached under."""
        if self.device.type == "cpu":
            device = f"cpu {cpu_features.cpu_model()}"
        elif self.device.type == "cuda":
            device = f"cuda {torch.cuda.get_device_name(self.device)}"
        else:
            device = self.device.type
        network = network_id(self.metadata.name, self.metadata.networks, self.metadata.context_slices)
        return BatchKey(network, height, width, device, torch.get_num_threads(), precision)

    def translate_volume(
        self,
        volume: Volume | np.ndarray,
        *,
        axis: int | None = None,
        batch_size: int | None = None,
        precision: Precision = "fp32",
        uncertainty: Uncertainty | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        mc_samples: int = 8,
        mask: np.ndarray | None = None,
        scale: bool = True,
        labels: np.ndarray | None = None,
        seed: int = 0,
        steps: int | None = None,
        resample: bool = True,
    ) -> TranslationResult:
        """Translate a whole volume in batches of slices (``batch_size`` None: measured, see :meth:`batch_key`).

        A :class:`~napari_medtrans.io.Volume` whose in-plane spacing differs from the training
        spacing is translated at the training spacing and the outputs resampled back to its grid
        (``resample=False``: on its own grid; a bare array always is).

        ``progress(done, total)`` is called after each batch; when ``cancel()``
        returns true the next batch is not started and :class:`Cancelled` is raised.
        With a ``mask`` (nonzero inside, the volume's shape) the output outside it is
        the target's background (:data:`BACKGROUND`: air, −1000 HU, for CT) and its
        uncertainty 0.
        ``scale=False`` skips the generator's scale head (no ``scale`` in the result;
        about 7 % faster for the demo UAPI at 256²).
        ``labels``: the volume's label map, for label-conditioned translators (:meth:`prepare`).
        ``mc_samples``: samples of ``"mc_dropout"`` and ``"samples"``; ``seed`` and ``steps``
        (None: the generator's own) drive a stochastic translator (see the module doc).
        """
        if mask is not None and np.shape(mask) != np.shape(volume.array if isinstance(volume, Volume) else volume):
            raise ValueError(f"mask shape {np.shape(mask)} differs from the volume's")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        array = volume.array if isinstance(volume, Volume) else volume
        spacing = volume.spacing if isinstance(volume, Volume) and resample else None
        if self.metadata.patch is not None:  # a 3-D translator: sliding windows (batch_size: windows per batch)
            _only_scale_3d(self.metadata.name, uncertainty)
            grid = None if spacing is None else self.resampling(np.shape(array), spacing, axis)
            found = translate_volume_3d(
                self,
                array if grid is None else grid.to_model(np.asarray(array)),
                axis=axis,
                batch_size=batch_size or 1,
                precision=precision,
                scale=scale,
                progress=progress,
                cancel=cancel,
            )
            return self._masked(_on_input_grid({**found, "uncertainty": None}, grid), mask)
        prepared = self.prepare(array, axis=axis, cache_size=0, labels=labels, spacing=spacing)
        shape = prepared.array.shape
        outputs = {
            "image": np.empty(shape, np.float32),
            "scale": np.empty(shape, np.float32) if scale and self.provides_scale else None,
            "uncertainty": np.empty(shape, np.float32) if uncertainty else None,
        }
        views = {k: np.moveaxis(v, prepared.axis, 0) for k, v in outputs.items() if v is not None}
        total = prepared.n_slices
        key = self.batch_key(*prepared.slice_shape, precision)
        batches = MeasuredBatches(total, batch_size or BATCH_SIZES.get(key), partial(BATCH_SIZES.put, key))
        for start, stop in batches:
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled after {start} of {total} slices")
            sampling = Sampling(seed, steps, tuple(range(start, stop)))
            batch = self._run(prepared.network_input(start, stop), precision, uncertainty, mc_samples, scale, sampling)
            for name, view in views.items():
                view[start:stop] = batch[name]
            if progress is not None:
                progress(stop, total)
        return self._masked(_on_input_grid(outputs, prepared.resampling), mask)

    def _masked(self, outputs: dict[str, np.ndarray | None], mask: np.ndarray | None) -> TranslationResult:
        """The result, with the target's background (and uncertainty 0) outside ``mask`` where one is given."""
        if mask is not None:
            outside = ~np.asarray(mask, dtype=bool)
            outputs["image"][outside] = BACKGROUND.get(self.metadata.target, self.output_mapping.lo)  # type: ignore[index]
            for name in ("scale", "uncertainty"):
                if outputs[name] is not None:
                    outputs[name][outside] = 0.0  # type: ignore[index]
        return TranslationResult(**outputs)  # type: ignore[arg-type]

    def _translate_slab(
        self, prepared: PreparedVolume, index: int, precision: Precision, uncertainty: Uncertainty | None
    ) -> SliceResult:
        """Slice ``index`` of a 3-D translator from the slab around it; the slab's other slices are cached too."""
        _only_scale_3d(self.metadata.name, uncertainty)
        start, slab = translate_slab(self, prepared, index, precision=precision)
        results = [
            SliceResult(image, None if slab["scale"] is None else slab["scale"][i])
            for i, image in enumerate(slab["image"])  # type: ignore[arg-type]
        ]
        for i, result in enumerate(results):
            prepared.store((start + i, precision, uncertainty), result)
        return results[index - start]

    def register(
        self,
        moving: np.ndarray,
        fixed: np.ndarray,
        *,
        spacing: tuple[float, ...],
        axis: int | None = None,
        batch_size: int | None = None,
    ) -> RegistrationResult:
        """Register ``moving`` (e.g. the translation) onto ``fixed`` (the target), both in target units.

        ``spacing`` is in SimpleITK order: (x, y, z) for a volume, (x, y) for a
        2-D image. Both images are normalised with the target intensity model
        (a percentile model is fitted on ``fixed``).
        """
        if self.registration is None:
            raise ValueError(f"translator {self.metadata.name!r} has no registration network")
        moving, fixed = np.asarray(moving), np.asarray(fixed)
        if moving.shape != fixed.shape or moving.ndim not in (2, 3) or len(spacing) != moving.ndim:
            raise ValueError(
                f"register needs two 2-D or 3-D images of one shape and a spacing per axis, got "
                f"{moving.shape}, {fixed.shape}, spacing {tuple(spacing)}"
            )
        flat = moving.ndim == 2
        axis = 0 if flat else self.metadata.slice_axis if axis is None else axis
        volumes = [a[None] if flat else a for a in (moving, fixed)]
        spacing_zyx = (1.0, *spacing[::-1]) if flat else tuple(spacing[::-1])
        row_axis, col_axis = (a for a in range(3) if a != axis)
        to_mm = torch.tensor([spacing_zyx[row_axis], spacing_zyx[col_axis]], dtype=torch.float32).view(1, 2, 1, 1)
        mapping = self.target_model.fit(fixed)
        preps = [PreparedVolume(v, axis, mapping, 1, 0) for v in volumes]
        batch_size = batch_size or self.auto_batch_size(*preps[0].slice_shape, self.registration)
        warped = np.empty(volumes[0].shape, np.float32)
        warped_view = np.moveaxis(warped, axis, 0)
        fields = []
        for start, stop in _batches(preps[0].n_slices, batch_size):
            m, f = (p.network_input(start, stop).to(self.device) for p in preps)
            m_pad, crop = _pad(m, self.registration.size_multiple)
            f_pad, _ = _pad(f, self.registration.size_multiple)
            with torch.inference_mode():
                field = self.registration(m_pad, f_pad).float()
                moved = warp(m_pad, field)
            field = field[..., crop[0], crop[1]].cpu()
            fields.append((field * to_mm).numpy())
            warped_view[start:stop] = mapping.from_network(moved[:, 0, crop[0], crop[1]].cpu().numpy())
        field_mm = np.concatenate(fields)
        return RegistrationResult(field_mm[0] if flat else field_mm, warped[0] if flat else warped, axis)

    # ------------------------------------------------------------------ internals
    def _run(
        self,
        x: torch.Tensor,
        precision: str,
        uncertainty: str | None,
        mc_samples: int = 8,
        scale: bool = True,
        sampling: Sampling | None = None,
    ) -> dict[str, np.ndarray | None]:
        """Translate a (B, k, H, W) batch → image/scale/uncertainty (B, H, W) in target units.

        ``scale``: run the generator's scale head (when it has one); ``sampling``: the noise
        plan of a stochastic generator (default: seed 0, the batch's rows as slice indices).
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if uncertainty not in (None, *UNCERTAINTIES):
            raise ValueError(f"uncertainty must be None or one of {', '.join(UNCERTAINTIES)}, got {uncertainty!r}")
        if uncertainty == "samples" and not self.stochastic:
            raise ValueError(f"translator {self.metadata.name!r} is deterministic; use uncertainty='tta'")
        sampling = sampling or Sampling(0, None, tuple(range(x.shape[0])))
        x, crop = _pad(
            x.to(self.device),
            self.generator.size_multiple,
            minimum=self.metadata.size,
            image_channels=self.metadata.context_slices,
        )
        x = x.contiguous()
        # A uniform slice (all air after clipping) has features made of rounding noise that instance
        # norm amplifies; bf16 rounds differently from the fp32 the model was trained in, and its
        # output there is garbage (1935 HU off on the demo pix2pix). Such slices run in fp32.
        flat = x.flatten(1)
        uniform = None if precision == "fp32" else flat.amax(1) == flat.amin(1)
        if uniform is None or not uniform.any():
            images, scales = self._predict(x, precision, uncertainty, mc_samples, scale, sampling)
        else:
            rest, picked = sampling.subset(~uniform), sampling.subset(uniform)
            images, scales = self._predict(x[~uniform], precision, uncertainty, mc_samples, scale, rest)
            exact_images, exact_scales = self._predict(x[uniform], "fp32", uncertainty, mc_samples, scale, picked)
            images = _merge(images, exact_images, uniform)
            scales = None if scales is None else _merge(scales, exact_scales, uniform)
        images = images[:, :, 0, crop[0], crop[1]]
        out: dict[str, np.ndarray | None] = {"image": None, "scale": None, "uncertainty": None}
        out["image"] = self.output_mapping.from_network(_sample_mean(images).cpu().numpy())
        if uncertainty:
            std = images.std(0, correction=0)
            out["uncertainty"] = self.output_mapping.scale_from_network(std.cpu().numpy())
        if scales is not None:
            scales = scales[:, :, 0, crop[0], crop[1]]
            out["scale"] = self.output_mapping.scale_from_network(_sample_mean(scales).cpu().numpy())
        return out

    def _predict(
        self,
        x: torch.Tensor,
        precision: str,
        uncertainty: str | None,
        mc_samples: int,
        scale: bool,
        sampling: Sampling,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images, scales) stacked over TTA/MC samples: (S, B, 1, H, W) each (scales None without a head)."""
        with torch.inference_mode(), self._autocast(precision), self._sampling_steps(sampling.steps):
            samples = list(self._samples(x, uncertainty, mc_samples, scale and self.provides_scale, sampling))
        images = _stack([image for image, _ in samples])
        scales = _stack([s for _, s in samples]) if samples[0][1] is not None else None
        return images, scales

    def _samples(
        self, x: torch.Tensor, uncertainty: str | None, mc_samples: int, scale: bool, sampling: Sampling
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(image, scale) predictions in float32, one per TTA flip / MC or stochastic sample (scale None
        unless ``scale``); sample k of a stochastic generator draws the noise of :func:`sample_noise`.
        """
        if uncertainty == "tta":
            for k, dims in enumerate(FLIPS):
                image, sigma = self._forward(self.generator, x.flip(dims) if dims else x, scale, sampling, k)
                yield (image.flip(dims), sigma.flip(dims) if sigma is not None else None) if dims else (image, sigma)
        elif uncertainty in ("mc_dropout", "samples"):
            generator = self._dropout_generator() if uncertainty == "mc_dropout" else self.generator
            for k in range(mc_samples):
                yield self._forward(generator, x, scale, sampling, k)
        else:
            yield self._forward(self.generator, x, scale, sampling, 0)

    def _forward(
        self, net: nn.Module, x: torch.Tensor, scale: bool, sampling: Sampling, sample: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if getattr(net, "stochastic", False):  # one call per slice: its noise depends on (seed, sample, slice)
            rows = [
                net(x[row : row + 1], noise=sample_noise(sampling.seed, sample, index, x.device))
                for row, index in enumerate(sampling.indices)
            ]
            return torch.cat(rows).float(), None
        if scale:
            image, sigma = net.forward_with_scale(x)
            return image.float(), sigma.float()
        return net(x).float(), None

    def _dropout_generator(self) -> nn.Module:
        """A copy of the generator with only its dropout layers in training mode."""
        with self._mc_lock:
            if self._mc_generator is None:
                if not self.supports_mc_dropout:
                    raise ValueError(f"translator {self.metadata.name!r} has no dropout layers; use uncertainty='tta'")
                generator = copy.deepcopy(self.generator)
                for module in generator.modules():
                    if isinstance(module, nn.modules.dropout._DropoutNd):
                        module.train()
                self._mc_generator = generator
            return self._mc_generator

    @contextlib.contextmanager
    def _sampling_steps(self, steps: int | None) -> Iterator[None]:
        """Run a stochastic generator with ``steps`` sampling steps (None: unchanged), restored after."""
        if steps is None or not self.stochastic:
            yield
            return
        with self._steps_lock:
            before = self.generator.steps
            self.generator.steps = steps
            try:
                yield
            finally:
                self.generator.steps = before

    def _autocast(self, precision: str) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def _on_input_grid(
    outputs: dict[str, np.ndarray | None], resampling: InPlaneResampling | None
) -> dict[str, np.ndarray | None]:
    """Output volumes resampled back to the input's grid (as they are without a ``resampling``)."""
    if resampling is None:
        return outputs
    return {name: None if array is None else resampling.to_input(array) for name, array in outputs.items()}


def _only_scale_3d(name: str, uncertainty: str | None) -> None:
    """3-D translators give their σ map but no test-time-flip or MC-dropout uncertainty."""
    if uncertainty is not None:
        raise ValueError(
            f"translator {name!r} is 3-D (sliding windows): uncertainty {uncertainty!r} is not available; "
            "its σ map is (when it has a σ head)"
        )


def _stack(samples: list[torch.Tensor]) -> torch.Tensor:
    """(S, …) from S samples; a single one is a view, not a copy."""
    return samples[0].unsqueeze(0) if len(samples) == 1 else torch.stack(samples)


def _sample_mean(samples: torch.Tensor) -> torch.Tensor:
    """The mean over dim 0; a single sample as it is (the same values, no pass over them)."""
    return samples[0] if len(samples) == 1 else samples.mean(0)


def _merge(rest: torch.Tensor, picked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(S, B, …) from the samples where ``mask`` (B,) is false (``rest``) and true (``picked``)."""
    merged = rest.new_empty((rest.shape[0], mask.numel(), *rest.shape[2:]))
    merged[:, ~mask], merged[:, mask] = rest, picked
    return merged


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)


def load_translator(name_or_path: str | os.PathLike[str], *, device: str | torch.device = "auto") -> Translator:
    """Load a translator by registry name or path onto ``device`` (auto|cpu|cuda|mps)."""
    resolved = resolve_device(device)
    modules, metadata = load_modules(resolve(name_or_path), device=resolved)
    return Translator(modules, metadata, resolved)
