"""Generalised-Gaussian generator of UGAC (Upadhyay et al., NeurIPS 2021).

A cascade of U-Nets (the reference's ``CasUNet_3head``): every stage after
the first sees the previous output plus the input; the last stage has three
heads, the mean image, 1/α and β of a zero-mean generalised Gaussian
GGD(ε; α, β) ∝ exp(−(|ε|/α)^β) on the residual. The α and β heads are the
reference's two 1×1 convolutions and a ReLU; the mean head ends in tanh like
every generator of this project (the reference's is linear). The body is the
project's instance-norm U-Net (the reference's uses batch norm).

The scale map the viewer shows is the GGD's standard deviation,
σ = α·√(Γ(3/β)/Γ(1/β)) (the paper's aleatoric uncertainty).
"""

from __future__ import annotations

import torch
from torch import nn

from napari_medtrans.nets.unet import UNetBody

ALPHA_EPS = 1e-5
"""Added to the 1/α head (the reference's ``alpha_eps``)."""
BETA_EPS = 0.1
"""Added to the β head (the reference's ``beta_eps``): β ≥ 0.1."""


def ggd_sigma(
    inv_alpha: torch.Tensor, beta: torch.Tensor, alpha_eps: float = ALPHA_EPS, beta_eps: float = BETA_EPS
) -> torch.Tensor:
    """Standard deviation α·√(Γ(3/β)/Γ(1/β)) of GGD(α, β) from the heads' 1/α and β."""
    alpha = 1.0 / (inv_alpha + alpha_eps)
    beta = beta + beta_eps
    return alpha * torch.exp(0.5 * (torch.lgamma(3.0 / beta) - torch.lgamma(1.0 / beta)))


class GGDUNetGenerator(nn.Module):
    """Cascaded U-Nets whose last stage outputs mean, 1/α and β (see the module docstring)."""

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, ngf: int = 64, depth: int = 4, cascade: int = 3
    ) -> None:
        super().__init__()
        if cascade < 1:
            raise ValueError(f"cascade must be ≥ 1, got {cascade}")
        if cascade > 1 and in_channels != out_channels:
            raise ValueError(
                f"a cascade adds the input to each stage: in_channels {in_channels} "
                f"must equal out_channels {out_channels}"
            )
        self.bodies = nn.ModuleList(UNetBody(in_channels, ngf, depth) for _ in range(cascade))
        self.stage_heads = nn.ModuleList(nn.Conv2d(ngf, out_channels, 1) for _ in range(cascade - 1))
        self.mean = nn.Conv2d(ngf, out_channels, 1)
        self.inv_alpha = self._positive_head(ngf)
        self.beta = self._positive_head(ngf)
        self.size_multiple = self.bodies[0].size_multiple
        self.provides_scale = True

    @staticmethod
    def _positive_head(channels: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(channels, 2 * channels, 1), nn.Conv2d(2 * channels, 1, 1), nn.ReLU())

    def forward_ggd(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean image, 1/α (≥ 0) and β (≥ 0), before the loss's ε offsets."""
        y = x
        for stage, head in enumerate(self.stage_heads):
            y = head(self.bodies[stage](y if stage == 0 else y + x))
        features = self.bodies[-1](y if len(self.bodies) == 1 else y + x)
        return torch.tanh(self.mean(features)), self.inv_alpha(features), self.beta(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_ggd(x)[0]

    def forward_with_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and σ map (network units, > 0) from one pass."""
        mean, inv_alpha, beta = self.forward_ggd(x)
        return mean, ggd_sigma(inv_alpha, beta)
