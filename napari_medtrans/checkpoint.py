"""Translator files: safetensors weights + JSON metadata, loaded without pickle.

A translator file holds the tensors of each network under ``"<role>.<name>"``
(roles: ``generator`` and, for RegGAN-style methods, ``registration``) and a
JSON :class:`TranslatorMetadata` under the ``"medtrans"`` key of the
safetensors header. Loading rebuilds the networks from their specs with
:func:`napari_medtrans.nets.build_network` and checks every tensor name and
shape before loading; nothing is ever unpickled.

Foreign PyTorch ``.pth`` generators are imported by the explicit
:func:`convert_pth`, which uses ``torch.load(weights_only=True)``: a file that
carries anything but tensors (a pickle payload) is refused and never runs.

Parameter-name mapping of foreign ResNet generators onto
:class:`~napari_medtrans.nets.resnet.ResnetGenerator` (``n`` = number of
residual blocks; the integer after the prefix is shifted by the offset):

==========  ===================================  ============================
layout      foreign name                         our name
==========  ===================================  ============================
cyclegan    ``model.{i}.…``                      ``model.{i}.…``
reggan      ``model_head.{i}.…`` (i = 1, 4, 7)   ``model.{i}.…``
reggan      ``model_body.{b}.conv_block.{j}.…``  ``model.{10+b}.conv_block.{j}.…``
reggan      ``model_tail.{i}.…`` (i = 0, 3, 7)   ``model.{10+n+i}.…``
==========  ===================================  ============================

``cyclegan`` covers ``latest_net_G_A.pth`` of junyanz/pytorch-CycleGAN-and-pix2pix
and ``netG_A2B.pth`` of aitorzip/PyTorch-CycleGAN; ``reggan`` covers
``netG_A2B.pth`` of Kid-Liet/Reg-GAN. A ``conv_block.6`` (CycleGAN's
``use_dropout``) means dropout 0.5.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

from napari_medtrans.intensity import IntensityModel, default_for
from napari_medtrans.metadata_schema import check_finite, parse_translator_metadata
from napari_medtrans.nets import build_network
from napari_medtrans.nets.resnet import FIRST_BLOCK
from napari_medtrans.rundir import atomic_write_bytes

#: Header key holding the JSON metadata.
METADATA_KEY = "medtrans"
#: Version of the metadata layout written by this code.
FORMAT_VERSION = 1
ROLES = ("generator", "registration")
OUTPUTS = ("image", "scale", "field")
REGIMES = ("paired", "unpaired", "misaligned", None)
"""Data regimes a translator may record (None: trained before regimes were recorded)."""

#: Foreign layout → {prefix: offset(n_blocks)}; see the table in the module doc.
LAYOUTS: dict[str, dict[str, Callable[[int], int]]] = {
    "cyclegan": {"model": lambda n: 0},
    "reggan": {
        "model_head": lambda n: 0,
        "model_body": lambda n: FIRST_BLOCK,
        "model_tail": lambda n: FIRST_BLOCK + n,
    },
}


class CheckpointError(ValueError):
    """A translator file is unreadable, inconsistent or refused; the message says why."""


@dataclass
class TranslatorMetadata:
    """Everything needed to rebuild and run a translator (JSON-serialisable)."""

    name: str
    method: str
    source: str
    target: str
    networks: dict[str, dict[str, Any]]
    source_intensity: dict[str, Any]
    target_intensity: dict[str, Any]
    slice_axis: int = 0
    size: int = 256
    context_slices: int = 1
    outputs: list[str] = field(default_factory=lambda: ["image"])
    provenance: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    """Model card (:mod:`napari_medtrans.model_card`): data, regime, held-out numbers, intended use, limits."""
    input_signature: dict[str, Any] = field(default_factory=dict)
    """Training-data statistics the input check compares a new volume with (:mod:`napari_medtrans.input_check`)."""
    regime: str | None = None
    """Data regime it was trained on: paired, unpaired or misaligned (None: not recorded)."""
    deviations: dict[str, Any] = field(default_factory=dict)
    """Training options that differ from the method's paper defaults (docs/training.md)."""
    patch: list[int] | None = None
    """3-D translators (``networks.generator.dims`` 3): the (slices, rows, cols) training patch, slice axis
    first, which sliding-window inference uses (:mod:`napari_medtrans.sliding_window`); None for slice-wise ones."""

    def validate(self) -> None:
        """Raise :class:`CheckpointError` naming the first inconsistent field."""
        for key in ("name", "method", "source", "target"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise CheckpointError(f"metadata field {key!r} must be a non-empty string")
        if "generator" not in self.networks:
            raise CheckpointError("metadata 'networks' has no 'generator'")
        unknown = set(self.networks) - set(ROLES)
        if unknown:
            raise CheckpointError(f"unknown network roles {sorted(unknown)}; known: {list(ROLES)}")
        for role, spec in self.networks.items():
            if not isinstance(spec, dict) or "arch" not in spec:
                raise CheckpointError(f"network spec of {role!r} must be a dict with an 'arch' key")
        try:
            IntensityModel.from_dict(self.source_intensity)
            IntensityModel.from_dict(self.target_intensity).output_mapping()
        except ValueError as exc:
            raise CheckpointError(f"bad intensity model: {exc}") from exc
        if self.slice_axis not in (0, 1, 2):
            raise CheckpointError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis!r}")
        if self.context_slices < 1 or self.context_slices % 2 == 0:
            raise CheckpointError(f"context_slices must be odd and ≥ 1, got {self.context_slices}")
        in_channels = self.networks["generator"].get("in_channels", 1)
        if in_channels != self.context_slices:
            raise CheckpointError(
                f"generator in_channels ({in_channels}) must equal context_slices ({self.context_slices})"
            )
        self._validate_patch()
        if "image" not in self.outputs or not set(self.outputs) <= set(OUTPUTS):
            raise CheckpointError(f"outputs must include 'image' and lie in {list(OUTPUTS)}, got {self.outputs}")
        if ("field" in self.outputs) != ("registration" in self.networks):
            raise CheckpointError("output 'field' goes with a 'registration' network, and only with one")
        if self.regime not in REGIMES:
            raise CheckpointError(f"regime must be one of {[r for r in REGIMES if r]}, got {self.regime!r}")
        if not isinstance(self.deviations, dict):
            raise CheckpointError(f"deviations must be a JSON object, got {type(self.deviations).__name__}")

    @property
    def label_classes(self) -> int:
        """Classes of the label map the generator is conditioned on (its spec's ``label_classes``; 0: none)."""
        return int(self.networks["generator"].get("label_classes", 0))

    def _validate_patch(self) -> None:
        """A 3-D generator goes with a 3-D patch and one input channel; a 2-D one with neither."""
        three_d = self.networks["generator"].get("dims", 2) == 3
        if (self.patch is not None) != three_d:
            raise CheckpointError(
                "a 3-D generator (networks.generator.dims 3) needs a 'patch' (slices, rows, cols), and only it has one"
            )
        if self.patch is None:
            return
        if not (isinstance(self.patch, list) and len(self.patch) == 3):
            raise CheckpointError(f"patch must list 3 sides (slices, rows, cols), got {self.patch!r:.60}")
        if any(isinstance(side, bool) or not isinstance(side, int) or side < 1 for side in self.patch):
            raise CheckpointError(f"patch sides must be positive integers, got {self.patch!r:.60}")
        if self.context_slices != 1:
            raise CheckpointError(f"a 3-D generator takes context_slices 1, got {self.context_slices}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranslatorMetadata:
        """Parse and validate; unknown keys are ignored, missing ones are named."""
        if data.get("format", FORMAT_VERSION) > FORMAT_VERSION:
            raise CheckpointError(f"metadata format {data['format']} is newer than this version reads")
        names = {f.name for f in fields(cls)}
        try:
            metadata = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise CheckpointError(f"incomplete metadata: {exc}") from exc
        metadata.validate()
        return metadata

    def intensity_models(self) -> tuple[IntensityModel, IntensityModel]:
        """(source, target) intensity models."""
        return IntensityModel.from_dict(self.source_intensity), IntensityModel.from_dict(self.target_intensity)


def save_translator(
    path: str | os.PathLike[str],
    modules: Mapping[str, nn.Module],
    metadata: TranslatorMetadata,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``modules`` (role → network) and ``metadata`` atomically to ``path``.

    The modules are checked against networks built from ``metadata.networks``,
    so a file that saves also loads.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    metadata.validate()
    if set(modules) != set(metadata.networks):
        raise CheckpointError(f"modules {sorted(modules)} do not match metadata networks {sorted(metadata.networks)}")
    tensors: dict[str, torch.Tensor] = {}
    for role, module in modules.items():
        state = module.state_dict()
        _build_checked(role, metadata, {k: v.shape for k, v in state.items()})
        tensors.update({f"{role}.{k}": v.detach().to("cpu").contiguous() for k, v in state.items()})
    header = {METADATA_KEY: json.dumps(metadata.to_dict())}
    atomic_write_bytes(path, save_tensors(tensors, metadata=header))
    return path


def read_metadata(path: str | os.PathLike[str]) -> TranslatorMetadata:
    """The metadata of a translator file (reads the header only)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such translator file") from exc
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{path} is not a safetensors translator ({exc}); a PyTorch .pth must be "
            "converted explicitly with `medtrans convert-pth`"
        ) from exc
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path} has no {METADATA_KEY!r} metadata; it is not a medtrans translator")
    try:
        return TranslatorMetadata.from_dict(parse_translator_metadata(header[METADATA_KEY]))
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def load_modules(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[dict[str, nn.Module], TranslatorMetadata]:
    """Rebuild the networks of a translator file, validated, in eval mode on ``device``."""
    metadata = read_metadata(path)
    tensors = load_file(str(path), device="cpu")
    by_role: dict[str, dict[str, torch.Tensor]] = {role: {} for role in metadata.networks}
    for key, tensor in tensors.items():
        role, _, name = key.partition(".")
        if role not in by_role:
            raise CheckpointError(f"{path}: tensor {key!r} belongs to no network of the metadata")
        by_role[role][name] = tensor
    modules = {}
    for role, state in by_role.items():
        try:
            check_finite(role, state)
            module = _build_checked(role, metadata, {k: v.shape for k, v in state.items()})
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        module.load_state_dict(state)
        modules[role] = module.eval().to(device)
    return modules, metadata


def _build_checked(role: str, metadata: TranslatorMetadata, shapes: Mapping[str, torch.Size]) -> nn.Module:
    """Build ``role`` from its spec and check tensor names/shapes and outputs against it."""
    spec = metadata.networks[role]
    try:
        with torch.device("meta"):  # shapes without memory: a hostile spec allocates nothing
            expected = {k: v.shape for k, v in build_network(spec).state_dict().items()}
    except ValueError as exc:
        raise CheckpointError(f"{role}: {exc}") from exc
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [
        f"{role}.{k} has shape {tuple(shapes[k])}, {spec['arch']} spec needs {tuple(expected[k])}"
        for k in sorted(set(expected) & set(shapes))
        if tuple(shapes[k]) != tuple(expected[k])
    ]
    if missing or unexpected or wrong:
        problems = wrong + [f"missing tensor {role}.{k}" for k in missing[:5]]
        problems += [f"unexpected tensor {role}.{k}" for k in unexpected[:5]]
        more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(f"weights do not match the {role} spec {spec}: " + "; ".join(problems[:4]) + more)
    module = build_network(spec)
    if role == "generator" and ("scale" in metadata.outputs) != getattr(module, "provides_scale", False):
        raise CheckpointError("output 'scale' must be listed exactly when the generator has a scale head")
    return module


def load_foreign_state_dict(src: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A plain tensor state dict from a ``.pth`` via ``torch.load(weights_only=True)``.

    Pickled objects other than tensors and containers are refused before they
    run. Accepts ``{"state_dict": {...}}`` wrappers and DataParallel ``module.``
    prefixes.
    """
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{src}: no such file") from exc
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"refused {src}: not a plain tensor state dict; pickled objects were not executed ({reason})"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{src} holds a {type(obj).__name__}, not a state dict")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{src}: entries {not_tensors[:5]} are not tensors; expected a generator state dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def rename_foreign(state: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Rename a foreign ResNet-generator state dict to ours (module-doc table)."""
    if layout not in LAYOUTS:
        raise CheckpointError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    table = LAYOUTS[layout]
    n_blocks = len({tuple(k.split(".")[:2]) for k in state if ".conv_block." in k})
    renamed = {}
    for name, tensor in state.items():
        parts = name.split(".", 2)
        if len(parts) < 3 or parts[0] not in table or not parts[1].isdigit():
            raise CheckpointError(f"{name!r} is not a parameter of a {layout} ResNet generator")
        prefix, index, rest = parts
        renamed[f"model.{int(index) + table[prefix](n_blocks)}.{rest}"] = tensor
    return renamed


def infer_resnet_spec(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ``resnet`` spec of a state dict in our naming, from its tensor shapes."""
    blocks = {int(k.split(".")[1]) for k in state if ".conv_block." in k}
    n_blocks = len(blocks)
    head = f"model.{FIRST_BLOCK + n_blocks + 7}.weight"
    if "model.1.weight" not in state or head not in state:
        raise CheckpointError(f"not a ResNet generator: missing 'model.1.weight' or {head!r}")
    stem = state["model.1.weight"]
    return {
        "arch": "resnet",
        "in_channels": int(stem.shape[1]),
        "out_channels": int(state[head].shape[0]),
        "ngf": int(stem.shape[0]),
        "n_blocks": n_blocks,
        "dropout": 0.5 if any(".conv_block.6." in k for k in state) else 0.0,
    }


def convert_pth(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    layout: str = "cyclegan",
    metadata: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Convert a foreign ResNet generator ``.pth`` into a translator file.

    ``metadata`` needs ``source`` and ``target``; ``name``, ``method``,
    intensity models, ``slice_axis`` and ``size`` default sensibly (intensity:
    :func:`napari_medtrans.intensity.default_for` the modality).
    """
    state = rename_foreign(load_foreign_state_dict(src), layout)
    spec = infer_resnet_spec(state)
    try:
        source, target = metadata["source"], metadata["target"]
    except KeyError as exc:
        raise CheckpointError(f"convert_pth needs metadata {exc.args[0]!r}") from exc
    info = TranslatorMetadata(
        name=metadata.get("name", Path(dst).name.split(".")[0]),
        method=metadata.get("method", layout),
        source=source,
        target=target,
        networks={"generator": spec},
        source_intensity=metadata.get("source_intensity", default_for(source).to_dict()),
        target_intensity=metadata.get("target_intensity", default_for(target).to_dict()),
        slice_axis=metadata.get("slice_axis", 0),
        size=metadata.get("size", 256),
        context_slices=spec["in_channels"],
        provenance={
            "converted_from": Path(src).name,
            "layout": layout,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    info.validate()
    generator = _build_checked("generator", info, {k: v.shape for k, v in state.items()})
    generator.load_state_dict(state)
    return save_translator(dst, {"generator": generator}, info, overwrite=overwrite)


def update_metadata(path: str | os.PathLike[str], updates: Mapping[str, Any]) -> TranslatorMetadata:
    """Set top-level metadata keys of a translator file in place; the tensor bytes are kept as they are.

    Only the JSON header is rewritten (the safetensors layout: 8-byte header
    length, JSON header, tensor data with offsets relative to its start), and
    the new file replaces the old one atomically. Returns the new metadata.
    """
    path = Path(path)
    read_metadata(path)  # refuse what is not a translator
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + length])
    data = json.loads(header["__metadata__"][METADATA_KEY])
    data.update(updates)
    metadata = TranslatorMetadata.from_dict(data)
    header["__metadata__"][METADATA_KEY] = json.dumps(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the tensor data 8-byte aligned, as safetensors writes it
    atomic_write_bytes(path, len(text).to_bytes(8, "little") + text + blob[8 + length :])
    return metadata
