"""Residual-encoder U-Net in the nnU-Net style, 2-D or 3-D, with deep-supervision heads.

Isensee et al., "nnU-Net: a self-configuring method for deep learning-based
biomedical image segmentation", Nature Methods 2021, and "nnU-Net Revisited"
(MICCAI 2024, the residual encoder): stages of residual blocks (3×3 conv →
instance norm (affine) → leaky ReLU (slope 0.01) → 3×3 conv → instance norm,
plus the input, then leaky ReLU; a 1×1 conv + norm on the skip path where the
shape changes), the first block of each deeper stage downsampling by a
stride-2 convolution, widths doubling up to ``max_features``, a decoder of
transposed convolutions and one plain conv block per stage, and a 1×1 output
head at every decoder stage for deep supervision. The paired-regression
winners of SynthRAD2023/2025 use this network with an image output.

Project conventions (differences from nnU-Net's segmentation network): the
full-resolution head is a ``head_kernel``³/² convolution with reflect padding
(7 by default, see :class:`~napari_medtrans.nets.unet.UNetGenerator` on why a
1×1 head behind instance norm learns the output level slowly) and every image
head ends in tanh (the intensity range of every generator); an optional
softplus scale head gives a Laplace σ map (``forward_with_scale``); the input
convolution computes in float32 under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_medtrans.nets.float32 import Float32Conv2d, Float32Conv3d
from napari_medtrans.nets.unet import SCALE_EPS

NEGATIVE_SLOPE = 0.01
"""nnU-Net's leaky ReLU slope."""

_LAYERS = {
    2: (nn.Conv2d, Float32Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d),
    3: (nn.Conv3d, Float32Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d),
}


def _conv_norm(dims: int, cin: int, cout: int, stride: int = 1, kernel: int = 3, input_layer: bool = False):
    conv, f32conv, _, norm = _LAYERS[dims]
    return [
        (f32conv if input_layer else conv)(cin, cout, kernel, stride=stride, padding=kernel // 2),
        norm(cout, affine=True),
    ]


class ResidualBlock(nn.Module):
    """nnU-Net's ``BasicBlockD``: two conv–norm layers plus the (projected) input, then leaky ReLU."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int = 1, input_layer: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_norm(dims, cin, cout, stride, input_layer=input_layer),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            *_conv_norm(dims, cout, cout),
        )
        needs_projection = stride != 1 or cin != cout
        self.skip = (
            nn.Sequential(*_conv_norm(dims, cin, cout, stride, kernel=1, input_layer=input_layer))
            if needs_projection
            else nn.Identity()
        )
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResUNet(nn.Module):
    """Residual-encoder U-Net regressing an image in [-1, 1] (see the module docstring).

    Args:
        in_channels: input channels (k context slices for 2.5-D).
        out_channels: output channels.
        ngf: widths of the first stage; doubled per stage up to ``max_features``.
        depth: downsampling stages; the input size must be a multiple of ``2 ** depth``.
        encoder_blocks: residual blocks per encoder stage.
        max_features: widest stage (nnU-Net: 512 in 2-D, 320 in 3-D).
        dims: 2 (slices) or 3 (patches).
        scale_head: add a softplus σ head (``forward_with_scale``).
        head_kernel: kernel of the full-resolution heads (odd).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 32,
        depth: int = 5,
        encoder_blocks: int = 2,
        max_features: int = 512,
        dims: int = 2,
        scale_head: bool = False,
        head_kernel: int = 7,
    ) -> None:
        super().__init__()
        if dims not in _LAYERS:
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if depth < 1 or encoder_blocks < 1:
            raise ValueError(f"depth and encoder_blocks must be ≥ 1, got {depth} and {encoder_blocks}")
        if head_kernel < 1 or head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be a positive odd number, got {head_kernel}")
        conv, _, up, _ = _LAYERS[dims]
        widths = [min(ngf * 2**d, max_features) for d in range(depth + 1)]
        self.dims = dims
        self.size_multiple = 2**depth
        self.provides_scale = scale_head
        self.encoders = nn.ModuleList()
        for d, width in enumerate(widths):
            cin = in_channels if d == 0 else widths[d - 1]
            blocks = [ResidualBlock(dims, cin, width, stride=1 if d == 0 else 2, input_layer=d == 0)]
            blocks += [ResidualBlock(dims, width, width) for _ in range(encoder_blocks - 1)]
            self.encoders.append(nn.Sequential(*blocks))
        self.ups = nn.ModuleList(up(widths[d + 1], widths[d], 2, stride=2) for d in range(depth))
        self.decoders = nn.ModuleList(
            nn.Sequential(*_conv_norm(dims, 2 * widths[d], widths[d]), nn.LeakyReLU(NEGATIVE_SLOPE))
            for d in range(depth)
        )
        # deep supervision: 1×1 heads at the decoder stages below full resolution, coarsest excluded (nnU-Net)
        self.deep_heads = nn.ModuleList(conv(widths[d], out_channels, 1) for d in range(1, depth - 1))
        self.head = self._head(conv, ngf, out_channels, head_kernel)
        self.scale = self._head(conv, ngf, out_channels, head_kernel) if scale_head else None

    @staticmethod
    def _head(conv: type[nn.Module], channels: int, out_channels: int, kernel: int) -> nn.Module:
        return conv(channels, out_channels, kernel, padding=kernel // 2, padding_mode="reflect")

    def _decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features, full resolution first."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = skips.pop()
        features = []
        for up, decoder in zip(reversed(self.ups), reversed(self.decoders)):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
            features.append(x)
        return features[::-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self._decode(x)[0]))

    def forward_deep(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs at full resolution, 1/2, 1/4, … (``depth - 1`` of them), for deep supervision."""
        features = self._decode(x)
        return [torch.tanh(self.head(features[0]))] + [
            torch.tanh(head(f)) for head, f in zip(self.deep_heads, features[1:])
        ]

    def forward_with_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and scale map σ (network units, > 0) from one pass."""
        if self.scale is None:
            raise RuntimeError("this ResUNet was built without a scale head (scale_head=False)")
        features = self._decode(x)[0]
        return torch.tanh(self.head(features)), F.softplus(self.scale(features)) + SCALE_EPS
