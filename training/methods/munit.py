"""MUNIT: multimodal unpaired translation with content and style codes.

Huang, Liu, Belongie and Kautz, "Multimodal Unsupervised Image-to-Image
Translation", ECCV 2018. Each domain has an auto-encoder
(:class:`~napari_medtrans.nets.munit.MUNITAutoencoder`): a content encoder,
a style encoder (style code of 8 numbers) and an AdaIN decoder. A→B decodes
A's content with a style s ~ N(0, I) through B's decoder. Losses of the
generator step (paper Sec. 3.2):

- image reconstruction: L1(G_A(c_a, s_a), a) + the same for b, ``lambda_recon``;
- latent reconstruction: L1 between the sampled style and the style encoded
  from the translation (``lambda_style``), and between the content and the
  content encoded from the translation (``lambda_content``);
- GAN: LSGAN on both translations, summed over the scales of the multi-scale
  discriminators (``lambda_gan``);
- optional explicit cycle L1(G_A(c(a→b), s_a), a) (``lambda_cycle``, 0 in the
  paper's main experiments).

Defaults from the paper and, where it is silent, its reference configuration
(NVlabs/MUNIT ``configs/edges2shoes_folder.yaml``; its licence is
non-commercial, so this code is written from the paper and only the numbers
come from there): gan_w 1, recon_x_w 10, recon_s_w 1, recon_c_w 1,
recon_x_cyc_w 0, Adam lr 1e-4, β = (0.5, 0.999), weight decay 1e-4, Kaiming
initialisation of the generators, N(0, 0.02) of the discriminators, step
learning-rate halving every 100 000 iterations (constant for shorter runs),
style_dim 8, mlp_dim 256, 3-scale LSGAN discriminators of 4 layers.
Discriminators step first on fresh translations, then the generators, as in
the paper's alternating updates and the reference trainer.

The exported translator (:class:`~napari_medtrans.nets.munit.MUNITTranslator`)
is stochastic: each call draws a new style code, so repeated calls with
different seeds give several plausible outputs, whose per-pixel spread is an
uncertainty map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_medtrans.nets.munit import MUNITAutoencoder, munit_translator
from training.methods.base import StepContext, register
from training.methods.unit import MultiScaleGAN, MultiScaleGANOptions


@dataclass
class MUNITOptions(MultiScaleGANOptions):
    style_dim: int = 8
    """Length of the style code (paper: 8)."""
    mlp_dim: int = 256
    """Units of the MLP that maps a style code to the AdaIN parameters (paper: 256)."""
    n_style_down: int = 4
    """Stride-2 convolutions of the style encoder (reference ``AdaINGen``: ``StyleEncoder(4, …)``)."""
    lambda_recon: float = 10.0
    """Image reconstruction weight λx (paper: 10)."""
    lambda_style: float = 1.0
    """Style reconstruction weight λs (paper: 1)."""
    lambda_content: float = 1.0
    """Content reconstruction weight λc (paper: 1)."""
    lambda_cycle: float = 0.0
    """Explicit style-augmented cycle weight (reference ``recon_x_cyc_w``: 0; used for some data sets)."""


@register("munit")
class MUNIT(MultiScaleGAN):
    """Auto-encoders G_A, G_B (content, style, AdaIN decoder), multi-scale discriminators D_A, D_B."""

    Options = MUNITOptions

    def generator_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        common = {
            "arch": "munit_autoencoder",
            "ngf": o.ngf,
            "n_down": o.n_down,
            "n_res": o.n_res,
            "style_dim": o.style_dim,
            "mlp_dim": o.mlp_dim,
            "n_style_down": o.n_style_down,
        }
        return {"G_A": {**common, "channels": self.in_channels}, "G_B": {**common, "channels": self.out_channels}}

    def autoencoders(self) -> tuple[MUNITAutoencoder, MUNITAutoencoder]:
        return cast(MUNITAutoencoder, self.nets["G_A"]), cast(MUNITAutoencoder, self.nets["G_B"])

    def prior_styles(self, real: Tensor, ctx: StepContext) -> Tensor:
        """Style codes (B, style_dim) from N(0, I), drawn from the step's generator."""
        return self.normal(real.new_empty(real.shape[0], self.options.style_dim), ctx)

    def translations(self, real_a: Tensor, real_b: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        g_a, g_b = self.autoencoders()
        style_a, style_b = self.prior_styles(real_a, ctx), self.prior_styles(real_b, ctx)
        return g_a.decode(g_b.content(real_b), style_a), g_b.decode(g_a.content(real_a), style_b)

    def generator_objective(
        self, real_a: Tensor, real_b: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        o, n = self.options, real_a.shape[0]
        g_a, g_b = self.autoencoders()
        style_a, style_b = self.prior_styles(real_a, ctx), self.prior_styles(real_b, ctx)
        content_a, own_style_a = g_a.encode(real_a)
        content_b, own_style_b = g_b.encode(real_b)
        out_a = g_a.decode(torch.cat([content_a, content_b], 0), torch.cat([own_style_a, style_a], 0))
        out_b = g_b.decode(torch.cat([content_b, content_a], 0), torch.cat([own_style_b, style_b], 0))
        recon_a, fake_a = out_a[:n], out_a[n:]
        recon_b, fake_b = out_b[:n], out_b[n:]
        content_b_again, style_a_again = g_a.encode(fake_a)
        content_a_again, style_b_again = g_b.encode(fake_b)
        losses = {
            "recon_A": F.l1_loss(recon_a, real_a),
            "recon_B": F.l1_loss(recon_b, real_b),
            "style_A": F.l1_loss(style_a_again, style_a),
            "style_B": F.l1_loss(style_b_again, style_b),
            "content_A": F.l1_loss(content_a_again, content_a),
            "content_B": F.l1_loss(content_b_again, content_b),
        }
        loss = (
            o.lambda_recon * (losses["recon_A"] + losses["recon_B"])
            + o.lambda_style * (losses["style_A"] + losses["style_B"])
            + o.lambda_content * (losses["content_A"] + losses["content_B"])
        )
        if o.lambda_cycle > 0:
            losses["cycle_A"] = F.l1_loss(g_a.decode(content_a_again, own_style_a), real_a)
            losses["cycle_B"] = F.l1_loss(g_b.decode(content_b_again, own_style_b), real_b)
            loss = loss + o.lambda_cycle * (losses["cycle_A"] + losses["cycle_B"])
        return loss, losses, fake_a, fake_b

    def translator_spec(self) -> dict[str, Any]:
        spec = {k: v for k, v in self.specs["G_A"].items() if k not in ("channels", "n_style_down")}
        spec.update(arch="munit_translator", in_channels=self.in_channels, out_channels=self.out_channels)
        return {**spec, "stochastic": True}

    def build_translator(self) -> nn.Module:
        g_a, g_b = self.autoencoders()
        return munit_translator(g_a, g_b, self.translator_spec())
