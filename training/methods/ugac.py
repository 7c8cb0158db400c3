"""UGAC: cycle GAN with uncertainty-aware generalised adaptive cycle consistency.

Upadhyay et al., "Robustness via Uncertainty-aware Cycle Consistency",
NeurIPS 2021. Both generators output a mean image, 1/α and β of a
generalised Gaussian on each pixel's residual; the cycle (and identity)
terms add the GGD negative log-likelihood (:func:`training.losses.ggd_nll`,
the paper's ``(|r|/α)^β``) to the L1 loss. The translator's scale output is
the GGD's σ = α·√(Γ(3/β)/Γ(1/β)) (:func:`napari_medtrans.nets.ggd.ggd_sigma`).

Defaults from the reference code (github.com/ExplainableML/
UncertaintyAwareCycleConsistency, ``train_UGAC`` and its README call): three
cascaded U-Nets per generator (``CasUNet_3head(3, …)``), 4-layer PatchGAN
discriminators, loss weights (``list_of_hp``) cycle 1·L1 + 0.015·NLL,
identity 0.01·L1 + 0.001·NLL, adversarial 0.05 (LSGAN on the mean of the
patch scores), no image pool, Adam lr 1e-5 with PyTorch's default β =
(0.9, 0.999) and default initialisation; G steps before D.

Differences from the reference, each documented in docs/training.md:
the NLL raises to the power β as the paper writes (the reference's active
loss multiplies by β, ``clamp(|r|/α·β, 1e-6, 50)``); the reference's extra
term 0.01·(L1(G_BA(b), a) + L1(G_AB(a), b)) compares a translation with an
image of the other domain, which only means something for paired batches, so
``lambda_paired_l1`` is 0 here (its 0.01 in the reference is for paired data);
its cosine learning-rate annealing to 0 is stepped per iteration here (per
epoch there); the U-Nets use instance norm (reference:
batch norm) and a tanh mean head (reference: linear).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_medtrans.nets.ggd import GGDUNetGenerator
from training.losses import critic_score, gan_loss, ggd_nll
from training.methods.base import StepContext, register, set_requires_grad
from training.methods.cyclegan import CycleGAN, PatchGANOptions


@dataclass
class UGACOptions(PatchGANOptions):
    generator: str = "unet_ggd"
    """Generator architecture: only ``unet_ggd`` (cascaded U-Nets with mean, 1/α and β heads)."""
    generator_options: dict[str, Any] = field(default_factory=lambda: {"depth": 4, "cascade": 3})
    """U-Net depth and number of cascaded U-Nets (reference ``CasUNet_3head``: 4 levels, 3 U-Nets)."""
    lr_decay_start: float = 0.0
    """Fraction of the iterations before the learning rate decays (reference: from the start)."""
    lr_schedule: Literal["linear", "cosine"] = "cosine"
    """Shape of the decay (reference: ``CosineAnnealingLR`` over the whole run, to 0)."""
    n_layers_d: int = 4
    """Stride-2 layers of the PatchGAN discriminators (reference README: 4)."""
    pool_size: int = 0
    """Earlier translations each discriminator sees (reference: no pool, 0)."""
    lambda_cycle_l1: float = 1.0
    """L1 cycle weight (reference ``list_of_hp[0]``, ``[4]``: 1)."""
    lambda_cycle_nll: float = 0.015
    """GGD NLL cycle weight (reference ``list_of_hp[1]``, ``[5]``: 0.015)."""
    lambda_identity_l1: float = 0.01
    """L1 identity weight, G_AB(b) ≈ b and G_BA(a) ≈ a (reference ``list_of_hp[2]``, ``[6]``: 0.01)."""
    lambda_identity_nll: float = 0.001
    """GGD NLL identity weight (reference ``list_of_hp[3]``, ``[7]``: 0.001)."""
    lambda_adv: float = 0.05
    """Adversarial weight of each generator (reference ``list_of_hp[8]``, ``[9]``: 0.05)."""
    lambda_paired_l1: float = 0.0
    """L1 of each translation against the other domain's batch image; needs pairs (reference: 0.01; off)."""


@register("ugac")
class UGAC(CycleGAN):
    """CycleGAN's networks, optimisers and pools with GGD generators and UGAC's losses."""

    Options = UGACOptions  # type: ignore[assignment]  # its own options, not a subclass of CycleGAN's
    outputs = ("image", "scale")
    default_lr = 1e-5
    betas = (0.9, 0.999)
    init_type = "default"
    per_image_scores = True

    @property
    def pairs_required(self) -> bool:
        return self.options.lambda_paired_l1 > 0

    def network_specs(self) -> dict[str, dict[str, Any]]:
        if self.options.generator != "unet_ggd":
            raise ValueError(
                f"UGAC needs the generator 'unet_ggd' (mean, 1/α and β heads), got {self.options.generator!r}"
            )
        return super().network_specs()

    def _uncertain_l1(
        self, outputs: tuple[Tensor, ...], target: Tensor, w_l1: float, w_nll: float
    ) -> tuple[Tensor, Tensor]:
        """(weighted L1 + weighted GGD NLL, the NLL) of a generator's three outputs against ``target``."""
        mean, inv_alpha, beta = outputs
        nll = ggd_nll(mean, target, inv_alpha, beta)
        return w_l1 * F.l1_loss(mean, target) + w_nll * nll, nll

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        g_ab, g_ba = (cast(GGDUNetGenerator, self.nets[k]) for k in ("G_AB", "G_BA"))
        d_a, d_b = self.nets["D_A"], self.nets["D_B"]
        real_a, real_b = batch["source"], batch["target"]
        n = real_a.shape[0]
        with ctx.autocast():
            out_ab = g_ab.forward_ggd(torch.cat([real_a, real_b], 0))
            fake_b, idt_b = out_ab[0][:n], tuple(t[n:] for t in out_ab)
            out_ba = g_ba.forward_ggd(torch.cat([real_b, fake_b, real_a], 0))
            fake_a, rec_a, idt_a = out_ba[0][:n], tuple(t[n : 2 * n] for t in out_ba), tuple(t[2 * n :] for t in out_ba)
            rec_b = g_ab.forward_ggd(fake_a)
            set_requires_grad([d_a, d_b], False)
            loss_adv_b = gan_loss(critic_score(d_b, fake_b), True, o.gan_mode)
            loss_adv_a = gan_loss(critic_score(d_a, fake_a), True, o.gan_mode)
            cyc_a, nll_a = self._uncertain_l1(rec_a, real_a, o.lambda_cycle_l1, o.lambda_cycle_nll)
            cyc_b, nll_b = self._uncertain_l1(rec_b, real_b, o.lambda_cycle_l1, o.lambda_cycle_nll)
            idt_loss_a, _ = self._uncertain_l1(idt_a, real_a, o.lambda_identity_l1, o.lambda_identity_nll)
            idt_loss_b, _ = self._uncertain_l1(idt_b, real_b, o.lambda_identity_l1, o.lambda_identity_nll)
            loss_g = o.lambda_adv * (loss_adv_a + loss_adv_b) + cyc_a + cyc_b + idt_loss_a + idt_loss_b
            if o.lambda_paired_l1 > 0:
                loss_g = loss_g + o.lambda_paired_l1 * (F.l1_loss(fake_a, real_a) + F.l1_loss(fake_b, real_b))
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        losses = {
            "G_AB": loss_adv_b,
            "G_BA": loss_adv_a,
            "cycle_nll_A": nll_a,
            "cycle_nll_B": nll_b,
            "cycle_A": cyc_a,
            "cycle_B": cyc_b,
            "idt_A": idt_loss_a,
            "idt_B": idt_loss_b,
            **self.discriminator_step(real_a, real_b, fake_a, fake_b, ctx),
        }
        return {k: v.detach() for k, v in losses.items()}
