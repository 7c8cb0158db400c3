"""ResNet generator of CycleGAN.

Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks", ICCV 2017 (generator after Johnson et al., ECCV 2016):
reflect-pad 7×7 stem, two stride-2 convolutions, ``n_blocks`` residual blocks,
two transposed convolutions, reflect-pad 7×7 head and tanh.

The layers live in one flat ``nn.Sequential`` called ``model`` so that the
parameter names are those of the public CycleGAN code (``model.1.weight``,
``model.10.conv_block.1.weight``…) and CUT's layer ids (``0, 4, 8, 12, 16``)
index the same layers. See :mod:`napari_medtrans.checkpoint` for the mapping
of the RegGAN layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from napari_medtrans.nets.float32 import Float32Conv2d

#: Index of the first residual block inside ``ResnetGenerator.model``.
FIRST_BLOCK = 10


class ResnetBlock(nn.Module):
    """Two reflect-padded 3×3 convolutions with instance norm and a skip.

    With ``dropout > 0`` a dropout layer sits between the two convolutions, as
    in CycleGAN's ``use_dropout`` (the second convolution then is
    ``conv_block.6`` instead of ``conv_block.5``).
    """

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim),
            nn.ReLU(),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def encoder_layers(in_channels: int, ngf: int) -> list[nn.Module]:
    """Reflect-pad 7×7 stem (float32 input convolution) and two stride-2 convolutions (``model`` layers 0–9)."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        Float32Conv2d(in_channels, ngf, 7),
        nn.InstanceNorm2d(ngf),
        nn.ReLU(),
    ]
    for mult in (1, 2):
        layers += [
            nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
            nn.InstanceNorm2d(ngf * mult * 2),
            nn.ReLU(),
        ]
    return layers


def decoder_layers(ngf: int, out_channels: int) -> list[nn.Module]:
    """Two transposed convolutions, reflect-pad 7×7 head and tanh (after the residual blocks)."""
    layers: list[nn.Module] = []
    for mult in (4, 2):
        layers += [
            nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(ngf * mult // 2),
            nn.ReLU(),
        ]
    return [*layers, nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator; ``in_channels = k`` for 2.5D input."""

    provides_scale = False
    size_multiple = 4

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_blocks: int = 9,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        blocks = [ResnetBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        self.model = nn.Sequential(*encoder_layers(in_channels, ngf), *blocks, *decoder_layers(ngf, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor, layer_ids: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the layers ``layer_ids`` of ``model`` (CUT's PatchNCE features).

        Runs only as far as the deepest requested layer.
        """
        wanted = set(layer_ids)
        if not wanted:
            return []
        if max(wanted) >= len(self.model) or min(wanted) < 0:
            raise ValueError(f"layer ids must lie in [0, {len(self.model) - 1}], got {sorted(wanted)}")
        feats = []
        for layer_id, layer in enumerate(self.model):
            x = layer(x)
            if layer_id in wanted:
                feats.append(x)
            if layer_id == max(wanted):
                break
        return feats
