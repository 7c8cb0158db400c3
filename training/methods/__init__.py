"""Translation methods, one module each, registered by name in :data:`REGISTRY`.

Importing this package imports every module in it (discovery, like the CLI's
subcommands), so adding a method never edits a dispatcher.
"""

from __future__ import annotations

import importlib
import pkgutil

from training.methods.base import REGISTRY, GeneratorOptions, Method, StepContext, register

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in ("base",) and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (ValueError listing the known ones)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["REGISTRY", "GeneratorOptions", "Method", "StepContext", "get_method", "register"]
