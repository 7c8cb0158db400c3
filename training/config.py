"""Resolving a training configuration: YAML/JSON files and ``key=value`` overrides.

The configuration dataclasses (:class:`TrainConfig`, :class:`DataConfig`) are
part of the GUI↔trainer contract and live in :mod:`napari_medtrans.contract`.

A config is resolved once, at start-up, from (lowest to highest priority) the
dataclass defaults, the method's defaults, a config file (``--config``), the
fixed command-line flags and ``--set section.key=value`` overrides. The
resolved config is saved to the run directory as ``config.json`` and never
modified by the trainer afterwards (except when ``--resume --iterations N``
extends a run, which is recorded in the log).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from napari_medtrans.contract import ConfigError, DataConfig, TrainConfig, from_dict

__all__ = [
    "ConfigError",
    "DataConfig",
    "TrainConfig",
    "load_config_file",
    "merge",
    "options_from_dict",
    "parse_override",
    "set_path",
]


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
    if isinstance(value, str) and not raw.strip().startswith(("'", '"')):  # YAML 1.1 reads 1e-4 as a string
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
        return from_dict(cls, data, "model.")
    except ConfigError as exc:
        raise ConfigError(f"method {method!r}: {exc}") from exc
