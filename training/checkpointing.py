"""Training checkpoints: safetensors tensors + JSON metadata, never pickle.

One file holds everything needed to resume bit-for-bit in the same setting:

- ``net.<network>.<parameter>``: every network's state dict;
- ``optim.<optimiser>.<param index>.<key>``: optimiser state tensors (Adam's
  moments and step), with the param groups and any scalar state as JSON;
- ``extra.<name>``: method state such as CycleGAN's image pools;
- ``rank<r>.extra.<name>`` / ``rank<r>.rng.<kind>``: the same per-rank state of
  rank r ≥ 1 of a distributed run (its RNG and sampler state as JSON under
  ``ranks``), so that every rank resumes its own streams and pools;
- ``rng.torch`` / ``rng.cuda.<i>`` / ``rng.numpy`` / ``rng.method``: RNG states as
  tensors; Python's ``random`` state, the data sampler's state, the grad scaler
  state, the iteration, the best validation score and the resolved config as
  JSON under the ``medtrans_training`` header key.

Files are written atomically (:func:`napari_medtrans.rundir.atomic_write_bytes`).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from napari_medtrans.rundir import atomic_write_bytes

HEADER_KEY = "medtrans_training"
FORMAT_VERSION = 1


class TrainingCheckpointError(ValueError):
    """A training checkpoint that cannot be read or does not fit the run."""


def _optimizer_state(name: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    sd = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{name}.{index}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(
    name: str, optimizer: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[field] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise TrainingCheckpointError(f"optimiser {name!r} does not fit this run: {exc}") from exc


def rng_state(method_generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Global RNG states (torch, CUDA, numpy, Python) + the method generator's."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    if method_generator is not None:
        tensors["rng.method"] = method_generator.get_state()
    version, internal, gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(internal), gauss]}
    return tensors, meta


def set_rng_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], method_generator: torch.Generator | None
) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    if method_generator is not None and "rng.method" in tensors:
        method_generator.set_state(tensors["rng.method"])


RankState = tuple[dict[str, torch.Tensor], dict[str, Any]]
"""One rank's own state: tensors (``extra.*``, ``rng.*``) and JSON (RNG and sampler state)."""


def rank_state(method: Any, sampler_state: dict[str, Any], method_generator: torch.Generator | None) -> RankState:
    """This process's RNG streams, data-sampler state and method state (image pools)."""
    tensors = {f"extra.{key}": value.detach().to("cpu").contiguous() for key, value in method.extra_state().items()}
    rng_tensors, rng_meta = rng_state(method_generator)
    tensors.update(rng_tensors)
    return tensors, {**rng_meta, "sampler": sampler_state}


def checkpoint_bytes(
    *,
    method: Any,
    scaler: torch.amp.GradScaler,
    sampler_state: dict[str, Any],
    iteration: int,
    config: dict[str, Any],
    best: float | None,
    method_generator: torch.Generator | None,
    elapsed: float,
    other_ranks: list[RankState] | None = None,
) -> bytes:
    """Serialise the full training state to safetensors bytes (``other_ranks``: the
    :func:`rank_state` of ranks 1, 2, … of a distributed run).
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, net in method.nets.items():
        for key, value in net.state_dict().items():
            tensors[f"net.{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    optim_meta = {name: _optimizer_state(name, opt, tensors) for name, opt in method.optimizers.items()}
    own_tensors, rng_meta = rank_state(method, sampler_state, method_generator)
    tensors.update(own_tensors)
    ranks_meta = {}
    for rank, (rank_tensors, rank_meta) in enumerate(other_ranks or [], start=1):
        tensors.update({f"rank{rank}.{key}": value for key, value in rank_tensors.items()})
        ranks_meta[str(rank)] = rank_meta
    meta = {
        "format": FORMAT_VERSION,
        "method": method.name,
        "iteration": int(iteration),
        "best": best,
        "elapsed": float(elapsed),
        "saved_at": time.time(),
        "config": config,
        "optimizers": optim_meta,
        "scaler": scaler.state_dict(),
        "rng": rng_meta,
        "ranks": ranks_meta,
    }
    return save_tensors(tensors, metadata={HEADER_KEY: json.dumps(meta)})


def save_checkpoint(path: str | os.PathLike[str], data: bytes) -> None:
    """Write checkpoint bytes atomically."""
    atomic_write_bytes(path, data)


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a training checkpoint (header only)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise TrainingCheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if HEADER_KEY not in header:
        raise TrainingCheckpointError(f"{path}: no {HEADER_KEY!r} metadata; not a training checkpoint")
    meta = json.loads(header[HEADER_KEY])
    if meta.get("format", 0) > FORMAT_VERSION:
        raise TrainingCheckpointError(f"{path}: checkpoint format {meta['format']} is newer than this version")
    return meta


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    method: Any,
    scaler: torch.amp.GradScaler,
    method_generator: torch.Generator | None,
    rank: int = 0,
) -> dict[str, Any]:
    """Restore networks, optimisers, scaler, and this rank's method state and RNGs; return
    the metadata, whose ``rng`` is this rank's (None for a rank ≥ 1 the checkpoint has no
    state of: it then starts with empty method state and leaves its RNGs alone).
    """
    path = Path(path)
    meta = read_checkpoint_metadata(path)
    if meta["method"] != method.name:
        raise TrainingCheckpointError(f"{path} was written by method {meta['method']!r}, not {method.name!r}")
    try:
        tensors = load_tensors(path.read_bytes())
    except (SafetensorError, OSError) as exc:
        raise TrainingCheckpointError(f"{path}: cannot read tensors ({exc})") from exc
    for name, net in method.nets.items():
        prefix = f"net.{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise TrainingCheckpointError(f"{path}: network {name!r} does not match: {exc}") from exc
    for name, optimizer in method.optimizers.items():
        if name not in meta["optimizers"]:
            raise TrainingCheckpointError(f"{path}: no state for optimiser {name!r}")
        _load_optimizer(name, optimizer, meta["optimizers"][name], tensors)
    if rank > 0:
        own = f"rank{rank}."
        tensors = {k[len(own) :]: v for k, v in tensors.items() if k.startswith(own)}
        meta["rng"] = meta.get("ranks", {}).get(str(rank))
    method.load_extra_state({k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")})
    if meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if meta["rng"] is not None:
        set_rng_state(tensors, meta["rng"], method_generator)
    return meta


def init_from_translator(method: Any, path: str | os.PathLike[str], source_intensity: dict[str, Any]) -> None:
    """Load the weights of translator file ``path`` (safetensors) into ``method``'s translator networks.

    The file must hold the same networks with the same specs and the same source normalisation as this
    run (``TrainConfig.init``: fine-tuning); only weights are taken, the optimisers start fresh.
    Raises :class:`~training.config.ConfigError` naming the file and what differs.
    """
    from napari_medtrans.checkpoint import CheckpointError, load_modules
    from training.config import ConfigError

    try:
        modules, metadata = load_modules(path)
    except CheckpointError as exc:
        raise ConfigError(f"init: {exc}") from exc
    own, specs = method.translator_modules(), method.translator_specs()
    if set(modules) != set(own):
        raise ConfigError(f"init: {path} holds the networks {sorted(modules)}, this run trains {sorted(own)}")
    for role in modules:
        if metadata.networks[role] != specs[role]:
            raise ConfigError(f"init: {path}'s {role} is {metadata.networks[role]}, this run builds {specs[role]}")
    if metadata.source_intensity.get("kind") != source_intensity.get("kind"):
        raise ConfigError(
            f"init: {path} normalises its source by {metadata.source_intensity.get('kind')!r}, this run by "
            f"{source_intensity.get('kind')!r} (set data.source_intensity to match)"
        )
    for role, module in modules.items():
        own[role].load_state_dict(module.state_dict())
