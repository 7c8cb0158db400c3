"""PI and UAPI: one-sided translation with patch invariance (and uncertainty).

The generator must commute with a patch operator P (a random square crop of
70–100 % of the side, resized back to full size, the same crop on input and
output, redrawn every step): G(P(x)) ≈ P(G(x)). PI penalises the difference
with L1; UAPI (uncertainty-aware PI) gives the generator a softplus scale head
σ and uses the Laplace negative log-likelihood |G(P(x)) − P(G(x))|/σ + log σ,
so σ becomes a per-pixel uncertainty map. A one-sided WGAN-GP critic
(Gulrajani et al., NeurIPS 2017; GP weight 10, Adam β = (0, 0.9)) is shared
between whole images and crops. The paper updates the critic n_critic = 15
times per generator update; here one training iteration = one critic update
and the generator is updated every ``n_critic``-th iteration.

``lambda_paired`` (default 0, i.e. unpaired as in the paper) adds a supervised
term when the data are aligned pairs — L1 for PI, the Laplace NLL with the
full-image σ for UAPI — used by the shipped demo translator to converge in
minutes on a CPU. ``nll_beta`` (default 0 = the plain NLL) switches to the
β-NLL of Seitzer et al. (ICLR 2022). ``lambda_paired_l1`` (default 0; UAPI
with ``lambda_paired`` only) adds a plain L1 term on the image next to the
supervised NLL so that σ cannot absorb a large error (the demo recipe uses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.losses import crop_resize, gradient_penalty, laplace_nll, sample_crop_box
from training.methods.base import GeneratorOptions, Method, StepContext, register, set_requires_grad


@dataclass
class PIOptions(GeneratorOptions):
    generator: str = "unet"
    ngf: int = 32
    ndf: int = 64
    n_layers_d: int = 3
    n_critic: int = 15
    lambda_gp: float = 10.0
    lambda_pi: float = 10.0
    lambda_paired: float = 0.0
    nll_beta: float = 0.0
    lambda_paired_l1: float = 0.0
    crop_min: float = 0.7
    crop_max: float = 1.0


@register("pi")
class PatchInvariance(Method):
    """PI: WGAN-GP critic + L1 patch invariance."""

    Options = PIOptions
    default_lr = 1e-4
    betas = (0.0, 0.9)
    uses_scale = False

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        extra = {"scale_head": True} if self.uses_scale else {}
        return {
            "G": self.generator_spec(self.in_channels, self.out_channels, **extra),
            "C": {"arch": "wgan_critic", "in_channels": self.out_channels, "ndf": o.ndf,
                  "n_layers": o.n_layers_d},
        }

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.adam("G"), "C": self.adam("C")}

    @property
    def pairs_required(self) -> bool:
        return self.options.lambda_paired > 0

    def _generate(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.uses_scale:
            return self.nets["G"].forward_with_scale(x)
        return self.nets["G"](x), None

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        G, C = self.nets["G"], self.nets["C"]
        source, target = batch["source"], batch["target"]
        # one patch operator for the source/output, another for the real crops
        height, width = source.shape[-2:]
        box = sample_crop_box(height, width, o.crop_min, o.crop_max, ctx.generator)
        source_crop = crop_resize(source, box)
        real_crop = crop_resize(target, sample_crop_box(height, width, o.crop_min, o.crop_max, ctx.generator))
        losses: dict[str, Tensor] = {}
        # critic step
        with torch.no_grad(), ctx.autocast():
            fake = G(torch.cat([source, source_crop], 0))
        real = torch.cat([target, real_crop], 0)
        with ctx.autocast():
            score = C(torch.cat([real, fake], 0))
            score_real, score_fake = score.chunk(2, 0)
            wdist = score_real.mean() - score_fake.mean()
        gp = gradient_penalty(C, real, fake)
        loss_c = -wdist + o.lambda_gp * gp
        ctx.zero_grad(self.optimizers["C"])
        ctx.backward(loss_c)
        ctx.step(self.optimizers["C"])
        losses.update(C=loss_c.detach(), wasserstein=wdist.detach(), gp=gp.detach())
        if ctx.iteration % o.n_critic != 0:
            return losses
        # generator step: same patch operator on input and output
        set_requires_grad(C, False)
        with ctx.autocast():
            n = source.shape[0]
            image, scale = self._generate(torch.cat([source, source_crop], 0))
            full, from_crop = image[:n], image[n:]
            crop_of_full = crop_resize(full, box)
            loss_adv = -C(image).mean()
            if self.uses_scale:
                loss_pi = laplace_nll(from_crop, crop_of_full, scale[n:], beta=o.nll_beta)
            else:
                loss_pi = F.l1_loss(from_crop, crop_of_full)
            loss_g = loss_adv + o.lambda_pi * loss_pi
            if o.lambda_paired > 0:
                if self.uses_scale:
                    loss_sup = laplace_nll(full, target, scale[:n], beta=o.nll_beta)
                else:
                    loss_sup = F.l1_loss(full, target)
                loss_g = loss_g + o.lambda_paired * loss_sup
                losses["supervised"] = loss_sup.detach()
                if o.lambda_paired_l1 > 0 and self.uses_scale:
                    # plain L1 on the image as well: the NLL alone can 'explain away' an error by
                    # inflating σ (then the image gets gradients ∝ 1/σ and stalls, e.g. in air)
                    loss_l1 = F.l1_loss(full, target)
                    loss_g = loss_g + o.lambda_paired_l1 * loss_l1
                    losses["supervised_l1"] = loss_l1.detach()
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        set_requires_grad(C, True)
        losses.update(G_adv=loss_adv.detach(), patch=loss_pi.detach())
        return losses


@register("uapi")
class UncertaintyAwarePatchInvariance(PatchInvariance):
    """UAPI: PI with a softplus scale head and the Laplace NLL (outputs an uncertainty map)."""

    uses_scale = True
    outputs = ("image", "scale")
