"""Training of a small slice-wise segmentation U-Net (``seg_unet``).

:func:`train_segmenter` takes image volumes and their label maps (numpy arrays
or :class:`~napari_medtrans.io.Volume`), trains with nnU-Net's Dice + cross-entropy
on class-balanced 2.5-D crops (left-right flips, intensity jitter and noise as
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
from napari_medtrans.intensity import IntensityModel
from napari_medtrans.io import Volume
from napari_medtrans.nets import build_network
from napari_medtrans.segmenter import (
    Segmenter,
    SegmenterMetadata,
    has_signal,
    save_segmenter,
    segmenter_input,
    segmenter_intensity,
)


def _slices(
    images: Sequence[np.ndarray | Volume],
    labels: Sequence[np.ndarray],
    intensity: IntensityModel,
    context: int,
    windows: Sequence[Sequence[float]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """2.5-D network inputs (N, channels, H, W) (:func:`segmenter_input`) and their labels, keeping stacks with signal.

    An empty slice next to the head stays (the segmenter must learn to leave it
    empty); a constant stack goes, :meth:`Segmenter.segment` labels it background.
    """
    if len(images) != len(labels) or not images:
        raise ValueError(f"need as many label maps as images (≥ 1), got {len(images)} and {len(labels)}")
    xs, ys = [], []
    for image, label in zip(images, labels):
        array = image.array if isinstance(image, Volume) else np.asarray(image)
        label = np.asarray(label)
        if array.shape != label.shape:
            raise ValueError(f"image {array.shape} and labels {label.shape} differ in shape")
        array, label = (array[None], label[None]) if array.ndim == 2 else (array, label)
        stacks = segmenter_input(array, intensity, context, windows)
        keep = has_signal(stacks)
        xs.append(stacks[keep])
        ys.append(label[keep].astype(np.int64))
    shapes = {x.shape[2:] for x in xs}
    if len(shapes) != 1:
        raise ValueError(f"all slices must share one in-plane shape, got {sorted(shapes)}")
    return np.concatenate(xs), np.concatenate(ys)


class ClassBalancedCrops:
    """Crop centres drawn class-balanced: a label value uniformly, then one of its voxels.

    The rare tissues (the eye is ~0.1 % of a head) are then seen as often as the
    large ones, as nnU-Net's foreground oversampling does for its classes.
    """

    MAX_VOXELS = 100_000
    """Candidate centres kept per class (a random subset of its voxels)."""

    def __init__(self, labels: torch.Tensor, size: int, gen: torch.Generator) -> None:
        self.size, self.gen = size, gen
        found = (torch.nonzero(labels == k) for k in labels.unique().tolist())
        self.voxels = [v[torch.randperm(len(v), generator=gen)[: self.MAX_VOXELS]] for v in found if len(v)]

    def centres(self, n: int) -> torch.Tensor:
        """``n`` (slice, row, col) centres."""
        classes = torch.randint(len(self.voxels), (n,), generator=self.gen).tolist()
        return torch.stack(
            [self.voxels[k][torch.randint(len(self.voxels[k]), (1,), generator=self.gen)][0] for k in classes]
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` windows of ``size``² (whole slices if not larger) around jittered class-balanced centres."""
        centres = self.centres(n)
        h, w = x.shape[-2:]
        if self.size >= min(h, w):
            return x[centres[:, 0]], y[centres[:, 0]]
        size = self.size
        jitter = torch.randint(-size // 4, size // 4 + 1, (n, 2), generator=self.gen)
        corners = centres[:, 1:] + jitter - size // 2
        rows, cols = corners[:, 0].clamp(0, h - size).tolist(), corners[:, 1].clamp(0, w - size).tolist()
        picks = centres[:, 0].tolist()
        return (
            torch.stack([x[i, :, r : r + size, c : c + size] for i, r, c in zip(picks, rows, cols)]),
            torch.stack([y[i, r : r + size, c : c + size] for i, r, c in zip(picks, rows, cols)]),
        )


def _augment(
    x: torch.Tensor,
    y: torch.Tensor,
    gen: torch.Generator,
    tissue_jitter: float = 0.0,
    n_classes: int = 0,
    channel_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left-right flip, per-tissue offsets, gain/offset jitter (±10 %) and Gaussian noise (σ ≤ 0.01).

    ``tissue_jitter``: σ (network units of the first window) of an offset drawn
    per sample and label value and added where the slice has that label, as a
    new subject's tissue values would differ; it makes weak tissue contrasts
    (grey/white matter in CT) vary more than the training subjects do.
    ``channel_scale`` (channels,) converts it to each input channel's units
    (further, narrower windows stretch the same offset).
    """
    flip = torch.rand(len(x), generator=gen) < 0.5
    x, y = torch.where(flip[:, None, None, None], x.flip(-1), x), torch.where(flip[:, None, None], y.flip(-1), y)
    if tissue_jitter > 0:
        offsets = tissue_jitter * torch.randn(len(x), n_classes, generator=gen)
        shift = torch.gather(offsets, 1, y.clamp(0, n_classes - 1).flatten(1)).view_as(y)[:, None]
        x = x + shift * (1 if channel_scale is None else channel_scale[:, None, None])
    gain = 1 + 0.2 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5)
    offset = 0.2 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5)
    noise = 0.01 * torch.rand(len(x), 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return (x * gain + offset + noise).clamp(-1, 1), y


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_label: int | None = None,
    smooth: float = 1e-5,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """nnU-Net's Dice + cross-entropy: CE + (1 − mean batch soft Dice of the foreground classes present).

    The soft Dice of class k is ``(2 Σ p·t + smooth) / (Σ p + Σ t + smooth)`` over
    the whole batch (nnU-Net's batch Dice); every class present in the target
    (background excluded) counts equally, so small tissues weigh as much as large
    ones. Voxels labelled ``ignore_label`` count in neither term.
    ``class_weights`` (C,) weigh the cross-entropy of each true class (PyTorch's
    weighted mean), e.g. to move a border in favour of a class the net under-segments.
    """
    ce = F.cross_entropy(
        logits, target, weight=class_weights, ignore_index=-100 if ignore_label is None else ignore_label
    )
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_label is None else target != ignore_label
    probs = torch.softmax(logits, 1) * valid[:, None]
    onehot = F.one_hot(torch.where(valid, target, 0), logits.shape[1]).permute(0, 3, 1, 2) * valid[:, None]
    axes = (0, *range(2, logits.ndim))
    inter, total = (probs * onehot).sum(axes), (probs + onehot).sum(axes)
    present = onehot.sum(axes) > 0
    present[0] = False
    if not present.any():
        return ce
    dice = (2 * inter[present] + smooth) / (total[present] + smooth)
    return ce + (1 - dice.mean())


def segmenter_spec(n_classes: int, features: int, depth: int, context: int, windows: int = 0) -> dict:
    """The ``build_network`` spec of a segmenter (``windows``: further CT windows as input channels)."""
    return {
        "arch": "seg_unet",
        "in_channels": (2 * context + 1) * (1 + windows),
        "n_classes": n_classes,
        "features": features,
        "depth": depth,
    }


def _initial_state(init: Segmenter, spec: dict, windows: list[tuple[float, float]]) -> dict[str, torch.Tensor]:
    """``init``'s weights for a network ``spec``; windows it lacks get zero input weights (same function)."""
    state = init.model.state_dict()
    own = [tuple(w) for w in init.metadata.windows]
    widened = own == windows[: len(own)] and {**init.metadata.network, "in_channels": spec["in_channels"]} == spec
    if init.metadata.network == spec and own == windows:
        return state
    if not widened:
        raise ValueError(
            f"cannot start from {init.metadata.name}: its network {init.metadata.network} "
            f"(windows {own}) is not {spec} (windows {windows})"
        )
    first = next(k for k, v in state.items() if v.ndim == 4)  # the input convolution
    weight = state[first].new_zeros(state[first].shape[0], spec["in_channels"], *state[first].shape[2:])
    weight[:, : state[first].shape[1]] = state[first]
    return {**state, first: weight}


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
    features: int = 16,
    depth: int = 4,
    context: int = 1,
    seed: int = 0,
    device: str = "auto",
    ignore_label: int | None = None,
    overwrite: bool = False,
    save_every: int = 0,
    init: Segmenter | None = None,
    tissue_jitter: float = 0.0,
    windows: Sequence[tuple[float, float]] = (),
    class_weights: dict[int, float] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Segmenter:
    """Train a segmenter on ``images`` (``modality``) and ``labels``; save it to ``path`` if given.

    ``label_names`` maps every label value (0 = background) to its tissue name;
    ``ignore_label`` marks unlabelled voxels (e.g. low-confidence pseudo labels).
    The loss is :func:`dice_ce_loss` on ``crop``² windows centred class-balanced
    (:class:`ClassBalancedCrops`); the net is fully convolutional, so it
    segments whole slices of any size (padded to a multiple of 2^``depth``).
    ``context`` neighbouring slices on either side are input channels (2.5-D).
    ``init``: start from this segmenter's weights (same network spec; e.g. one of
    another modality, whose anatomy it already knows).
    ``tissue_jitter``: σ of a random offset per tissue and sample (network units,
    see ``_augment``); 0 leaves it out. ``windows``: further CT windows
    ``(low, high)`` HU as input channels (e.g. a brain window); an ``init``
    without them keeps its function, the new channels start with zero weights.
    ``class_weights``: cross-entropy weight per label value (others weigh 1).
    ``progress(iteration, loss)`` is called after each step; with ``path`` and
    ``save_every`` the segmenter so far is saved every ``save_every`` steps, so
    a stopped run leaves a usable file.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = resolve_device(device)
    intensity = segmenter_intensity(modality)
    windows = [(float(lo), float(hi)) for lo, hi in windows]
    if windows and (modality != "CT" or any(lo >= hi for lo, hi in windows)):
        raise ValueError(f"further windows need CT and low < high (HU), got {modality} and {windows}")
    xs, ys = _slices(images, labels, intensity, context, windows)
    spec = segmenter_spec(max(label_names) + 1, features, depth, context, len(windows))
    model = build_network(spec)
    if init is not None:
        model.load_state_dict(_initial_state(init, spec, windows))
    weights = torch.ones(spec["n_classes"])
    for value, weight in (class_weights or {}).items():
        if value not in label_names or weight <= 0:
            raise ValueError(f"class weight {weight} for label {value}: need a label of {sorted(label_names)} and > 0")
        weights[value] = weight
    channel_scale = torch.tensor(
        [(intensity.high - intensity.low) / (hi - lo) for lo, hi in [(intensity.low, intensity.high), *windows]]
    ).repeat_interleave(2 * context + 1)
    model = model.to(dev).train()
    multiple = model.size_multiple
    if crop % multiple:
        raise ValueError(f"crop {crop} must be a multiple of {multiple} (the U-Net depth {depth})")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    x_all, y_all = torch.from_numpy(xs), torch.from_numpy(ys)
    crops = ClassBalancedCrops(
        y_all if ignore_label is None else torch.where(y_all == ignore_label, 0, y_all), crop, gen
    )
    started = time.time()

    def metadata(done: int) -> SegmenterMetadata:
        return SegmenterMetadata(
            name=name or f"segmenter-{modality.lower()}",
            modality=modality,
            labels=dict(label_names),
            network=spec,
            intensity=intensity.to_dict(),
            context=context,
            windows=[list(w) for w in windows],
            provenance={
                "loss": "dice+ce",
                "sampling": "class-balanced",
                "init": init and init.metadata.name,
                "iterations": done,
                "batch_size": batch_size,
                "crop": crop,
                "lr": lr,
                "tissue_jitter": tissue_jitter,
                "class_weights": {str(k): v for k, v in (class_weights or {}).items()},
                "seed": seed,
                "volumes": len(images),
                "slices": len(xs),
                "seconds": round(time.time() - started, 1),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )

    for step in range(1, iterations + 1):
        x, y = _augment(*crops(x_all, y_all, batch_size), gen, tissue_jitter, spec["n_classes"], channel_scale)
        loss = dice_ce_loss(model(x.to(dev)), y.to(dev), ignore_label, class_weights=weights.to(dev))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(step, loss.item())
        if path is not None and save_every and step % save_every == 0 and step < iterations:
            save_segmenter(path, model, metadata(step), overwrite=overwrite or step > save_every)
    segmenter = Segmenter(model.eval(), metadata(iterations), dev)
    if path is not None:
        save_segmenter(path, model, segmenter.metadata, overwrite=overwrite or save_every in range(1, iterations))
    return segmenter
