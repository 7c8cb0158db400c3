"""Validation of untrusted translator metadata and weights before anything is built.

A translator file comes from anywhere; its JSON metadata decides which networks
are built and how intensities are mapped. Everything here runs before a
network exists, so a hostile or broken file fails with one clear message
instead of a traceback, a RecursionError, minutes of memory growth or an
all-NaN output:

- the JSON text: at most :data:`MAX_METADATA_BYTES`, nesting at most
  :data:`MAX_NESTING` deep (checked on the raw text, before parsing);
- the fields: types, and integers and floats within :data:`SPEC_BOUNDS`; a 3-D
  ``patch`` of 3 sides within :data:`PATCH_LIMIT`;
  intensity windows finite and within :data:`WINDOW_LIMIT`;
- the network size: :func:`napari_medtrans.checkpoint.load_modules` compares
  the tensor shapes with the spec built on PyTorch's ``meta`` device (no
  memory) before building it for real;
- the weights: finite (no NaN or inf).

Failures raise :class:`napari_medtrans.checkpoint.CheckpointError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

MAX_METADATA_BYTES = 1 << 20
"""Longest metadata JSON text accepted (1 MiB; real ones are a few KiB)."""

MAX_NESTING = 32
"""Deepest nesting of JSON objects/lists accepted (real metadata: 5)."""

SPEC_BOUNDS: dict[str, tuple[float, float]] = {
    "in_channels": (1, 64),
    "out_channels": (1, 64),
    "n_classes": (1, 1024),
    "ngf": (1, 1024),
    "ndf": (1, 1024),
    "nf": (1, 1024),
    "features": (1, 1024),
    "n_blocks": (0, 64),
    "n_layers": (1, 16),
    "depth": (1, 10),
    "head_kernel": (1, 31),
    "dims": (2, 3),
    "dropout": (0.0, 1.0),
}
"""Inclusive bounds of the numeric network hyperparameters (others: :data:`OTHER_INT_LIMIT`)."""

STRING_KEYS = ("arch", "norm")
"""The network hyperparameters that are names; every other one is a number or a flag."""

LIST_KEYS = ("ch_mult", "attn_levels")
"""The network hyperparameters that are short lists of integers (U-Net level multipliers, attention levels)."""

MAX_LIST_LENGTH = 16
"""Longest list a :data:`LIST_KEYS` hyperparameter may hold."""

OTHER_INT_LIMIT = 4096
"""Largest magnitude of a numeric network hyperparameter not named in :data:`SPEC_BOUNDS`."""

WINDOW_LIMIT = 1e7
"""Largest magnitude of an intensity window bound (HU windows are about ±4000)."""

FIELD_BOUNDS: dict[str, tuple[int, int]] = {"slice_axis": (0, 2), "size": (1, 65536), "context_slices": (1, 63)}
"""Inclusive bounds of the integer top-level fields."""

PATCH_LIMIT = 4096
"""Largest side of a 3-D translator's ``patch`` (slices, rows, cols)."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _error(message: str) -> Exception:
    from napari_medtrans.checkpoint import CheckpointError  # checkpoint imports this module

    return CheckpointError(message)


def nesting_depth(text: str) -> int:
    """How deeply objects/lists nest in the JSON ``text`` (strings ignored), without parsing it."""
    brackets = np.frombuffer(_STRING.sub("", text).encode(), dtype=np.uint8)
    steps = np.isin(brackets, (ord("{"), ord("["))).astype(np.int64) - np.isin(brackets, (ord("}"), ord("]")))
    return int(np.cumsum(steps).max(initial=0))


def parse_translator_metadata(text: str) -> dict[str, Any]:
    """Parse and validate the metadata JSON ``text`` of a translator file."""
    if len(text) > MAX_METADATA_BYTES:
        raise _error(f"metadata is {len(text)} bytes long; at most {MAX_METADATA_BYTES} are accepted")
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        raise _error(f"metadata nests {depth} levels deep; at most {MAX_NESTING} are accepted")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _error(f"metadata is not valid JSON ({exc})") from exc
    check_translator_metadata(data)
    return data


def _number(value: Any, where: str, low: float, high: float, *, integer: bool) -> None:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise _error(f"{where} must be {kind}, got {type(value).__name__} {value!r:.60}")
    if not (math.isfinite(value) and low <= value <= high):
        raise _error(f"{where} is {value!r}; it must lie in [{low:g}, {high:g}]")


def _network_spec(role: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        raise _error(f"networks.{role} must be an object, got {type(spec).__name__}")
    if "arch" not in spec:
        raise _error(f"networks.{role} has no 'arch' (the architecture name)")
    for key, value in spec.items():
        where = f"networks.{role}.{key}"
        if key in STRING_KEYS:
            if not isinstance(value, str):
                raise _error(f"{where} must be a string, got {type(value).__name__}")
            continue
        if isinstance(value, bool):
            continue
        if key in LIST_KEYS:
            if not isinstance(value, list) or len(value) > MAX_LIST_LENGTH:
                raise _error(f"{where} must be a list of at most {MAX_LIST_LENGTH} integers, got {value!r:.60}")
            for i, item in enumerate(value):
                _number(item, f"{where}[{i}]", 0, 64, integer=True)
            continue
        low, high = SPEC_BOUNDS.get(key, (-OTHER_INT_LIMIT, OTHER_INT_LIMIT))
        _number(value, where, low, high, integer=not isinstance(value, float) and key != "dropout")


def _intensity(name: str, model: Any) -> None:
    if not isinstance(model, dict):
        raise _error(f"{name} must be an object, got {type(model).__name__}")
    if model.get("kind") not in ("window", "percentile", "median"):
        raise _error(f"{name}.kind must be 'window', 'percentile' or 'median', got {model.get('kind')!r:.60}")
    limit = 100.0 if model["kind"] in ("percentile", "median") else WINDOW_LIMIT
    low = 0.0 if model["kind"] in ("percentile", "median") else -limit
    for key in ("low", "high"):
        _number(model.get(key), f"{name}.{key}", low, limit, integer=False)
    if model.get("reference") is not None:
        reference = model["reference"]
        if not isinstance(reference, dict):
            raise _error(f"{name}.reference must be an object, got {type(reference).__name__}")
        for key in ("lo", "hi"):
            _number(reference.get(key), f"{name}.reference.{key}", -WINDOW_LIMIT, WINDOW_LIMIT, integer=False)


def check_translator_metadata(data: Any) -> None:
    """Check the types and ranges of parsed translator metadata (before any network is built)."""
    if not isinstance(data, dict):
        raise _error(f"metadata must be a JSON object, got {type(data).__name__}")
    for key in ("name", "method", "source", "target"):
        if key in data and not (isinstance(data[key], str) and 0 < len(data[key]) <= 256):
            raise _error(f"metadata field {key!r} must be a string of 1 to 256 characters, got {data[key]!r:.60}")
    if "format" in data:
        _number(data["format"], "format", 0, 1_000_000, integer=True)
    networks = data.get("networks")
    if not isinstance(networks, dict):
        raise _error(f"metadata field 'networks' must be an object, got {type(networks).__name__}")
    for role, spec in networks.items():
        _network_spec(role, spec)
    for name in ("source_intensity", "target_intensity"):
        _intensity(name, data.get(name))
    for key, (low, high) in FIELD_BOUNDS.items():
        if key in data:
            _number(data[key], key, low, high, integer=True)
    patch = data.get("patch")
    if patch is not None:
        if not (isinstance(patch, list) and len(patch) == 3):
            raise _error(f"patch must list 3 sides (slices, rows, cols), got {patch!r:.60}")
        for i, side in enumerate(patch):
            _number(side, f"patch[{i}]", 1, PATCH_LIMIT, integer=True)
    outputs = data.get("outputs", ["image"])
    if not (isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)):
        raise _error(f"outputs must be a list of names, got {outputs!r:.60}")
    if not isinstance(data.get("provenance", {}), dict):
        raise _error(f"provenance must be an object, got {type(data['provenance']).__name__}")


def check_finite(role: str, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or infinite values (they would give an all-NaN output)."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise _error(f"{len(bad)} {role} tensors hold NaN or infinite values (e.g. {bad[0]}); the weights are broken")
