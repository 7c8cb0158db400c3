"""NICE-GAN networks: the discriminator's first layers are the generator's encoder.

Chen et al., "Reusing Discriminators for Encoding: Towards Unsupervised
Image-to-Image Translation", CVPR 2020 (layout of the public code,
alpc91/NICE-GAN-pytorch). :class:`NICEEncoder` (two spectral-normalised
stride-2 convolutions and the class-activation-map block) lives inside
:class:`NICEDiscriminator`, whose two heads score local and global patches
(the multi-scale discriminator) next to the CAM logit. :class:`NICEDecoder` is
the translator proper: an ILN bottleneck, AdaILN residual blocks whose γ, β
come from fully connected layers (on the flattened features; ``light``: on
their global average) and a pixel-shuffle up-sampler.
:class:`NICETranslator` = encoder + decoder is what a translator file holds.

Without ``light`` the γ/β layers see the features at the training size; at
another size the features are average-pooled to it first (identity at the
training size), so the exported translator runs on any slice size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from napari_medtrans.nets.float32 import Float32Conv2d

#: Down-sampling factor of the encoder (its output is at 1/4 of the input size).
ENCODER_STRIDE = 4


def _sn_conv(cin: int, cout: int, stride: int, *, first: bool = False) -> list[nn.Module]:
    """Reflect-pad 1, spectral-normalised 4×4 convolution, LeakyReLU 0.2."""
    conv = (Float32Conv2d if first else nn.Conv2d)(cin, cout, 4, stride=stride, bias=True)
    return [nn.ReflectionPad2d(1), spectral_norm(conv), nn.LeakyReLU(0.2)]


class NICEEncoder(nn.Module):
    """Two stride-2 convolutions and the CAM block → features z (2·ndf, H/4, W/4) and the CAM logit."""

    def __init__(self, in_channels: int = 1, ndf: int = 64) -> None:
        super().__init__()
        self.model = nn.Sequential(*_sn_conv(in_channels, ndf, 2, first=True), *_sn_conv(ndf, ndf * 2, 2))
        self.fc = spectral_norm(nn.Linear(ndf * 4, 1, bias=False))
        self.conv1x1 = nn.Conv2d(ndf * 4, ndf * 2, 1)
        self.lamda = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model(x)
        pooled = torch.cat([F.adaptive_avg_pool2d(features, 1), F.adaptive_max_pool2d(features, 1)], 1)
        cam_logit = self.fc(pooled.flatten(1))
        # The reference weighs the features with the CAM layer's raw (not normalised) weight.
        raw_weight: torch.Tensor = self.fc.weight_orig  # type: ignore[assignment]
        weighted = torch.cat([features, features], 1) * raw_weight[:, :, None, None]
        z = F.leaky_relu(self.lamda * self.conv1x1(weighted) + features, 0.2)
        return z, cam_logit


class NICEDiscriminator(nn.Module):
    """Encoder + local head (70×70 receptive field at ``n_layers=7``) + global head + CAM logit.

    ``forward`` returns (local scores, global scores, CAM logit, z).
    """

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 7) -> None:
        super().__init__()
        if n_layers < 6:
            raise ValueError(f"NICE-GAN discriminators need n_layers ≥ 6, got {n_layers}")
        self.n_layers = n_layers
        self.encoder = NICEEncoder(in_channels, ndf)
        local_down = [m for i in range(2, n_layers - 4) for m in _sn_conv(ndf * 2 ** (i - 1), ndf * 2**i, 2)]
        self.local_down = nn.Sequential(*local_down)
        width = ndf * 2 ** (n_layers - 5)
        self.local_head = nn.Sequential(
            *_sn_conv(width, width * 2, 1), nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(width * 2, 1, 4, bias=False))
        )
        global_down = [
            m for i in range(n_layers - 4, n_layers - 2) for m in _sn_conv(ndf * 2 ** (i - 1), ndf * 2**i, 2)
        ]
        self.global_down = nn.Sequential(*global_down)
        width = ndf * 2 ** (n_layers - 3)
        self.global_head = nn.Sequential(
            *_sn_conv(width, width * 2, 1), nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(width * 2, 1, 4, bias=False))
        )

    def min_size(self) -> int:
        """Smallest input side the global head accepts (two 4×4 valid-after-padding layers need 3 pixels)."""
        return 3 * 2 ** (self.n_layers - 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size():
            raise ValueError(
                f"NICE-GAN's global discriminator head needs slices of at least {self.min_size()} px "
                f"with n_dis={self.n_layers}, got {tuple(x.shape[-2:])}; use a larger --size or a smaller n_dis"
            )
        z, cam_logit = self.encoder(x)
        local = self.local_down(z)
        return self.local_head(local), self.global_head(self.global_down(local)), cam_logit, z

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(local, global, CAM) scores only."""
        return self.forward(x)[:3]


class ILN(nn.Module):
    """Instance-layer normalisation: a learned softmax mix of instance and layer norm, affine γ, β.

    With ``adaptive`` (AdaILN) γ and β come from the caller instead.
    """

    def __init__(self, channels: int, adaptive: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.tensor([3.2, 1.0] if adaptive else [1.0, 3.2]).repeat(1, channels, 1))
        if not adaptive:
            self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
            self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        inst = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), keepdim=True) + self.eps)
        layer = (x - x.mean((1, 2, 3), keepdim=True)) / torch.sqrt(x.var((1, 2, 3), keepdim=True) + self.eps)
        rho = torch.softmax(self.rho, 2)
        return rho[..., 0, None, None] * inst + rho[..., 1, None, None] * layer

    def forward(
        self, x: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None
    ) -> torch.Tensor:
        if gamma is None or beta is None:
            gamma, beta = self.gamma, self.beta
        else:
            gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]
        return self.normalise(x) * gamma + beta


class AdaILNBlock(nn.Module):
    """Residual block of two 3×3 convolutions with AdaILN (γ, β from the decoder's FC layers)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, bias=False)
        self.norm1 = ILN(dim, adaptive=True)
        self.conv2 = nn.Conv2d(dim, dim, 3, bias=False)
        self.norm2 = ILN(dim, adaptive=True)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect")), gamma, beta))
        return x + self.norm2(self.conv2(F.pad(out, (1, 1, 1, 1), mode="reflect")), gamma, beta)


class NICEDecoder(nn.Module):
    """NICE-GAN's generator: encoder features → image (ILN, AdaILN blocks, pixel shuffle ×4, tanh)."""

    def __init__(
        self,
        in_channels: int = 128,
        out_channels: int = 1,
        ngf: int = 64,
        n_blocks: int = 6,
        img_size: int = 256,
        light: bool = False,
    ) -> None:
        super().__init__()
        dim = ngf * 4
        self.light = light
        self.feature_size = img_size // ENCODER_STRIDE
        self.bottleneck = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, dim, 3), ILN(dim), nn.ReLU())
        fc_in = dim if light else self.feature_size**2 * dim
        self.fc = nn.Sequential(
            nn.Linear(fc_in, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.ReLU()
        )
        self.gamma = nn.Linear(dim, dim, bias=False)
        self.beta = nn.Linear(dim, dim, bias=False)
        self.blocks = nn.ModuleList(AdaILNBlock(dim) for _ in range(n_blocks))
        up: list[nn.Module] = []
        for mult in (4, 2):
            width = ngf * mult // 2
            up += [
                nn.ReflectionPad2d(1),
                nn.Conv2d(ngf * mult, width, 3, bias=False),
                ILN(width),
                nn.ReLU(),
                nn.Conv2d(width, width * 4, 1),
                nn.PixelShuffle(2),
                ILN(width),
                nn.ReLU(),
            ]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7, bias=False), nn.Tanh()]
        self.up = nn.Sequential(*up)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck(z)
        if self.light:
            summary = F.adaptive_avg_pool2d(x, 1).flatten(1)
        else:
            at_size = x if x.shape[-2:] == (self.feature_size,) * 2 else F.adaptive_avg_pool2d(x, self.feature_size)
            summary = at_size.flatten(1)
        h = self.fc(summary)
        gamma, beta = self.gamma(h), self.beta(h)
        for block in self.blocks:
            x = block(x, gamma, beta)
        return self.up(x)


class NICETranslator(nn.Module):
    """What a NICE-GAN translator file holds: the source discriminator's encoder + the A→B decoder."""

    provides_scale = False
    size_multiple = ENCODER_STRIDE

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ndf: int = 64,
        ngf: int = 64,
        n_blocks: int = 6,
        img_size: int = 256,
        light: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = NICEEncoder(in_channels, ndf)
        self.decoder = NICEDecoder(ndf * 2, out_channels, ngf, n_blocks, img_size, light)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)[0])
