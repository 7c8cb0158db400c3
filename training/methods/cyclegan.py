"""CycleGAN: unpaired translation with cycle consistency.

Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks", ICCV 2017. Defaults from the paper / public code:
ResNet generators (9 blocks, ngf 64), 70×70 PatchGAN discriminators, LSGAN,
cycle weight λ = 10, identity weight 0.5·λ, image pool of 50, Adam lr 2e-4,
β = (0.5, 0.999), linear decay over the second half of training, weights
from N(0, 0.02). Each step updates both generators first, then the
discriminators on pooled translations (the reference's order).

The step computes exactly the reference losses with fewer, batched network
calls: G_AB runs once on [A, B] (translation + identity), G_BA once on
[B, A, G_AB(A)] (translation, identity, reconstruction), and each
discriminator once on [real, pooled fake].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.losses import ImagePool, critic_score, gan_loss
from training.methods.base import GeneratorOptions, Method, StepContext, register, set_requires_grad


@dataclass
class PatchGANOptions(GeneratorOptions):
    """Options of the methods with pooled 70×70 PatchGAN discriminators (CycleGAN and its descendants)."""

    ndf: int = 64
    """Filters of the discriminators' first layer (paper: 64)."""
    n_layers_d: int = 3
    """Stride-2 layers of the PatchGAN discriminators (paper: 3, 70×70 patches)."""
    gan_mode: str = "lsgan"
    """Adversarial loss: ``lsgan`` (paper), ``vanilla`` or ``wgan``."""
    pool_size: int = 50
    """Earlier translations each discriminator sees (paper: 50)."""


@dataclass
class CycleGANOptions(PatchGANOptions):
    lambda_cycle: float = 10.0
    """Cycle-consistency weight λ (paper: 10)."""
    lambda_identity: float = 0.5
    """Identity loss weight as a fraction of λ (reference: 0.5)."""


def patchgan_spec(options: PatchGANOptions, in_channels: int) -> dict[str, Any]:
    """``build_network`` spec of a PatchGAN discriminator from the shared options."""
    return {"arch": "patchgan", "ndf": options.ndf, "n_layers": options.n_layers_d, "in_channels": in_channels}


def discriminator_loss(net: nn.Module, real: Tensor, fake: Tensor, mode: str, *, per_image: bool = False) -> Tensor:
    """Half the sum of the real and fake adversarial losses, from one pass over [real, fake];
    ``per_image``: on the mean of each image's patch scores (:func:`critic_score`).
    """
    both = torch.cat([real, fake], 0)
    pred_real, pred_fake = (critic_score(net, both) if per_image else net(both)).chunk(2, 0)
    return 0.5 * (gan_loss(pred_real, True, mode) + gan_loss(pred_fake, False, mode))  # type: ignore[arg-type]


@register("cyclegan")
class CycleGAN(Method):
    """Two generators (A→B = the translator, B→A), two PatchGAN discriminators."""

    Options = CycleGANOptions
    supports_context = False
    generator_net = "G_AB"
    per_image_scores: ClassVar[bool] = False
    """Whether the discriminator losses take each image's mean patch score (UGAC) or every patch."""

    def network_specs(self) -> dict[str, dict[str, Any]]:
        return {
            "G_AB": self.generator_spec(self.in_channels, self.out_channels),
            "G_BA": self.generator_spec(self.out_channels, self.in_channels),
            "D_A": patchgan_spec(self.options, self.in_channels),
            "D_B": patchgan_spec(self.options, self.out_channels),
        }

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.pool_a = ImagePool(self.options.pool_size)
        self.pool_b = ImagePool(self.options.pool_size)
        return {"G": self.adam("G_AB", "G_BA"), "D": self.adam("D_A", "D_B")}

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        real_a, real_b = batch["source"], batch["target"]
        with ctx.autocast():
            loss_g, losses, fake_a, fake_b = self.generator_losses(real_a, real_b)
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        losses.update(self.discriminator_step(real_a, real_b, fake_a, fake_b, ctx))
        return {k: v.detach() for k, v in losses.items()}

    def generator_losses(self, real_a: Tensor, real_b: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """(generator objective, its terms, G_BA(b), G_AB(a)) with the discriminators frozen."""
        o = self.options
        g_ab, g_ba, d_a, d_b = (self.nets[k] for k in ("G_AB", "G_BA", "D_A", "D_B"))
        n = real_a.shape[0]
        use_idt = o.lambda_identity > 0
        out_ab = g_ab(torch.cat([real_a, real_b], 0) if use_idt else real_a)
        fake_b = out_ab[:n]
        out_ba = g_ba(torch.cat([real_b, fake_b] + ([real_a] if use_idt else []), 0))
        fake_a, rec_a = out_ba[:n], out_ba[n : 2 * n]
        rec_b = g_ab(fake_a)
        set_requires_grad([d_a, d_b], False)
        loss_g_ab = gan_loss(d_b(fake_b), True, o.gan_mode)
        loss_g_ba = gan_loss(d_a(fake_a), True, o.gan_mode)
        loss_cyc_a = F.l1_loss(rec_a, real_a)
        loss_cyc_b = F.l1_loss(rec_b, real_b)
        loss_g = loss_g_ab + loss_g_ba + o.lambda_cycle * (loss_cyc_a + loss_cyc_b)
        losses = {"G_AB": loss_g_ab, "G_BA": loss_g_ba, "cycle_A": loss_cyc_a, "cycle_B": loss_cyc_b}
        if use_idt:
            idt_b, idt_a = out_ab[n:], out_ba[2 * n :]
            loss_idt_a = F.l1_loss(idt_b, real_b)
            loss_idt_b = F.l1_loss(idt_a, real_a)
            loss_g = loss_g + o.lambda_cycle * o.lambda_identity * (loss_idt_a + loss_idt_b)
            losses.update(idt_A=loss_idt_a, idt_B=loss_idt_b)
        return loss_g, losses, fake_a, fake_b

    def discriminator_step(
        self, real_a: Tensor, real_b: Tensor, fake_a: Tensor, fake_b: Tensor, ctx: StepContext
    ) -> dict[str, Tensor]:
        """Unfreeze the discriminators and update them on pooled translations."""
        d_a, d_b, mode = self.nets["D_A"], self.nets["D_B"], self.options.gan_mode
        set_requires_grad([d_a, d_b], True)
        with ctx.autocast():
            loss_d_a = discriminator_loss(d_a, real_a, self.pool_a.query(fake_a), mode, per_image=self.per_image_scores)
            loss_d_b = discriminator_loss(d_b, real_b, self.pool_b.query(fake_b), mode, per_image=self.per_image_scores)
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d_a + loss_d_b)
        ctx.step(self.optimizers["D"])
        return {"D_A": loss_d_a, "D_B": loss_d_b}

    def extra_state(self) -> dict[str, Tensor]:
        return {**self.pool_a.state_tensors("pool_A"), **self.pool_b.state_tensors("pool_B")}

    def load_extra_state(self, tensors: dict[str, Tensor]) -> None:
        self.pool_a.load_state_tensors(tensors, "pool_A", self.device)
        self.pool_b.load_state_tensors(tensors, "pool_B", self.device)
