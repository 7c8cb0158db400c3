"""SPADE: spatially-adaptive normalisation, its generator and the multi-scale discriminator.

Park et al., "Semantic Image Synthesis with Spatially-Adaptive Normalization",
CVPR 2019 (layout of the public code, NVlabs/SPADE). :class:`SPADE`
normalises its input without affine parameters and modulates it with
γ(m), β(m) predicted from the label map m by a shared 3×3 convolution (128
filters, ReLU) and two 3×3 convolutions: ``norm(x) · (1 + γ) + β``.
:class:`SPADEGenerator` starts from the down-sampled label map, widens it to
16·ngf channels and up-samples through SPADE residual blocks (spectral norm on
their convolutions) to a tanh image; with ``n_up=5`` and ``ngf=64`` it is the
paper's generator ("normal" up-sampling: 16, 16, 16, 8, 4, 2, 1 × ngf).

Input convention (what the inference engine feeds): (B, k + K, H, W) = k
source-image channels followed by the one-hot label map of K classes
(``label_classes`` in the network spec says a translator needs labels). The
paper's generator sees the labels only; ``use_image`` adds the image channels to
the map that enters the first layer and every SPADE layer.

:class:`SPADEDiscriminator` (multi-scale): ``num_d`` PatchGAN discriminators (4×4
convolutions, padding 2, spectral + instance norm, ``n_layers`` layers) on the
image pyramid (3×3 average pooling, stride 2); each returns its intermediate
features for the feature-matching loss.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from napari_medtrans.nets.multiscale import pyramid

#: Parameter-free normalisations SPADE may modulate (the paper: synchronised batch norm).
SPADE_NORMS = {"batch": lambda c: nn.BatchNorm2d(c, affine=False), "instance": lambda c: nn.InstanceNorm2d(c)}


class SPADE(nn.Module):
    """``norm(x) · (1 + γ(m)) + β(m)`` with γ, β convolved from the label map m (resized to x)."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128, norm: str = "batch") -> None:
        super().__init__()
        if norm not in SPADE_NORMS:
            raise ValueError(f"SPADE norm must be one of {sorted(SPADE_NORMS)}, got {norm!r}")
        self.norm = SPADE_NORMS[norm](channels)
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def modulation(self, labels: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, β) of the label map resized (nearest) to ``size``."""
        hidden = self.shared(F.interpolate(labels, size=size, mode="nearest"))
        return self.gamma(hidden), self.beta(hidden)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.modulation(labels, tuple(x.shape[-2:]))  # type: ignore[arg-type]
        return self.norm(x) * (1 + gamma) + beta


class SPADEResBlock(nn.Module):
    """SPADE → LeakyReLU → 3×3 conv, twice, plus a (learned where widths differ) shortcut."""

    def __init__(self, fin: int, fout: int, label_channels: int, hidden: int = 128, norm: str = "batch") -> None:
        super().__init__()
        middle = min(fin, fout)
        self.norm_0 = SPADE(fin, label_channels, hidden, norm)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, middle, 3, padding=1))
        self.norm_1 = SPADE(middle, label_channels, hidden, norm)
        self.conv_1 = spectral_norm(nn.Conv2d(middle, fout, 3, padding=1))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_channels, hidden, norm)
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, labels)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, labels), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, labels), 0.2))
        return shortcut + dx


class SPADEGenerator(nn.Module):
    """Label map (+ optionally the image) → image through SPADE residual blocks and ``n_up`` up-samplings."""

    provides_scale = False

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        label_classes: int = 10,
        ngf: int = 64,
        n_up: int = 5,
        hidden: int = 128,
        norm: str = "batch",
        use_image: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= n_up <= 5:
            raise ValueError(f"SPADE n_up must lie in 1…5, got {n_up}")
        if label_classes < 1:
            raise ValueError(f"SPADE needs label_classes ≥ 1, got {label_classes}")
        self.in_channels = in_channels
        self.label_classes = label_classes
        self.use_image = use_image
        self.n_up = n_up
        self.size_multiple = 2**n_up
        cond = label_classes + (in_channels if use_image else 0)
        top = 16 * ngf
        self.fc = nn.Conv2d(cond, top, 3, padding=1)
        self.head_0 = SPADEResBlock(top, top, cond, hidden, norm)
        self.middle_0 = SPADEResBlock(top, top, cond, hidden, norm)
        self.middle_1 = SPADEResBlock(top, top, cond, hidden, norm)
        widths = [top // 2**i for i in range(n_up)]
        self.up_blocks = nn.ModuleList(
            SPADEResBlock(cin, cout, cond, hidden, norm) for cin, cout in itertools.pairwise(widths)
        )
        self.conv_img = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """The map the generator is conditioned on: the one-hot labels (and the image with ``use_image``)."""
        if x.shape[1] != self.in_channels + self.label_classes:
            raise ValueError(
                f"SPADE input needs {self.in_channels} image + {self.label_classes} one-hot label channels, "
                f"got {x.shape[1]}"
            )
        return x.float() if self.use_image else x[:, self.in_channels :].float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cond = self.condition(x)
        height, width = x.shape[-2:]
        if (height // self.size_multiple) * (width // self.size_multiple) < 2:
            raise ValueError(
                f"SPADE with n_up={self.n_up} starts at 1/{self.size_multiple} of the slice; {height}×{width} leaves "
                f"fewer than 2 pixels to normalise: use slices of at least {2 * self.size_multiple} px or a smaller n_up"
            )
        h = self.fc(F.interpolate(cond, size=(height // self.size_multiple, width // self.size_multiple)))
        h = self.head_0(h, cond)
        h = self.middle_0(F.interpolate(h, scale_factor=2), cond)
        h = self.middle_1(h, cond)
        for block in self.up_blocks:
            h = block(F.interpolate(h, scale_factor=2), cond)
        return torch.tanh(self.conv_img(F.leaky_relu(h, 0.2)))


class NLayerDiscriminator(nn.Module):
    """SPADE's PatchGAN: 4×4 convolutions (padding 2), spectral + instance norm; returns every layer's output."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4) -> None:
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        width = ndf
        for n in range(1, n_layers):
            out = min(width * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(
                nn.Sequential(
                    spectral_norm(nn.Conv2d(width, out, 4, stride=stride, padding=2, bias=False)),
                    nn.InstanceNorm2d(out),
                    nn.LeakyReLU(0.2),
                )
            )
            width = out
        layers.append(nn.Sequential(nn.Conv2d(width, 1, 4, padding=2)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class SPADEDiscriminator(nn.Module):
    """``num_d`` :class:`NLayerDiscriminator` on the input and its 2×, 4×… average-pooled copies."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2) -> None:
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(in_channels, ndf, n_layers) for _ in range(num_d))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale, the list of layer outputs (the last one is the score map)."""
        return [scale(level) for scale, level in zip(self.scales, pyramid(x, len(self.scales)))]
