"""RegGAN: translation from misaligned pairs with a registration network.

Kong et al., "Breaking the Dilemma of Medical Image-to-Image Translation",
NeurIPS 2021. Defaults from the paper / public code (``Reg-GAN``): ResNet
generator, LSGAN PatchGAN discriminator, registration network R on
(translation, target) and spatial transformer; generator + R minimise
adv 1 + correction L1 20 (warped translation vs the misaligned target)
+ smoothness 10 (squared forward differences of the field); Adam lr 1e-4,
β = (0.5, 0.999). Optional cycle mode (C-RegGAN: a second generator and
discriminator and the CycleGAN cycle loss, weight 10). As in the reference,
G and R step first, then D on the translation of the updated G; the learning
rate stays constant, the networks keep PyTorch's default initialisation, and
the LSGAN loss is taken on the mean of the PatchGAN's scores per image (the
reference discriminator average-pools its patch map).

Unlike the reference code, R is saved with the translator (role
``registration``) so that the viewer can show the fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_medtrans.nets import warp
from training.losses import critic_score as image_score
from training.losses import gan_loss, smoothness_loss
from training.methods.base import GeneratorOptions, Method, StepContext, register, set_requires_grad


@dataclass
class RegGANOptions(GeneratorOptions):
    lr_decay_start: float = 1.0
    """Fraction of iterations before linear learning-rate decay (reference: constant, 1)."""
    ndf: int = 64
    """Filters of the discriminator's first layer (reference: 64)."""
    n_layers_d: int = 3
    """Stride-2 layers of the PatchGAN discriminator (reference: 3)."""
    reg_nf: int = 16
    """Filters of the registration network's first level."""
    reg_depth: int = 4
    """Resolution levels of the registration network."""
    lambda_adv: float = 1.0
    """Adversarial weight (paper: 1)."""
    lambda_corr: float = 20.0
    """Correction loss weight, L1 of the registered translation vs the target (paper: 20)."""
    lambda_smooth: float = 10.0
    """Smoothness weight of the displacement field (paper: 10)."""
    reg_lr: float = 0.0
    """Learning rate of R; 0 = the method's learning rate (as in the paper)."""
    cycle: bool = False
    """C-RegGAN: add a second generator/discriminator and the cycle loss."""
    lambda_cycle: float = 10.0
    """Cycle loss weight in cycle mode (paper: 10)."""


@register("reggan")
class RegGAN(Method):
    """Generator G, discriminator D, registration net R (+ G_BA, D_A in cycle mode)."""

    Options = RegGANOptions
    needs_pairs = True
    outputs = ("image", "field")
    default_lr = 1e-4
    registration_net = "R"
    init_type = "default"

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        d_spec = {"arch": "patchgan", "ndf": o.ndf, "n_layers": o.n_layers_d}
        specs = {
            "G": self.generator_spec(self.in_channels, self.out_channels),
            "D": {**d_spec, "in_channels": self.out_channels},
            "R": {"arch": "registration", "in_channels": self.out_channels, "nf": o.reg_nf, "depth": o.reg_depth},
        }
        if o.cycle:
            if self.in_channels != self.out_channels:
                raise ValueError("RegGAN cycle mode needs 2-D input (context_slices 1)")
            specs["G_BA"] = self.generator_spec(self.out_channels, self.in_channels)
            specs["D_A"] = {**d_spec, "in_channels": self.in_channels}
        return specs

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        gens = ("G", "G_BA") if self.options.cycle else ("G",)
        discs = ("D", "D_A") if self.options.cycle else ("D",)
        reg_lr = self.options.reg_lr if self.options.reg_lr > 0 else None
        return {"G": self.adam(*gens), "R": self.adam("R", lr=reg_lr), "D": self.adam(*discs)}

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        G, D, R = self.nets["G"], self.nets["D"], self.nets["R"]
        discs = [D] + ([self.nets["D_A"]] if o.cycle else [])
        real_a, real_b = batch["source"], batch["target"]
        with ctx.autocast():
            fake_b = G(real_a)
            set_requires_grad(discs, False)
            field = R(fake_b, real_b)
            registered = warp(fake_b, field)
            loss_adv = gan_loss(image_score(D, fake_b), True, "lsgan")
            loss_corr = F.l1_loss(registered, real_b)
            loss_smooth = smoothness_loss(field)
            loss = o.lambda_adv * loss_adv + o.lambda_corr * loss_corr + o.lambda_smooth * loss_smooth
            losses = {"G_adv": loss_adv, "corr": loss_corr, "smooth": loss_smooth}
            if o.cycle:
                g_ba, d_a = self.nets["G_BA"], self.nets["D_A"]
                fake_a_rec = g_ba(torch.cat([fake_b, real_b], 0))
                rec_a, fake_a = fake_a_rec.chunk(2, 0)
                rec_b = G(fake_a)
                loss_adv_a = gan_loss(image_score(d_a, fake_a), True, "lsgan")
                loss_cyc = F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b)
                loss = loss + o.lambda_adv * loss_adv_a + o.lambda_cycle * loss_cyc
                losses.update(G_adv_A=loss_adv_a, cycle=loss_cyc)
        ctx.zero_grad(self.optimizers["G"], self.optimizers["R"])
        ctx.backward(loss)
        ctx.step(self.optimizers["G"])
        ctx.step(self.optimizers["R"])
        set_requires_grad(discs, True)
        with ctx.autocast():
            with torch.no_grad():  # the reference trains D on the translation of the updated G
                fake_b = G(real_a)
            pred_real, pred_fake = image_score(D, torch.cat([real_b, fake_b], 0)).chunk(2, 0)
            loss_d = o.lambda_adv * (gan_loss(pred_real, True, "lsgan") + gan_loss(pred_fake, False, "lsgan"))
            losses["D"] = loss_d
            if o.cycle:
                pred_real_a, pred_fake_a = image_score(self.nets["D_A"], torch.cat([real_a, fake_a.detach()], 0)).chunk(
                    2, 0
                )
                loss_d_a = o.lambda_adv * (gan_loss(pred_real_a, True, "lsgan") + gan_loss(pred_fake_a, False, "lsgan"))
                loss_d = loss_d + loss_d_a
                losses["D_A"] = loss_d_a
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d)
        ctx.step(self.optimizers["D"])
        return {k: v.detach() for k, v in losses.items()}
