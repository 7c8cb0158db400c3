"""Torch threading for inference in worker threads of the GUI process."""

from __future__ import annotations

import os
from typing import Any

import torch

from napari_medtrans.inference import Translator


def limit_torch_threads(translator: Translator) -> None:
    """On a CPU, leave one core to the event loop: torch threads = cores − 1 (≥ 1).

    Called in each worker thread before inference (OpenMP settings are per
    thread). Measured here (2 cores, busy machine): one 128² slice took 1.3 s
    with 2 threads competing with the GUI and other processes, 0.1 s with 1.
    """
    if translator.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def call_limited(translator: Translator, method: str, *args: Any, **kwargs: Any) -> Any:
    """``translator.<method>(*args, **kwargs)`` in a worker, after :func:`limit_torch_threads`."""
    limit_torch_threads(translator)
    return getattr(translator, method)(*args, **kwargs)
