"""Sliding-window inference of a 3-D network over a volume, blended with Gaussian weights.

nnU-Net's scheme (Isensee et al., Nature Methods 2021): windows of the patch
size overlap by ``overlap`` (0.5) of the patch along every axis, the first
and last windows touching the volume's borders and the steps in between
spread evenly (:func:`window_starts`); every prediction is weighted by a
Gaussian centred on its patch with σ = 1/8 of the patch side
(:func:`gaussian_importance`), so voxels near a patch border, where the
network sees little context, count least; the sum is divided by the summed
weights. A volume smaller than the patch along an axis is padded (edge
values repeated) and cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_medtrans.intensity import IntensityMapping

SIGMA_SCALE = 1 / 8
"""σ of the importance Gaussian as a fraction of the patch side (nnU-Net)."""
MIN_WEIGHT = 1e-3
"""Floor of the importance weights (relative to the centre's 1), so corner voxels never divide by ~0."""


def window_starts(size: int, patch: int, overlap: float = 0.5) -> list[int]:
    """Start indices of the windows of side ``patch`` along an axis of ``size`` (≥ ``patch``).

    The windows step by at most ``patch · (1 − overlap)``; the first starts at 0,
    the last ends at ``size``; steps in between are equal up to rounding.
    """
    if patch < 1 or size < patch:
        raise ValueError(f"need 1 ≤ patch ≤ size, got patch {patch} and size {size}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    if size == patch:
        return [0]
    count = math.ceil((size - patch) / (patch * (1 - overlap))) + 1
    step = (size - patch) / (count - 1)
    return [int(round(step * i)) for i in range(count)]


def gaussian_importance(patch: Sequence[int]) -> np.ndarray:
    """Weights of a patch (float32, maximum 1): a Gaussian centred on it, σ = patch side / 8, floored at 1e-3."""
    weights = np.ones((), np.float64)
    for side in patch:
        x = np.arange(side) - (side - 1) / 2
        weights = np.multiply.outer(weights, np.exp(-(x**2) / (2 * (side * SIGMA_SCALE) ** 2)))
    weights /= weights.max()
    return np.maximum(weights, MIN_WEIGHT).astype(np.float32)


def windows(shape: Sequence[int], patch: Sequence[int], overlap: float = 0.5) -> Iterator[tuple[slice, ...]]:
    """The (z, y, x) slices of every window over a volume of ``shape``."""
    starts = [window_starts(n, p, overlap) for n, p in zip(shape, patch)]
    for corner in np.ndindex(*(len(s) for s in starts)):
        yield tuple(slice(s[i], s[i] + p) for s, i, p in zip(starts, corner, patch))


def sliding_window(
    volume: torch.Tensor,
    predict: Callable[[torch.Tensor], torch.Tensor],
    patch: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 1,
    *,
    pad_value: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Predict a (C, D, H, W) ``volume`` window by window and blend: returns (O, D, H, W) float32.

    ``predict`` maps a (B, C, *patch) batch to (B, O, *patch). Where the volume is
    smaller than the patch it is padded with ``pad_value`` (None: edge values
    repeated). ``progress(done, total)`` is called after each batch of windows.
    """
    if volume.ndim != 4 or len(patch) != 3:
        raise ValueError(f"expected a (C, D, H, W) volume and a 3-D patch, got {tuple(volume.shape)} and {patch}")
    shape = volume.shape[1:]
    pad = [max(p - n, 0) for n, p in zip(shape, patch)]
    if any(pad):  # F.pad takes the last axis first: (x before, x after, y …, z …)
        widths = [w for p in reversed(pad) for w in (p // 2, p - p // 2)]
        if pad_value is None:
            volume = F.pad(volume[None], widths, mode="replicate")[0]
        else:
            volume = F.pad(volume, widths, value=pad_value)
    padded = volume.shape[1:]
    weight = torch.from_numpy(gaussian_importance(patch)).to(volume.device)
    total = torch.zeros(padded, dtype=torch.float32, device=volume.device)
    output: torch.Tensor | None = None
    boxes = list(windows(padded, patch, overlap))
    for first in range(0, len(boxes), batch_size):
        batch = boxes[first : first + batch_size]
        predictions = predict(torch.stack([volume[(slice(None),) + box] for box in batch])).float()
        if output is None:
            output = torch.zeros((predictions.shape[1], *padded), dtype=torch.float32, device=volume.device)
        for box, prediction in zip(batch, predictions):
            output[(slice(None),) + box] += prediction * weight
            total[box] += weight
        if progress is not None:
            progress(first + len(batch), len(boxes))
    assert output is not None
    output /= total
    crop = tuple(slice(p // 2, p // 2 + n) for p, n in zip(pad, shape))
    return output[(slice(None),) + crop]


def translate_volume_3d(
    translator,
    array: np.ndarray,
    patch: Sequence[int] | None = None,
    *,
    axis: int | None = None,
    overlap: float = 0.5,
    batch_size: int = 1,
    precision: str = "fp32",
    scale: bool = True,
    mapping: IntensityMapping | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, np.ndarray | None]:
    """Translate a (z, y, x) ``array`` with a 3-D generator by sliding windows.

    ``translator`` is a :class:`napari_medtrans.inference.Translator` whose
    generator takes (B, 1, *patch) patches (e.g. ``res_unet`` with ``dims=3``);
    ``patch`` defaults to its metadata's, ``axis`` (the array axis that is the
    patch's first, the slice axis) to its ``slice_axis``. The source intensity
    model is fitted on the whole array unless a fitted ``mapping`` is given (a
    slab of a larger volume). A volume smaller than the patch is padded with
    −1 (network air), as training pads its patches (:mod:`training.patches`).
    ``precision`` is an autocast precision of :data:`napari_medtrans.inference.PRECISIONS`;
    ``cancel()`` is checked before each window and raises
    :class:`napari_medtrans.inference.Cancelled`. Returns ``image`` (target
    units, the array's shape) and ``scale`` (None without a σ head or with
    ``scale=False``).
    """
    from napari_medtrans.inference import PRECISIONS, Cancelled  # inference imports this module

    if getattr(translator.generator, "dims", 2) != 3:
        raise ValueError(f"translator {translator.metadata.name!r} has a 2-D generator; translate it slice-wise")
    axis = translator.metadata.slice_axis if axis is None else axis
    patch = tuple(patch if patch is not None else translator.metadata.patch)
    array = np.asarray(array)
    mapping = mapping or translator.prepare(array, axis=axis, cache_size=0).mapping
    source = torch.from_numpy(mapping.to_network(np.moveaxis(array, axis, 0)))[None].to(translator.device)
    generator, has_scale = translator.generator, scale and translator.provides_scale
    dtype = PRECISIONS[precision]

    def predict(x: torch.Tensor) -> torch.Tensor:
        if cancel is not None and cancel():
            raise Cancelled("cancelled between sliding windows")
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
            return torch.cat(generator.forward_with_scale(x), 1) if has_scale else generator(x)

    blended = sliding_window(source, predict, patch, overlap, batch_size, pad_value=-1.0, progress=progress)
    out = np.moveaxis(blended.cpu().numpy(), 1, axis + 1)
    target = translator.output_mapping
    return {"image": target.from_network(out[0]), "scale": target.scale_from_network(out[1]) if has_scale else None}


def translate_slab(
    translator, prepared, index: int, *, precision: str = "fp32"
) -> tuple[int, dict[str, np.ndarray | None]]:
    """Translate the slab of a 3-D translator's patch thickness around slice ``index`` of ``prepared``.

    For on-the-fly viewing: the slab (as thick as the patch's slices along
    ``prepared.axis``, the slice axis, clamped to the volume) is translated by sliding windows
    in its plane with the volume's fitted intensity mapping. Returns the slab's
    first slice index and its ``image``/``scale`` slices (n, rows, cols) in
    target units. Slices near the slab's faces differ slightly from a
    whole-volume translation, which blends overlapping windows across them.
    """
    thickness = translator.metadata.patch[0]
    start = int(np.clip(index - thickness // 2, 0, max(prepared.n_slices - thickness, 0)))
    stop = min(start + thickness, prepared.n_slices)
    slab = np.take(prepared.array, np.arange(start, stop), axis=prepared.axis)
    out = translate_volume_3d(translator, slab, axis=prepared.axis, mapping=prepared.mapping, precision=precision)
    return start, {k: None if v is None else np.moveaxis(v, prepared.axis, 0) for k, v in out.items()}
