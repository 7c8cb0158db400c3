"""Training of a small slice-wise segmentation U-Net (``seg_unet``).

:func:`train_segmenter` takes image volumes and their label maps (numpy arrays
or :class:`~napari_medtrans.io.Volume`), trains with cross-entropy + soft Dice
on random 2D slices (left-right flips, intensity jitter and noise as
augmentation) and returns a :class:`~napari_medtrans.segmenter.Segmenter`,
saved to ``path`` when one is given. Used by ``medtrans train-segmenter``, the
evaluation's anatomical-consistency check and the pseudo-label strategies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_medtrans.inference import resolve_device
from napari_medtrans.intensity import default_for
from napari_medtrans.io import Volume
from napari_medtrans.nets import build_network
from napari_medtrans.segmenter import Segmenter, SegmenterMetadata, save_segmenter


def _slices(
    images: Sequence[np.ndarray | Volume], labels: Sequence[np.ndarray], modality: str
) -> tuple[np.ndarray, np.ndarray]:
    """Network-range slices (N, H, W) and their labels, keeping slices with any foreground."""
    if len(images) != len(labels) or not images:
        raise ValueError(f"need as many label maps as images (≥ 1), got {len(images)} and {len(labels)}")
    model = default_for(modality)
    xs, ys = [], []
    for image, label in zip(images, labels):
        array = image.array if isinstance(image, Volume) else np.asarray(image)
        label = np.asarray(label)
        if array.shape != label.shape:
            raise ValueError(f"image {array.shape} and labels {label.shape} differ in shape")
        array, label = (array[None], label[None]) if array.ndim == 2 else (array, label)
        keep = (label > 0).any(axis=(1, 2))
        xs.append(model.fit(array).to_network(array)[keep])
        ys.append(label[keep].astype(np.int64))
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) != 1:
        raise ValueError(f"all slices must share one in-plane shape, got {sorted(shapes)}")
    return np.concatenate(xs), np.concatenate(ys)


def _crop(x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``size``² window per sample, centred near a random labelled voxel (full slice if not larger)."""
    h, w = x.shape[-2:]
    if size >= min(h, w):
        return x, y
    rows, cols = [], []
    for label in y:
        inside = torch.nonzero(label > 0)
        if len(inside):
            centre = inside[torch.randint(len(inside), (1,), generator=gen)][0]
        else:
            centre = torch.tensor([h // 2, w // 2])
        jitter = torch.randint(-size // 4, size // 4 + 1, (2,), generator=gen)
        top_left = centre + jitter - size // 2
        rows.append(int(top_left[0].clamp(0, h - size)))
        cols.append(int(top_left[1].clamp(0, w - size)))
    return (
        torch.stack([xi[..., r : r + size, c : c + size] for xi, r, c in zip(x, rows, cols)]),
        torch.stack([yi[r : r + size, c : c + size] for yi, r, c in zip(y, rows, cols)]),
    )


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left-right flip, gain/offset jitter (±10 %) and Gaussian noise (σ ≤ 0.03)."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x, y = torch.where(flip[:, None, None, None], x.flip(-1), x), torch.where(flip[:, None, None], y.flip(-1), y)
    gain = 1 + 0.2 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5)
    offset = 0.2 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5)
    noise = 0.03 * torch.rand(len(x), 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return (x * gain + offset + noise).clamp(-1, 1), y


def _loss(logits: torch.Tensor, target: torch.Tensor, ignore_label: int | None) -> torch.Tensor:
    """Cross-entropy + (1 − soft Dice) over the classes present in the batch."""
    ce = F.cross_entropy(logits, target, ignore_index=-100 if ignore_label is None else ignore_label)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_label is None else target != ignore_label
    probs = torch.softmax(logits, 1) * valid[:, None]
    onehot = F.one_hot(torch.where(valid, target, 0), logits.shape[1]).permute(0, 3, 1, 2) * valid[:, None]
    inter, total = (probs * onehot).sum((0, 2, 3)), (probs + onehot).sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter[present] + 1) / (total[present] + 1)
    return ce + (1 - dice.mean())


def train_segmenter(
    images: Sequence[np.ndarray | Volume],
    labels: Sequence[np.ndarray],
    *,
    modality: str,
    label_names: dict[int, str],
    path: str | Path | None = None,
    name: str | None = None,
    iterations: int = 400,
    batch_size: int = 8,
    lr: float = 2e-3,
    crop: int = 64,
    features: int = 8,
    depth: int = 3,
    seed: int = 0,
    device: str = "auto",
    ignore_label: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> Segmenter:
    """Train a segmenter on ``images`` (``modality``) and ``labels``; save it to ``path`` if given.

    ``label_names`` maps every label value (0 = background) to its tissue name;
    ``ignore_label`` marks unlabelled voxels (e.g. low-confidence pseudo labels).
    Training uses random ``crop``² windows (the net is fully convolutional, so it
    segments whole slices of any size that is a multiple of 2^``depth``).
    ``progress(iteration, loss)`` is called after each step.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = resolve_device(device)
    xs, ys = _slices(images, labels, modality)
    n_classes = max(label_names) + 1
    spec = {"arch": "seg_unet", "in_channels": 1, "n_classes": n_classes, "features": features, "depth": depth}
    model = build_network(spec).to(dev).train()
    multiple = model.size_multiple
    if crop % multiple:
        raise ValueError(f"crop {crop} must be a multiple of {multiple} (the U-Net depth {depth})")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    x_all, y_all = torch.from_numpy(xs)[:, None], torch.from_numpy(ys)
    started = time.time()
    for step in range(1, iterations + 1):
        pick = torch.randint(len(x_all), (batch_size,), generator=gen)
        x, y = _augment(*_crop(x_all[pick], y_all[pick], crop, gen), gen)
        loss = _loss(model(x.to(dev)), y.to(dev), ignore_label)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(step, loss.item())
    metadata = SegmenterMetadata(
        name=name or f"segmenter-{modality.lower()}",
        modality=modality,
        labels=dict(label_names),
        network=spec,
        intensity=default_for(modality).to_dict(),
        provenance={
            "iterations": iterations, "batch_size": batch_size, "crop": crop, "lr": lr, "seed": seed,
            "volumes": len(images), "slices": int(len(xs)), "seconds": round(time.time() - started, 1),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    segmenter = Segmenter(model.eval(), metadata, dev)
    if path is not None:
        save_segmenter(path, model, metadata, overwrite=overwrite)
    return segmenter
