"""MUNIT's content/style auto-encoders and its stochastic translator.

Huang, Liu, Belongie and Kautz, "Multimodal Unsupervised Image-to-Image
Translation", ECCV 2018. An image splits into a content code c (a spatial
feature map, shared by the domains) and a style code s (a vector of
``style_dim`` = 8 numbers, specific to the domain). The decoder rebuilds an
image from c with adaptive instance norm (AdaIN) in its residual blocks,
whose per-channel mean and standard deviation an MLP computes from s.
Translation A→B decodes A's content with a style drawn from the prior
N(0, I), so one input gives many outputs.

Layout of the paper's appendix, sizes of its reference configuration:
content encoder = 7×7 stem, ``n_down`` (2) stride-2 4×4 convolutions and
``n_res`` (4) residual blocks, all with instance norm; style encoder = 7×7 stem, four stride-2 4×4 convolutions (the
width doubling twice), global average pooling and a 1×1 convolution to s, no
norm; decoder = ``n_res`` AdaIN residual blocks, nearest ×2 upsampling with
5×5 convolutions and layer norm, 7×7 tanh head; MLP of three fully connected
layers of ``mlp_dim`` (256) units. The blocks are those of
:mod:`napari_medtrans.nets.unit`.

:class:`MUNITTranslator` is the exported A→B generator (A's content encoder,
B's decoder and MLP); it follows the stochastic-translator interface:
``stochastic = True``, ``steps`` (1: one decoder pass per sample) and
``forward(x, noise)`` drawing its only randomness, the style code, from the
``torch.Generator`` ``noise``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_medtrans.nets.unit import conv_block, downsampling_stem, residual_blocks, upsampling_head

ADAIN_EPS = 1e-5
"""Added to the variance in AdaIN's instance normalisation (the reference's)."""


def adaptive_instance_norm(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """AdaIN(x) = std · (x − μ(x)) / σ(x) + mean, per sample and channel; ``mean``/``std`` are (B, C)."""
    return F.instance_norm(x, eps=ADAIN_EPS) * std[:, :, None, None] + mean[:, :, None, None]


class AdaINResBlock(nn.Module):
    """Residual block of two reflect-padded 3×3 convolutions, each followed by AdaIN (ReLU after the first)."""

    params_per_channel = 4
    """AdaIN parameters the block takes per channel: mean and std for each of its two norms."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3))
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3))

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mean1, std1, mean2, std2 = params.split(self.dim, dim=1)
        y = F.relu(adaptive_instance_norm(self.conv1(x), mean1, std1))
        return x + adaptive_instance_norm(self.conv2(y), mean2, std2)


class AdaINDecoder(nn.Module):
    """Content code + style code → image: an MLP turns the style into every AdaIN mean and std."""

    def __init__(
        self, dim: int, out_channels: int, n_up: int, n_res: int, style_dim: int = 8, mlp_dim: int = 256
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(AdaINResBlock(dim) for _ in range(n_res))
        self.block_params = [AdaINResBlock.params_per_channel * dim] * n_res
        n_params = sum(self.block_params)
        self.mlp = nn.Sequential(
            nn.Linear(style_dim, mlp_dim),
            nn.ReLU(),
            nn.Linear(mlp_dim, mlp_dim),
            nn.ReLU(),
            nn.Linear(mlp_dim, n_params),
        )
        self.head = nn.Sequential(*upsampling_head(dim, out_channels, n_up))

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        params = self.mlp(style).split(self.block_params, dim=1)
        x = content
        for block, block_params in zip(self.blocks, params):
            x = block(x, block_params)
        return self.head(x)


def content_encoder(in_channels: int, ngf: int, n_down: int, n_res: int) -> nn.Sequential:
    """Stem, ``n_down`` down-samplings and ``n_res`` residual blocks, all with instance norm."""
    return nn.Sequential(*downsampling_stem(in_channels, ngf, n_down), *residual_blocks(ngf * 2**n_down, n_res))


class StyleEncoder(nn.Module):
    """Image → style code (B, ``style_dim``): convolutions without norm, global average pooling, 1×1 convolution."""

    def __init__(self, in_channels: int, ngf: int, style_dim: int = 8, n_down: int = 4) -> None:
        super().__init__()
        layers = downsampling_stem(in_channels, ngf, min(n_down, 2), norm="none")
        width = ngf * 2 ** min(n_down, 2)
        for _ in range(n_down - 2):
            layers += conv_block(width, width, 4, 2, norm="none")
        self.features = nn.Sequential(*layers)
        self.code = nn.Conv2d(width, style_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(F.adaptive_avg_pool2d(self.features(x), 1)).flatten(1)


def check_munit_sizes(n_down: int, n_res: int, style_dim: int) -> None:
    """Refuse sizes the MUNIT networks cannot have."""
    if n_down < 0 or n_res < 1 or style_dim < 1:
        raise ValueError(f"MUNIT needs n_down ≥ 0, n_res ≥ 1, style_dim ≥ 1; got {n_down}, {n_res}, {style_dim}")


class MUNITAutoencoder(nn.Module):
    """One domain's content encoder, style encoder and AdaIN decoder (the reference's ``AdaINGen``)."""

    def __init__(
        self,
        channels: int = 1,
        ngf: int = 64,
        n_down: int = 2,
        n_res: int = 4,
        style_dim: int = 8,
        mlp_dim: int = 256,
        n_style_down: int = 4,
    ) -> None:
        super().__init__()
        check_munit_sizes(n_down, n_res, style_dim)
        self.style_dim = style_dim
        self.size_multiple = 2**n_down
        self.content = content_encoder(channels, ngf, n_down, n_res)
        self.style = StyleEncoder(channels, ngf, style_dim, n_style_down)
        self.decoder = AdaINDecoder(ngf * 2**n_down, channels, n_down, n_res, style_dim, mlp_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content code, style code) of an image batch."""
        return self.content(x), self.style(x)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.decoder(content, style)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Within-domain reconstruction."""
        return self.decode(*self.encode(x))


class MUNITTranslator(nn.Module):
    """A→B with a style code drawn from N(0, I): A's content encoder, B's AdaIN decoder."""

    stochastic = True
    steps = 1
    """Network passes per sample (one decoder pass)."""
    provides_scale = False

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_down: int = 2,
        n_res: int = 4,
        style_dim: int = 8,
        mlp_dim: int = 256,
        stochastic: bool = True,
    ) -> None:
        super().__init__()
        if not stochastic:
            raise ValueError("the MUNIT translator samples its style code: its spec must say stochastic=true")
        check_munit_sizes(n_down, n_res, style_dim)
        self.style_dim = style_dim
        self.size_multiple = 2**n_down
        self.content = content_encoder(in_channels, ngf, n_down, n_res)
        self.decoder = AdaINDecoder(ngf * 2**n_down, out_channels, n_down, n_res, style_dim, mlp_dim)

    def sample_style(self, batch: int, like: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        """Style codes (``batch``, ``style_dim``) from N(0, I), drawn from ``noise`` (global RNG if None)."""
        return torch.randn(batch, self.style_dim, generator=noise, device=like.device, dtype=like.dtype)

    def forward(self, x: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        return self.decoder(self.content(x), self.sample_style(x.shape[0], x, noise))


def munit_translator(source: MUNITAutoencoder, target: MUNITAutoencoder, spec: dict) -> MUNITTranslator:
    """The A→B translator of ``spec`` sharing the parameters of ``source`` (content) and ``target`` (decoder)."""
    with torch.device("meta"):
        translator = MUNITTranslator(**{k: v for k, v in spec.items() if k != "arch"})
    translator.content = source.content
    translator.decoder = target.decoder
    return translator
