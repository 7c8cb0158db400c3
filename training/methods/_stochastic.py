"""Shared by the stochastic translators (SynDiff, UNSB): reproducible previews and the weight EMA."""

from __future__ import annotations

import torch
from torch import Tensor, nn

PREVIEW_SEED = 0
"""Seed of the sampling noise of previews and validation (the same noise at every check)."""


def preview_noise(device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with :data:`PREVIEW_SEED`."""
    return torch.Generator(device=device).manual_seed(PREVIEW_SEED)


def translate_sampled(generator: nn.Module, source: Tensor) -> dict[str, Tensor]:
    """One sample of a stochastic generator with the fixed preview noise (validation MAE, previews)."""
    return {"image": generator(source, noise=preview_noise(source.device))}


@torch.no_grad()
def ema_update(average: nn.Module, current: nn.Module, decay: float) -> None:
    """``average ← decay·average + (1 − decay)·current`` over parameters; buffers are copied."""
    for param, value in zip(average.parameters(), current.parameters()):
        param.lerp_(value.detach(), 1.0 - decay)
    for buffer, source in zip(average.buffers(), current.buffers()):
        buffer.copy_(source)
