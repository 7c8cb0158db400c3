"""MaskGAN's generator: a ResNet encoder with a content decoder and a mask (attention) decoder.

Phan et al., "Structure-Preserving Synthesis: MaskGAN for Unpaired MR-CT
Translation", MICCAI 2023 (layout of the public code's ``att`` generator,
HieuPhan33/MaskGAN). The shared encoder is CycleGAN's (7×7 stem, two stride-2
convolutions, ``n_blocks`` residual blocks). The content decoder draws
``n_attentions − 1`` candidate images (tanh); the mask decoder draws
``n_attentions`` maps (softmax over maps). The output is the sum of each
candidate times its map plus the input times the last map; the last map is the
one the method supervises with the coarse mask of the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_medtrans.nets.float32 import Float32Conv2d
from napari_medtrans.nets.resnet import ResnetBlock


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(cout), nn.ReLU()]


class MaskGANGenerator(nn.Module):
    """Encoder + content decoder + mask decoder; ``forward`` gives the image, ``forward_with_masks`` also the maps."""

    provides_scale = False
    size_multiple = 4

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, ngf: int = 64, n_blocks: int = 9, n_attentions: int = 5
    ) -> None:
        super().__init__()
        if n_attentions < 2:
            raise ValueError(f"MaskGAN needs n_attentions ≥ 2, got {n_attentions}")
        if in_channels != out_channels:
            raise ValueError(
                f"MaskGAN blends its input into the output: in_channels ({in_channels}) must equal "
                f"out_channels ({out_channels})"
            )
        self.out_channels = out_channels
        self.n_attentions = n_attentions
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            Float32Conv2d(in_channels, ngf, 7),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(),
            nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1),
            nn.InstanceNorm2d(ngf * 2),
            nn.ReLU(),
            nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1),
            nn.InstanceNorm2d(ngf * 4),
            nn.ReLU(),
            *(ResnetBlock(ngf * 4) for _ in range(n_blocks)),
        )
        self.content = nn.Sequential(
            *_up(ngf * 4, ngf * 2),
            *_up(ngf * 2, ngf),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, (n_attentions - 1) * out_channels, 7),
            nn.Tanh(),
        )
        self.masks = nn.Sequential(*_up(ngf * 4, ngf * 2), *_up(ngf * 2, ngf), nn.Conv2d(ngf, n_attentions, 1))

    def forward_with_masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (B, C, H, W), maps (B, n_attentions, H, W) summing to 1; the last one weighs the input)."""
        features = self.encoder(x)
        candidates = self.content(features).unflatten(1, (self.n_attentions - 1, self.out_channels))
        maps = F.softmax(self.masks(features).float(), dim=1).to(candidates.dtype)
        image = (candidates * maps[:, :-1, None]).sum(1) + x.to(candidates.dtype) * maps[:, -1:]
        return image, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_masks(x)[0]
