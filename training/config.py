"""Typed training configuration: dataclasses, YAML/JSON files and ``key=value`` overrides.

A config is resolved once, at start-up, from (lowest to highest priority) the
dataclass defaults, the method's defaults, a config file (``--config``), the
fixed command-line flags and ``--set section.key=value`` overrides. The
resolved config is saved to the run directory as ``config.json`` and never
modified by the trainer afterwards (except when ``--resume --iterations N``
extends a run, which is recorded in the log).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class DataConfig:
    """Where the training slices come from and how they are sampled.

    Either ``source``/``target`` folders of volumes (``paired`` matches them by
    file name) or ``phantom`` (an in-memory cohort from
    :func:`napari_medtrans.phantom.generate_cohort`).
    """

    source: str | None = None
    target: str | None = None
    paired: bool = False
    phantom: Literal["paired", "unpaired", "misaligned"] | None = None
    phantom_subjects: int = 6
    phantom_level: int = 3
    phantom_seed: int = 0
    phantom_depth: int = 24
    source_modality: str = "T1"
    target_modality: str = "CT"
    slice_axis: int = 0
    context_slices: int = 1
    size: int = 128
    crop_scale: float = 1.0
    flip: bool = True
    min_foreground: float = 0.1
    val_fraction: float = 0.2
    val_slices: int = 8


@dataclass
class TrainConfig:
    """Everything a run needs; ``model`` holds the method's own options."""

    method: str = "pix2pix"
    run_dir: str = "runs/default"
    iterations: int = 2000
    batch_size: int = 1
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast dtype of the training step: ``auto`` = fp16 with gradient scaling
    on CUDA, fp32 elsewhere; ``bf16`` = bfloat16 autocast on any device (weights
    and optimiser stay float32; fast on CPUs with AMX/AVX-512-BF16); ``fp16``
    needs CUDA. See :func:`training.loop.autocast_dtype`."""
    force_precision: bool = False
    """Train in ``precision`` even where the device only emulates it (bf16 on a CPU without
    AMX/AVX-512-BF16 is many times slower than fp32); without it such a run is refused."""
    log_every: int = 10
    checkpoint_every: int = 200
    preview_every: int = 100
    val_every: int = 0
    name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (what ``config.json`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a (possibly partial) dict; unknown keys raise :class:`ConfigError`.

        A run directory written before ``precision`` existed holds ``amp: true|false``
        instead; it reads as ``precision: auto|fp32`` so that such runs still resume.
        """
        if "amp" in data and "precision" not in data:
            data = {k: v for k, v in data.items() if k != "amp"} | {"precision": "auto" if data["amp"] else "fp32"}
        return _from_dict(cls, data, "")


def _from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"expected one of {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, prefix + key)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check/convert ``value`` against a simple type hint (str, int, float, bool, Literal, Optional)."""
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: {value!r} is not one of {list(args)}")
        return value
    if args and type(None) in args:  # Optional[...] / X | None
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return _coerce(value, rest[0], name)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value  # dict[str, Any] and friends: validated by the method's options


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` (value in YAML syntax) into (path, value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse the value: {exc}") from exc
    if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return key.split("."), value


def set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``data[path[0]][path[1]]… = value``, creating intermediate dicts."""
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``update`` wins); returns a new dict."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def options_from_dict(cls: type, data: dict[str, Any], method: str) -> Any:
    """Build a method's options dataclass, naming the method on unknown keys."""
    try:
        return _from_dict(cls, data, "model.")
    except ConfigError as exc:
        raise ConfigError(f"method {method!r}: {exc}") from exc
