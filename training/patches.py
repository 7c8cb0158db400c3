"""3-D training patches for methods with a 3-D network (``regression`` with ``model.dims=3``).

nnU-Net's patch sampling (Isensee et al., Nature Methods 2021): a batch item
is a patch of a fixed (slices, rows, cols) size from a subject drawn
uniformly; a third of the patches (:data:`FOREGROUND_OVERSAMPLE`) are forced
to be centred on a foreground voxel (here: the body, source value above
:data:`training.data.FOREGROUND_LEVEL`), the others lie anywhere in the
volume. Where a volume is smaller than the patch along an axis, the patch is
centred and padded with −1 (network air), as the 2-D crops are; inference
pads the same way (:func:`napari_medtrans.sliding_window.translate_volume_3d`).
Flips are left–right (the last axis), as for slices. Validation uses fixed
patches centred in-plane at evenly spaced foreground slices of the
validation subjects.

Arrays are (slices, rows, cols) with the slice axis first, as
:class:`training.data.Subject` holds them; batches are (B, 1, D, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from training.augment import description as augmentation_description
from training.config import ConfigError, DataConfig
from training.data import FOREGROUND_LEVEL, Cohort, Crop

FOREGROUND_OVERSAMPLE = 1 / 3
"""Fraction of patches centred on a foreground voxel (nnU-Net's ``oversample_foreground_percent`` 0.33)."""
FOREGROUND_SAMPLES = 10_000
"""Foreground voxels remembered per subject as patch centres (nnU-Net keeps 10 000 per class)."""
MAX_FEATURES_3D = 320
"""Widest stage of a 3-D residual U-Net (nnU-Net's 3-D configurations; 512 in 2-D)."""

Patch = tuple[int, int, int]


def network_3d(generator: str) -> dict[str, Any]:
    """Spec entries that make the ``generator`` architecture 3-D (only ``res_unet`` has a 3-D form)."""
    if generator != "res_unet":
        raise ConfigError(f"model.dims=3 needs model.generator=res_unet (the only 3-D generator), got {generator!r}")
    return {"dims": 3, "max_features": MAX_FEATURES_3D}


def check_patch(patch: Patch, generator: nn.Module, cfg: DataConfig) -> None:
    """Refuse a patch the 3-D ``generator`` cannot take, or data options 3-D training cannot honour."""
    multiple = int(getattr(generator, "size_multiple", 1))
    if any(side < 1 or side % multiple for side in patch):
        raise ConfigError(
            f"3-D patch {'×'.join(map(str, patch))} (model.patch_depth × data.size²): every side must be a "
            f"positive multiple of {multiple} (2 ** model.depth)"
        )
    if cfg.context_slices != 1:
        raise ConfigError("a 3-D network sees its neighbouring slices itself: use data.context_slices=1")


def window_3d(volume: np.ndarray, patch: Sequence[int], corner: Sequence[int], fill: float = -1.0) -> np.ndarray:
    """The ``patch``-sized box of ``volume`` at ``corner`` (may lie partly outside: padded with ``fill``), float32."""
    out = np.full(tuple(patch), fill, np.float32)
    src, dst = [], []
    for start, side, n in zip(corner, patch, volume.shape):
        lo, hi = max(start, 0), min(start + side, n)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - start, lo - start + max(hi - lo, 0)))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def corner_range(n: int, side: int) -> tuple[int, int]:
    """Inclusive range of patch starts along an axis of ``n`` voxels (one centred start when ``side`` > ``n``)."""
    return (0, n - side) if n >= side else ((n - side) // 2, (n - side) // 2)


def _foreground(source: np.ndarray) -> np.ndarray:
    """Up to :data:`FOREGROUND_SAMPLES` foreground voxel indices (K, 3) of ``source``, the same on every run."""
    voxels = np.argwhere(source > FOREGROUND_LEVEL)
    if len(voxels) > FOREGROUND_SAMPLES:
        voxels = voxels[np.random.default_rng(0).choice(len(voxels), FOREGROUND_SAMPLES, replace=False)]
    return voxels


class PatchSampler:
    """Draws 3-D training batches; its RNG state is part of the checkpoints (as :class:`~training.data.SliceSampler`).

    Args:
        cohort: the data (aligned pairs: a patch's target shows its source's anatomy).
        cfg: data options (flips).
        patch: (slices, rows, cols) of a patch.
        seed: RNG seed (the loop adds the rank).
    """

    def __init__(self, cohort: Cohort, cfg: DataConfig, patch: Patch, seed: Any) -> None:
        if not cohort.aligned:
            raise ConfigError("3-D patches need paired (or misaligned) data: a patch's target must match its source")
        if augmentation_description(cfg):
            raise ConfigError("data.augment_* options apply to 2-D slices; 3-D patches have none")
        self.cfg = cfg
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.subjects = [(s.source, s.target) for s in cohort.train if s.source is not None and s.target is not None]
        if not self.subjects:
            raise ConfigError(
                "no training subjects left after the validation split; add data or lower data.val_fraction"
            )
        self.foreground = [_foreground(source) for source, _ in self.subjects]
        self.source_index = [(i, z) for i, (source, _) in enumerate(self.subjects) for z in range(source.shape[0])]

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """A batch: ``source`` and ``target`` (B, 1, D, H, W) float32."""
        boxes: dict[str, list[np.ndarray]] = {"source": [], "target": []}
        for _ in range(batch_size):
            i = int(self.rng.integers(len(self.subjects)))
            corner = self._corner(self.subjects[i][0].shape, self.foreground[i])
            flip = self.cfg.flip and self.rng.random() < 0.5
            for out, volume in zip(boxes.values(), self.subjects[i]):
                box = window_3d(volume, self.patch, corner)
                out.append(np.ascontiguousarray(box[..., ::-1] if flip else box)[None])
        return {name: np.stack(found) for name, found in boxes.items()}

    def _corner(self, shape: tuple[int, ...], foreground: np.ndarray) -> list[int]:
        ranges = [corner_range(n, side) for n, side in zip(shape, self.patch)]
        if len(foreground) and self.rng.random() < FOREGROUND_OVERSAMPLE:
            centre = foreground[self.rng.integers(len(foreground))]
            return [int(np.clip(c - side // 2, lo, hi)) for c, side, (lo, hi) in zip(centre, self.patch, ranges)]
        return [int(self.rng.integers(lo, hi + 1)) for lo, hi in ranges]

    def state(self) -> dict[str, Any]:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


def patch_crop(patch: Patch) -> Crop:
    """The 3-D validation crop: a (1, *patch) box centred in-plane, its slice range around ``z``."""

    def crop(source: np.ndarray, volume: np.ndarray, z: int, channels: int) -> np.ndarray:
        first = int(np.clip(z - patch[0] // 2, *corner_range(source.shape[0], patch[0])))
        corner = [first, *((n - side) // 2 for n, side in zip(source.shape[1:], patch[1:]))]
        return window_3d(volume, patch, corner)[None]

    return crop
