"""Multi-scale discriminator of UNIT and MUNIT.

Wang et al.'s pix2pixHD idea in the form of the UNIT/MUNIT reference code
(``MsImageDis``, the paper appendices: "multi-scale discriminators with 3
scales"): ``num_scales`` identical patch discriminators, the first on the
image, each further one on the previous input average-pooled by 2 (3×3
window, stride 2, padding not counted). Each has ``n_layers`` reflect-padded
stride-2 4×4 convolutions (the width doubling from ``ndf``), LeakyReLU 0.2,
no norm, and a 1×1 convolution to one score per patch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from napari_medtrans.nets.unit import conv_block


class MultiScaleDiscriminator(nn.Module):
    """``forward`` returns one score map per scale, finest first."""

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 4, num_scales: int = 3) -> None:
        super().__init__()
        if n_layers < 1 or num_scales < 1:
            raise ValueError(f"n_layers and num_scales must be ≥ 1, got {n_layers} and {num_scales}")
        self.n_layers, self.num_scales = n_layers, num_scales
        self.scales = nn.ModuleList(self._patch_net(in_channels, ndf, n_layers) for _ in range(num_scales))

    @staticmethod
    def _patch_net(in_channels: int, ndf: int, n_layers: int) -> nn.Sequential:
        layers = conv_block(in_channels, ndf, 4, 2, norm="none", activation="lrelu")
        for level in range(n_layers - 1):
            layers += conv_block(ndf * 2**level, ndf * 2 ** (level + 1), 4, 2, norm="none", activation="lrelu")
        return nn.Sequential(*layers, nn.Conv2d(ndf * 2 ** (n_layers - 1), 1, 1))

    @property
    def min_size(self) -> int:
        """Smallest image side every scale can take (each stride-2 layer needs at least 2 pixels)."""
        return 2 ** (self.n_layers + self.num_scales - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"the multi-scale discriminator ({self.num_scales} scales of {self.n_layers} layers) needs images "
                f"of at least {self.min_size}² pixels, got {tuple(x.shape[-2:])}; lower num_scales or n_layers_d"
            )
        return [net(level) for net, level in zip(self.scales, pyramid(x, self.num_scales))]


def pyramid(x: torch.Tensor, levels: int) -> Iterator[torch.Tensor]:
    """``x`` and its copies average-pooled by 2 again and again (3×3, stride 2, padding not counted), finest first."""
    for level in range(levels):
        if level:
            x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        yield x
