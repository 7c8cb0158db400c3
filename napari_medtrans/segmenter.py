"""Segmenters: a ``seg_unet`` in a safetensors file with JSON metadata, applied slice by slice.

A segmenter sees 2.5-D input: each slice with ``context`` neighbours on either
side as channels (edge slices repeated); files written before 2.5-D input have
no ``context`` key and read as ``context = 0`` (one channel). CT segmenters
use :func:`segmenter_intensity`'s narrow window, in which grey and white
matter (about 10 HU apart) stay distinguishable; a CT segmenter may also see
the image in narrower ``windows`` (e.g. a brain window) as further channels
(:func:`segmenter_input`). :meth:`Segmenter.segment`
can average the prediction with its left-right flip (test-time flip), whose
disagreement is also kept as a confidence signal.

The file layout is the translator's (see :mod:`napari_medtrans.checkpoint`):
tensors named ``"segmenter.<parameter>"`` and a JSON :class:`SegmenterMetadata`
under the ``"medtrans"`` header key, with ``"kind": "segmenter"``. Loading builds
the network from its spec and checks names and shapes; nothing is unpickled.
Training lives in :mod:`training.segmenter` (``medtrans train-segmenter``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

from napari_medtrans.checkpoint import METADATA_KEY, CheckpointError
from napari_medtrans.inference import resolve_device
from napari_medtrans.intensity import IntensityModel, ct_window, mr_percentile
from napari_medtrans.io import Volume
from napari_medtrans.nets import build_network
from napari_medtrans.rundir import atomic_write_bytes
from napari_medtrans.shipped import shipped_dir

KIND = "segmenter"
ROLE = "segmenter"

#: CT window of new segmenters (HU): fat, brain, CSF and marrow inside, bone and air clipped.
SEGMENTER_CT_WINDOW = (-200.0, 800.0)

#: Range (network units) below which a 2.5-D input stack counts as constant: no signal to segment.
SIGNAL_EPS = 1e-6


def segmenter_intensity(modality: str) -> IntensityModel:
    """Intensity model of a new segmenter: CT in :data:`SEGMENTER_CT_WINDOW`, MR by percentiles."""
    return ct_window(*SEGMENTER_CT_WINDOW) if modality == "CT" else mr_percentile()


def stack_neighbours(volume: np.ndarray, context: int) -> np.ndarray:
    """(z, y, x) → (z, 2·context + 1, y, x): each slice with its neighbours (edges repeated)."""
    index = np.clip(np.arange(len(volume))[:, None] + np.arange(-context, context + 1), 0, len(volume) - 1)
    return volume[index]


def segmenter_input(
    volume: np.ndarray, intensity: IntensityModel, context: int, windows: Sequence[Sequence[float]] = ()
) -> np.ndarray:
    """(z, y, x) image → (z, (2·context + 1)·(1 + len(windows)), y, x) network input.

    The image mapped by ``intensity`` with its neighbours, then the same stack
    for each further CT window ``(low, high)`` HU.
    """
    mappings = [intensity.fit(volume), *(ct_window(float(lo), float(hi)).fit(volume) for lo, hi in windows)]
    return np.concatenate([stack_neighbours(m.to_network(volume), context) for m in mappings], axis=1)


def has_signal(stacks: np.ndarray) -> np.ndarray:
    """Which (N, channels, H, W) 2.5-D stacks vary at all (N,): a constant one (air clipped by the window) has none.

    Instance norm maps a constant input to zero, so a segmenter cannot tell such a slice
    from anything else; :meth:`Segmenter.segment` labels it background and training skips it.
    """
    flat = np.asarray(stacks).reshape(len(stacks), -1)
    return np.ptp(flat, axis=1) > SIGNAL_EPS if flat.size else np.zeros(len(stacks), bool)


@dataclass
class SegmenterMetadata:
    """What a segmenter file needs to be rebuilt and applied (JSON-serialisable)."""

    name: str
    modality: str  # the image domain it segments: "CT", "T1", "T2", …
    labels: dict[int, str]  # label value → tissue name (0 = background)
    network: dict[str, Any]  # build_network spec, arch "seg_unet"
    intensity: dict[str, Any]  # IntensityModel.to_dict()
    slice_axis: int = 0
    context: int = 0  # neighbouring slices on either side fed as channels (2.5-D)
    windows: list[list[float]] = field(default_factory=list)  # further CT windows (HU) fed as channels
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self), "labels": {str(k): v for k, v in self.labels.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterMetadata:
        """Parse and check; the message names the first problem."""
        if data.get("kind") != KIND:
            raise CheckpointError(f"metadata kind is {data.get('kind')!r}, not {KIND!r}")
        try:
            metadata = cls(
                name=str(data["name"]),
                modality=str(data["modality"]),
                labels={int(k): str(v) for k, v in data["labels"].items()},
                network=dict(data["network"]),
                intensity=dict(data["intensity"]),
                slice_axis=int(data.get("slice_axis", 0)),
                context=int(data.get("context", 0)),
                windows=[[float(lo), float(hi)] for lo, hi in data.get("windows", [])],
                provenance=dict(data.get("provenance", {})),
            )
            IntensityModel.from_dict(metadata.intensity)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"bad segmenter metadata: {exc!r}") from exc
        if metadata.network.get("arch") != "seg_unet":
            raise CheckpointError(f"segmenter network must be 'seg_unet', got {metadata.network.get('arch')!r}")
        if metadata.network.get("n_classes") != max(metadata.labels) + 1:
            raise CheckpointError("segmenter n_classes does not match its labels")
        channels = (2 * metadata.context + 1) * (1 + len(metadata.windows))
        if metadata.context < 0 or metadata.network.get("in_channels", 1) != channels:
            raise CheckpointError(
                f"segmenter context {metadata.context} needs {channels} input channels"
                + (f" with {len(metadata.windows)} further windows" if metadata.windows else "")
                + f", the network has {metadata.network.get('in_channels', 1)}"
            )
        return metadata


@dataclass
class SegmentationResult:
    """Labels (uint8, like the input), per-class probabilities (C, *input shape) and flip disagreement.

    ``flip_disagreement`` (only with ``flip=True``): half the L1 distance between
    the class probabilities of the image and of its left-right flip, in [0, 1].
    """

    labels: np.ndarray
    probabilities: np.ndarray
    flip_disagreement: np.ndarray | None = None


class Segmenter:
    """A loaded segmenter; :meth:`segment` labels a volume slice by slice."""

    def __init__(self, model: nn.Module, metadata: SegmenterMetadata, device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.metadata = metadata

    @torch.no_grad()
    def segment(self, image: Volume | np.ndarray, *, batch_size: int = 8, flip: bool = False) -> SegmentationResult:
        """Segment a (z, y, x) volume in image units (a 2D image counts as one slice).

        ``flip``: average with the prediction of the left-right flipped image
        and report their disagreement.
        """
        array = np.asarray(image.array if isinstance(image, Volume) else image)
        squeeze = array.ndim == 2
        volume = array[None] if squeeze else np.moveaxis(array, self.metadata.slice_axis, 0)
        intensity = IntensityModel.from_dict(self.metadata.intensity)
        slices = torch.from_numpy(segmenter_input(volume, intensity, self.metadata.context, self.metadata.windows))
        probabilities = self._all(slices, batch_size)
        disagreement = None
        if flip:
            flipped = self._all(slices.flip(-1), batch_size).flip(-1)
            disagreement = 0.5 * (probabilities - flipped).abs().sum(1)
            probabilities = 0.5 * (probabilities + flipped)
        probabilities, disagreement = (self._to_input_layout(a, squeeze) for a in (probabilities, disagreement))
        return SegmentationResult(probabilities.argmax(0).astype(np.uint8), probabilities, disagreement)

    def _all(self, slices: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Probabilities of every 2.5-D stack; a stack without signal (constant, e.g. air) is background."""
        probabilities = torch.cat(
            [self.probabilities(slices[i : i + batch_size]) for i in range(0, len(slices), batch_size)]
        )
        probabilities[~has_signal(slices.numpy())] = F.one_hot(torch.tensor(0), probabilities.shape[1]).float()[
            :, None, None
        ]
        return probabilities

    def _to_input_layout(self, values: torch.Tensor | None, squeeze: bool) -> np.ndarray | None:
        """(z, [C,] y, x) slice-major tensor → numpy in the input's layout, classes first."""
        if values is None:
            return None
        array = values.numpy()
        channels = array.ndim == 4
        if channels:
            array = np.moveaxis(array, 0, 1)  # (C, z, y, x)
        if squeeze:
            return array[:, 0] if channels else array[0]
        return np.moveaxis(array, int(channels), int(channels) + self.metadata.slice_axis)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Softmax of a (B, channels, H, W) batch in network units, padded to the size multiple."""
        multiple = self.model.size_multiple
        h, w = batch.shape[-2:]
        pad = (0, -w % multiple, 0, -h % multiple)
        logits = self.model(F.pad(batch.to(self.device), pad, value=-1.0))[..., :h, :w]
        return torch.softmax(logits, dim=1).float().cpu()


def save_segmenter(
    path: str | os.PathLike[str], model: nn.Module, metadata: SegmenterMetadata, *, overwrite: bool = False
) -> Path:
    """Write the segmenter atomically (same safetensors + JSON layout as translators)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    SegmenterMetadata.from_dict(metadata.to_dict())
    tensors = {f"{ROLE}.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save_tensors(tensors, metadata={METADATA_KEY: json.dumps(metadata.to_dict())}))
    return path


def read_segmenter_metadata(path: str | os.PathLike[str]) -> SegmenterMetadata:
    """The metadata of a segmenter file (header only)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        return SegmenterMetadata.from_dict(json.loads(header[METADATA_KEY]))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such segmenter file") from exc
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a medtrans segmenter file ({exc!r})") from exc
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def load_segmenter(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Segmenter:
    """Rebuild a segmenter from ``path`` on ``device`` (auto|cpu|cuda|mps), checking names and shapes."""
    metadata = read_segmenter_metadata(path)
    state = {k.partition(".")[2]: v for k, v in load_file(str(path)).items() if k.startswith(f"{ROLE}.")}
    model = build_network(metadata.network)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the {metadata.network} spec: {exc}") from exc
    return Segmenter(model, metadata, device)


def shipped_segmenter(modality: str) -> Path | None:
    """The segmenter shipped in ``sample_data/segmenters`` for ``modality`` (e.g. ``"CT"``), if any."""
    path = shipped_dir() / "segmenters" / f"segmenter-{modality.lower()}.safetensors"
    return path if path.is_file() else None
