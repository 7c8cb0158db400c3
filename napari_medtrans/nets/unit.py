"""UNIT's coupled VAE generators with a shared latent space, and the blocks MUNIT reuses.

Liu, Breuel and Kautz, "Unsupervised Image-to-Image Translation Networks",
NeurIPS 2017. Each domain has an encoder E and a generator (decoder) G; the
encoders share their last layers and the generators their first layers, so
that both domains map to one latent space Z. The encoder's output is the mean
of q(z|x) = N(E(x), I) (unit variance, as in the paper).

Layout of the reference code's current release (``ContentEncoder`` /
``Decoder``: a reflect-padded 7×7 stem, ``n_down`` stride-2 4×4 convolutions
with instance norm and ReLU, ``n_res`` residual blocks with instance norm; the
decoder mirrors it with nearest-neighbour ×2 upsampling, 5×5 convolutions
with layer norm and a 7×7 tanh head), with the paper's weight sharing
(its first release: ``n_enc_shared_blk`` = ``n_gen_shared_blk`` = 1): the
last ``n_shared`` residual blocks of the encoders and the first ``n_shared``
of the decoders are one module each, ``enc_shared`` and ``dec_shared``.
Layer norm is :class:`torch.nn.GroupNorm` with one group (per sample over
channels and pixels, one affine weight per channel); the reference's own
``LayerNorm`` divides by the unbiased standard deviation plus ε and draws its
affine weight from U(0, 1), ours is initialised like the other affine norms
(:func:`napari_medtrans.nets.init.init_weights`).

:class:`UNITTranslator` holds only E_A, the shared layers and G_B (the A→B
translator a checkpoint stores); :class:`UNITGenerators` adds E_B and G_A for
training. Their parameter names agree, so the translator is a view of the
training networks (:meth:`UNITGenerators.translator`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from napari_medtrans.nets.float32 import Float32Conv2d
from napari_medtrans.nets.resnet import ResnetBlock

_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "instance": nn.InstanceNorm2d,
    "layer": lambda c: nn.GroupNorm(1, c),
    "none": lambda c: nn.Identity(),
}
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "lrelu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "none": nn.Identity,
}


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    norm: str = "instance",
    activation: str = "relu",
    *,
    input_layer: bool = False,
) -> list[nn.Module]:
    """Reflect padding (kernel−1)//2, convolution, norm, activation (the reference's ``Conv2dBlock``).

    ``input_layer``: the convolution runs in float32 under autocast
    (:class:`~napari_medtrans.nets.float32.Float32Conv2d`, the input layer of every generator here).
    """
    conv = Float32Conv2d if input_layer else nn.Conv2d
    return [
        nn.ReflectionPad2d((kernel - 1) // 2),
        conv(in_channels, out_channels, kernel, stride),
        _NORMS[norm](out_channels),
        _ACTIVATIONS[activation](),
    ]


def downsampling_stem(in_channels: int, ngf: int, n_down: int, norm: str = "instance") -> list[nn.Module]:
    """7×7 stem with ``ngf`` filters, then ``n_down`` stride-2 4×4 convolutions doubling the width."""
    layers = conv_block(in_channels, ngf, 7, norm=norm, input_layer=True)
    for level in range(n_down):
        layers += conv_block(ngf * 2**level, ngf * 2 ** (level + 1), 4, 2, norm)
    return layers


def upsampling_head(dim: int, out_channels: int, n_up: int) -> list[nn.Module]:
    """``n_up`` × (nearest ×2, 5×5 convolution halving the width, layer norm, ReLU), then a 7×7 tanh head."""
    layers: list[nn.Module] = []
    for level in range(n_up):
        layers += [nn.Upsample(scale_factor=2, mode="nearest")]
        layers += conv_block(dim // 2**level, dim // 2 ** (level + 1), 5, norm="layer")
    return layers + conv_block(dim // 2**n_up, out_channels, 7, norm="none", activation="tanh")


def residual_blocks(dim: int, count: int) -> nn.Sequential:
    """``count`` residual blocks with instance norm (the reference's ``ResBlocks(…, 'in')``)."""
    return nn.Sequential(*(ResnetBlock(dim) for _ in range(count)))


def check_unit_sizes(n_down: int, n_res: int, n_shared: int) -> None:
    """Refuse depths the UNIT networks cannot have."""
    if n_down < 0 or n_res < 1:
        raise ValueError(f"UNIT needs n_down ≥ 0 and n_res ≥ 1, got n_down={n_down}, n_res={n_res}")
    if not 0 <= n_shared <= n_res:
        raise ValueError(f"n_shared must lie in [0, n_res={n_res}], got {n_shared}")


class UNITTranslator(nn.Module):
    """E_A (private layers + ``enc_shared``), then G_B (``dec_shared`` + private layers): A→B on the latent mean."""

    provides_scale = False

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_down: int = 2,
        n_res: int = 4,
        n_shared: int = 1,
    ) -> None:
        super().__init__()
        check_unit_sizes(n_down, n_res, n_shared)
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "ngf": ngf,
            "n_down": n_down,
            "n_res": n_res,
            "n_shared": n_shared,
        }
        self.dim = ngf * 2**n_down
        self.n_down, self.n_private = n_down, n_res - n_shared
        self.size_multiple = 2**n_down
        self.enc_a = self.private_encoder(in_channels, ngf)
        self.enc_shared = residual_blocks(self.dim, n_shared)
        self.dec_shared = residual_blocks(self.dim, n_shared)
        self.dec_b = self.private_decoder(out_channels)

    def private_encoder(self, channels: int, ngf: int) -> nn.Sequential:
        """A domain's own encoder layers: the stem and its unshared residual blocks."""
        return nn.Sequential(*downsampling_stem(channels, ngf, self.n_down), *residual_blocks(self.dim, self.n_private))

    def private_decoder(self, channels: int) -> nn.Sequential:
        """A domain's own generator layers: its unshared residual blocks and the upsampling head."""
        return nn.Sequential(
            *residual_blocks(self.dim, self.n_private), *upsampling_head(self.dim, channels, self.n_down)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec_b(self.dec_shared(self.enc_shared(self.enc_a(x))))


class UNITGenerators(UNITTranslator):
    """Both VAEs of UNIT: encoders E_A, E_B and generators G_A, G_B around the shared layers.

    Takes the arguments of :class:`UNITTranslator`. ``forward`` is the A→B
    translation (as :class:`UNITTranslator`), so previews and validation see the translator.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enc_b = self.private_encoder(self.config["out_channels"], self.config["ngf"])
        self.dec_a = self.private_decoder(self.config["in_channels"])

    def encoder(self, domain: str) -> nn.Sequential:
        """E_A or E_B as one module: the domain's private layers, then the shared ones."""
        return nn.Sequential(self.enc_a if domain == "A" else self.enc_b, self.enc_shared)

    def generator(self, domain: str) -> nn.Sequential:
        """G_A or G_B as one module: the shared layers, then the domain's private ones."""
        return nn.Sequential(self.dec_shared, self.dec_a if domain == "A" else self.dec_b)

    def translator(self) -> UNITTranslator:
        """The A→B translator sharing this module's parameters (no copy)."""
        with torch.device("meta"):
            translator = UNITTranslator(**self.config)
        for name in ("enc_a", "enc_shared", "dec_shared", "dec_b"):
            setattr(translator, name, getattr(self, name))
        return translator
