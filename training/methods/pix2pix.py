"""pix2pix: conditional GAN for paired translation.

Isola et al., "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017. Defaults from the paper / public code: conditional
70×70 PatchGAN (3 layers, ndf 64) on (source, image) pairs, vanilla (BCE) GAN
loss, L1 weight 100, Adam lr 2e-4, β = (0.5, 0.999), discriminator loss halved,
linear learning-rate decay over the second half, weights drawn from
N(0, 0.02). Each step updates D on the current translation first, then G
(the reference's ``optimize_parameters``). The generator defaults to the
ResNet of CycleGAN (the paper's is a U-Net: ``--set model.generator=unet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.losses import gan_loss
from training.methods.base import GeneratorOptions, Method, StepContext, register, set_requires_grad


@dataclass
class Pix2PixOptions(GeneratorOptions):
    ndf: int = 64
    """Filters of the discriminator's first layer (paper: 64)."""
    n_layers_d: int = 3
    """Stride-2 layers of the PatchGAN discriminator (paper: 3, 70×70 patches)."""
    gan_mode: str = "vanilla"
    """Adversarial loss: ``vanilla`` (BCE, paper), ``lsgan`` or ``wgan``."""
    lambda_l1: float = 100.0
    """Weight of the L1 loss against the aligned target (paper: 100)."""


@register("pix2pix")
class Pix2Pix(Method):
    """Conditional GAN + L1 on aligned pairs."""

    Options = Pix2PixOptions
    needs_pairs = True

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        return {
            "G": self.generator_spec(self.in_channels, self.out_channels),
            "D": {
                "arch": "patchgan",
                "in_channels": self.in_channels + self.out_channels,
                "ndf": o.ndf,
                "n_layers": o.n_layers_d,
            },
        }

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.adam("G"), "D": self.adam("D")}

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """The reference order: D on the current fake first, then G against the updated D."""
        o = self.options
        G, D = self.nets["G"], self.nets["D"]
        opt_g, opt_d = self.optimizers["G"], self.optimizers["D"]
        source, target = batch["source"], batch["target"]
        with ctx.autocast():
            fake = G(source)
            # discriminator: real and fake pairs in one batched forward
            pairs = torch.cat([torch.cat([source, target], 1), torch.cat([source, fake.detach()], 1)], 0)
            pred_real, pred_fake = D(pairs).chunk(2, 0)
            loss_d = 0.5 * (gan_loss(pred_real, True, o.gan_mode) + gan_loss(pred_fake, False, o.gan_mode))
        ctx.zero_grad(opt_d)
        ctx.backward(loss_d)
        ctx.step(opt_d)
        set_requires_grad(D, False)
        with ctx.autocast():
            # generator: fool the updated D (frozen) + L1
            loss_g_gan = gan_loss(D(torch.cat([source, fake], 1)), True, o.gan_mode)
            loss_l1 = F.l1_loss(fake, target)
            loss_g = loss_g_gan + o.lambda_l1 * loss_l1
        ctx.zero_grad(opt_g)
        ctx.backward(loss_g)
        ctx.step(opt_g)
        set_requires_grad(D, True)
        return {"G_GAN": loss_g_gan.detach(), "G_L1": loss_l1.detach(), "D": loss_d.detach()}
