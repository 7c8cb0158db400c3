"""Training data: volumes → normalised slices → batches.

Volumes come from two folders (any format :func:`napari_medtrans.io.read_volume`
reads; ``paired`` matches files by name) or from the in-memory phantom cohort.
Each volume is normalised with the intensity model of its modality exactly as
inference does (:mod:`napari_medtrans.intensity`), the slice axis is moved to
the front, and only slices whose source foreground covers at least
``min_foreground`` of the slice are sampled. Training crops are random
``size``×``size`` windows (padded with −1 where the slice is smaller) with
optional left–right flips and, where ``data.augment_*`` asks, the source-side
augmentations of :mod:`training.augment`; validation uses centred windows,
never augmented. Validation subjects are split off by subject, never by slice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_medtrans.intensity import IntensityModel, default_for, mr_median
from training.config import ConfigError, DataConfig

if TYPE_CHECKING:
    from training.augment import View

log = logging.getLogger(__name__)

#: A voxel counts as foreground when its normalised source value exceeds this.
FOREGROUND_LEVEL = -0.9


@dataclass
class Subject:
    """One subject's normalised volumes, slice axis first (network units).

    ``target`` is what training sees (possibly misaligned or another subject's);
    ``truth`` is the aligned ground truth used for validation metrics, if known;
    ``source_labels`` / ``target_labels`` are label maps on the grids of ``source`` /
    ``target`` (int64, slice axis first), where the data has them (the phantom).
    """

    name: str
    source: np.ndarray | None
    target: np.ndarray | None
    truth: np.ndarray | None = None
    source_labels: np.ndarray | None = None
    target_labels: np.ndarray | None = None


@dataclass
class Cohort:
    """Train/validation subjects plus the intensity models to store in the translator."""

    train: list[Subject]
    val: list[Subject]
    source_intensity: IntensityModel
    target_intensity: IntensityModel
    aligned: bool  # batches pair a source with the same anatomy's target
    description: dict[str, Any]


def _to_slices(array: np.ndarray, axis: int) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(np.asarray(array, dtype=np.float32), axis, 0))


def _to_labels(labels: np.ndarray, axis: int) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(np.asarray(labels, dtype=np.int64), axis, 0))


def _split(names: list[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Split subject names into (train, val) deterministically."""
    order = sorted(names)
    np.random.default_rng(seed).shuffle(order)
    n_val = 0 if len(order) < 2 or fraction <= 0 else max(1, int(round(fraction * len(order))))
    return set(order[n_val:]), set(order[:n_val])


# --- sources of volumes ---------------------------------------------------------
def load_cohort(cfg: DataConfig, seed: int = 0) -> Cohort:
    """Build the cohort described by ``cfg`` (phantom or folders)."""
    if cfg.phantom is not None:
        if cfg.source or cfg.target:
            raise ConfigError("give either a phantom regime or source/target folders, not both")
        return _phantom_cohort(cfg, seed)
    if not cfg.source or not cfg.target:
        raise ConfigError("training data needs --source and --target folders, or --phantom REGIME")
    return _folder_cohort(cfg, seed)


def _normalise(arrays: dict[str, np.ndarray], model: IntensityModel, axis: int) -> dict[str, np.ndarray]:
    return {name: _to_slices(model.fit(a).to_network(a), axis) for name, a in arrays.items()}


def _source_model(cfg: DataConfig) -> IntensityModel:
    """The source's intensity model: by modality, or ``data.source_intensity=median`` for an MR source."""
    if cfg.source_intensity == "median" and cfg.source_modality.upper() != "CT":
        return mr_median()
    return default_for(cfg.source_modality)


def _target_model(modality: str, arrays: list[np.ndarray]) -> IntensityModel:
    model = default_for(modality)
    return model.with_reference(arrays) if model.kind != "window" else model


def _phantom_cohort(cfg: DataConfig, seed: int) -> Cohort:
    """The in-memory phantom cohort (:func:`napari_medtrans.phantom.generate_cohort`).

    Validation uses each source subject's own rendering of the target modality
    as ground truth (the phantom knows it, even in the unpaired regime).
    """
    from napari_medtrans.phantom import generate_cohort

    src_key, tgt_key = cfg.source_modality.lower(), cfg.target_modality.lower()
    for key in (src_key, tgt_key):
        if key not in ("t1", "t2", "ct"):
            raise ConfigError(f"the phantom renders T1, T2 and CT, not {key!r}")
    shape = (cfg.phantom_depth, cfg.size, cfg.size)
    pairs = generate_cohort(
        cfg.phantom_subjects, cfg.phantom, seed=cfg.phantom_seed, level=cfg.phantom_level, shape=shape
    )
    names = [p.source.name for p in pairs]
    src_raw = {p.source.name: getattr(p.source, src_key) for p in pairs}
    tgt_raw = {p.source.name: getattr(p.target, tgt_key) for p in pairs}
    truth_raw = {p.source.name: getattr(p.aligned_target or p.source, tgt_key) for p in pairs}
    src_model = _source_model(cfg)
    tgt_model = _target_model(cfg.target_modality, list(tgt_raw.values()))
    src = _normalise(src_raw, src_model, cfg.slice_axis)
    tgt = _normalise(tgt_raw, default_for(cfg.target_modality), cfg.slice_axis)
    truth = _normalise(truth_raw, default_for(cfg.target_modality), cfg.slice_axis)
    labels = {
        p.source.name: (_to_labels(p.source.labels, cfg.slice_axis), _to_labels(p.target.labels, cfg.slice_axis))
        for p in pairs
    }
    train_names, val_names = _split(names, cfg.val_fraction, seed)
    make = lambda name: Subject(name, src[name], tgt[name], truth[name], *labels[name])  # noqa: E731
    return Cohort(
        train=[make(n) for n in names if n in train_names],
        val=[make(n) for n in names if n in val_names],
        source_intensity=src_model,
        target_intensity=tgt_model,
        aligned=cfg.phantom != "unpaired",
        description={
            "phantom": cfg.phantom,
            "subjects": cfg.phantom_subjects,
            "seed": cfg.phantom_seed,
            "level": cfg.phantom_level,
            "shape": list(shape),
        },
    )


def find_volumes(folder: Path) -> dict[str, Path]:
    """Volumes of a training data folder by name (see io.volume_files); ConfigError if none."""
    from napari_medtrans.io import volume_files

    if not folder.is_dir():
        raise ConfigError(f"data folder {folder} does not exist")
    found = volume_files(folder)
    if not found:
        raise ConfigError(f"no volumes found in {folder}")
    return found


def _folder_cohort(cfg: DataConfig, seed: int) -> Cohort:
    from napari_medtrans.io import read_volume

    src_files = find_volumes(Path(cfg.source))
    tgt_files = find_volumes(Path(cfg.target))
    if cfg.paired:
        missing = sorted(set(src_files) ^ set(tgt_files))
        if missing:
            raise ConfigError(f"--paired: these names are not in both folders: {', '.join(missing[:10])}")
    src_raw = {k: read_volume(p, modality=cfg.source_modality).array for k, p in src_files.items()}
    tgt_raw = {k: read_volume(p, modality=cfg.target_modality).array for k, p in tgt_files.items()}
    if cfg.paired:
        for name in src_raw:
            if src_raw[name].shape != tgt_raw[name].shape:
                raise ConfigError(
                    f"--paired: {name} has shape {src_raw[name].shape} in the source folder "
                    f"but {tgt_raw[name].shape} in the target folder"
                )
    src_model = _source_model(cfg)
    tgt_model = _target_model(cfg.target_modality, list(tgt_raw.values()))
    src = _normalise(src_raw, src_model, cfg.slice_axis)
    tgt = _normalise(tgt_raw, default_for(cfg.target_modality), cfg.slice_axis)
    if cfg.paired:
        train_names, val_names = _split(list(src), cfg.val_fraction, seed)
        train = [Subject(n, src[n], tgt[n], tgt[n]) for n in sorted(train_names)]
        val = [Subject(n, src[n], tgt[n], tgt[n]) for n in sorted(val_names)]
    else:
        s_train, s_val = _split(list(src), cfg.val_fraction, seed)
        t_train, _ = _split(list(tgt), cfg.val_fraction, seed)
        train = [Subject(n, src[n], None) for n in sorted(s_train)]
        train += [Subject(n, None, tgt[n]) for n in sorted(t_train)]
        val = [Subject(n, src[n], None) for n in sorted(s_val)]
    return Cohort(
        train,
        val,
        src_model,
        tgt_model,
        aligned=cfg.paired,
        description={
            "source": str(cfg.source),
            "target": str(cfg.target),
            "paired": cfg.paired,
            "source_subjects": len(src),
            "target_subjects": len(tgt),
        },
    )


# --- slices and batches ---------------------------------------------------------
def foreground_slices(volume: np.ndarray, min_fraction: float) -> np.ndarray:
    """Indices of slices whose foreground (value > −0.9) covers ≥ ``min_fraction``."""
    frac = (volume > FOREGROUND_LEVEL).mean(axis=(1, 2))
    keep = np.flatnonzero(frac >= min_fraction)
    return keep if keep.size else np.arange(volume.shape[0])


def check_context(cfg: DataConfig) -> None:
    """Refuse context options that no sampler honours: an even or zero ``context_slices``, a step between context
    slices below one slice, or steps other than ``(1,)`` without 2.5-D input (a 3-D network takes none).
    """
    if cfg.context_slices < 1 or cfg.context_slices % 2 == 0:
        raise ConfigError(f"data.context_slices must be odd and ≥ 1, got {cfg.context_slices}")
    strides = tuple(cfg.context_strides)
    if not strides or min(strides) < 1:
        raise ConfigError(f"data.context_strides are steps of at least one slice, got {list(strides)}")
    if strides != (1,) and cfg.context_slices == 1:
        raise ConfigError("data.context_strides spaces the context slices: it needs data.context_slices > 1")


def context_stack(volume: np.ndarray, index: int, k: int, stride: int = 1) -> np.ndarray:
    """The ``k`` slices centred on ``index``, ``stride`` slices apart (clamped at the ends), shape (k, H, W)."""
    half = k // 2
    ids = np.clip(index + stride * np.arange(-half, half + 1), 0, volume.shape[0] - 1)
    return volume[ids]


def window(image: np.ndarray, size: int, top: int, left: int) -> np.ndarray:
    """A (C, size, size) window of (C, H, W) ``image`` at (top, left), padded outside with air:
    -1 in float32 for an image, label 0 in its own dtype for an integer label map.
    """
    c, h, w = image.shape
    labels = np.issubdtype(image.dtype, np.integer)
    out = np.full((c, size, size), 0 if labels else -1.0, dtype=image.dtype if labels else np.float32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, h), min(left + size, w)
    if r1 > r0 and c1 > c0:
        out[:, r0 - top : r1 - top, c0 - left : c1 - left] = image[:, r0:r1, c0:c1]
    return out


def centre_offsets(h: int, w: int, size: int) -> tuple[int, int]:
    return (h - size) // 2, (w - size) // 2


class SliceSampler:
    """Draws training batches; its RNG state is part of the checkpoints.

    Args:
        cohort: the data.
        cfg: data options (size, context slices, flips, foreground threshold).
        seed: RNG seed (the loop adds the rank, so ranks draw different slices).
    """

    def __init__(self, cohort: Cohort, cfg: DataConfig, seed: int) -> None:
        self.cfg = cfg
        self.aligned = cohort.aligned
        self.rng = np.random.default_rng(seed)
        self.sources = [s for s in cohort.train if s.source is not None]
        self.targets = [s for s in cohort.train if s.target is not None]
        if not self.sources or not self.targets:
            raise ConfigError(
                "no training subjects left after the validation split; add data or lower data.val_fraction"
            )
        self.labelled = all(s.source_labels is not None for s in self.sources) and all(
            s.target_labels is not None for s in self.targets
        )
        self.source_index = [
            (i, z) for i, s in enumerate(self.sources) for z in foreground_slices(s.source, cfg.min_foreground)
        ]
        self.target_index = [
            (i, z) for i, s in enumerate(self.targets) for z in foreground_slices(s.target, cfg.min_foreground)
        ]
        from training.augment import SourceAugmentation  # it builds on this module's windows

        self.augmentation = SourceAugmentation(
            cfg, cohort.source_intensity, aligned=self.aligned, labelled=self.labelled
        )

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """A batch: ``source`` (B, k, S, S), ``target`` (B, 1, S, S) float32 arrays, and where
        every subject has label maps ``source_labels`` / ``target_labels`` (B, S, S) int64
        (the same windows and flips; background 0 outside the slice).
        """
        cfg, size, k = self.cfg, self.cfg.size, self.cfg.context_slices
        sources, targets, source_labels, target_labels = [], [], [], []
        augmentation = self.augmentation
        for _ in range(batch_size):
            i, z = self.source_index[self.rng.integers(len(self.source_index))]
            subject = self.sources[i]
            view = augmentation.draw(self.rng, subject.source, z, subject.source_labels)
            subject = augmentation.with_pools(view, i, subject)
            src = augmentation.source(view, i, subject.source, subject.source_labels, z, k)
            top, left = self._offset(src.shape[1:])
            flip = cfg.flip and self.rng.random() < 0.5
            sources.append(self._augment(augmentation.change_intensity(view, window(src, size, top, left)), flip))
            if self.labelled:
                labels = self._masked(view, subject.source_labels, z, subject.source_labels, 0)
                source_labels.append(self._augment(window(labels, size, top, left)[0], flip))
            owner, zt = subject, z
            if not self.aligned:
                j, zt = self.target_index[self.rng.integers(len(self.target_index))]
                owner = self.targets[j]
                top, left = self._offset(owner.target.shape[1:])
                flip = cfg.flip and self.rng.random() < 0.5
            target = self._masked(view, owner.target, zt, owner.target_labels, -1.0)
            targets.append(self._augment(window(target, size, top, left), flip))
            if self.labelled:
                labels = self._masked(view, owner.target_labels, zt, owner.target_labels, 0)
                target_labels.append(self._augment(window(labels, size, top, left)[0], flip))
        batch = {"source": np.stack(sources), "target": np.stack(targets)}
        if self.labelled:
            batch.update(source_labels=np.stack(source_labels), target_labels=np.stack(target_labels))
        return batch

    def _masked(
        self, view: View, volume: np.ndarray, z: int, labels: np.ndarray | None, background: float
    ) -> np.ndarray:
        """Slice ``z`` of ``volume`` as (1, H, W), ``background`` where ``view`` masks it (by ``labels``)."""
        image = volume[z : z + 1]
        if not view.masks:
            return image
        ids = np.array([z])
        keep = self.augmentation.keep(view, None if labels is None else labels[ids], ids, volume.shape)
        return np.where(keep, image, np.asarray(background, image.dtype))

    def _offset(self, shape: tuple[int, ...]) -> tuple[int, int]:
        h, w = shape
        size = self.cfg.size
        top = int(self.rng.integers(0, h - size + 1)) if h > size else (h - size) // 2
        left = int(self.rng.integers(0, w - size + 1)) if w > size else (w - size) // 2
        return top, left

    @staticmethod
    def _augment(image: np.ndarray, flip: bool) -> np.ndarray:
        return np.ascontiguousarray(image[..., ::-1]) if flip else image

    def state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


@dataclass
class ValidationSet:
    """Fixed validation slices: ``source`` (N, k, S, S), ``truth`` (N, 1, S, S) or None,
    ``target`` (N, 1, S, S) (what the registration preview registers to) or None.
    """

    source: np.ndarray
    truth: np.ndarray | None
    target: np.ndarray | None
    names: list[str]
    source_labels: np.ndarray | None = None
    """Label maps (N, S, S) of the source slices when every validation subject has them (SPADE's input)."""


Crop = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]
"""``crop(source, volume, z, channels)``: the validation window of ``volume`` (the source, the
truth or the target) at slice ``z`` with ``channels`` context slices, placed by the ``source``'s shape."""


def centred_crop(cfg: DataConfig) -> Crop:
    """The 2-D validation crop: ``cfg.size``² centred in the slice, (channels, S, S)."""

    def crop(source: np.ndarray, volume: np.ndarray, z: int, channels: int) -> np.ndarray:
        top, left = centre_offsets(*source.shape[1:], cfg.size)
        return window(context_stack(volume, z, channels), cfg.size, top, left)

    return crop


def validation_set(cohort: Cohort, cfg: DataConfig, crop: Crop | None = None) -> ValidationSet:
    """Evenly spaced foreground slices of the validation subjects (of the training
    subjects when there are none, e.g. a one-subject cohort), cropped by ``crop``
    (default :func:`centred_crop`; 3-D patches: :func:`training.patches.patch_crop`).
    """
    crop = crop or centred_crop(cfg)
    subjects = [s for s in cohort.val if s.source is not None] or [s for s in cohort.train if s.source is not None]
    per_subject = max(1, -(-cfg.val_slices // len(subjects)))
    src, truth, tgt, names, labels = [], [], [], [], []
    for s in subjects:
        ids = foreground_slices(s.source, cfg.min_foreground)
        picks = ids[np.linspace(0, len(ids) - 1, per_subject + 2).round().astype(int)[1:-1]]
        for z in picks:
            src.append(crop(s.source, s.source, int(z), cfg.context_slices))
            if s.truth is not None:
                truth.append(crop(s.source, s.truth, int(z), 1))
            if s.target is not None:
                tgt.append(crop(s.source, s.target, int(z), 1))
            if s.source_labels is not None:
                labels.append(crop(s.source, s.source_labels, int(z), 1)[0])
            names.append(f"{s.name}:{int(z)}")
    n = cfg.val_slices
    return ValidationSet(
        np.stack(src)[:n],
        np.stack(truth)[:n] if len(truth) == len(src) else None,
        np.stack(tgt)[:n] if len(tgt) == len(src) else None,
        names[:n],
        np.stack(labels)[:n] if len(labels) == len(src) else None,
    )


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}
