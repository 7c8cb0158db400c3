"""PI and UAPI: one-sided unpaired translation with patch invariance (and uncertainty).

Angermann, Haltmeier and Siyal, "Unsupervised Joint Image Transfer and
Uncertainty Quantification Using Patch Invariant Networks" (2022); where the
paper is silent, its reference code (``anger-man/unsupervised-image-transfer-and-uq``,
``train_uapi.py`` and ``config_file.ini``).

The generator must commute with a patch operator P (per sample a random
square crop of 70–100 % of the side, resized back bicubically): G(P(x)) ≈
P(G(x)), with P(G(x)) clipped to [−1, 1]. PI penalises the difference with L1;
UAPI gives the generator a softplus scale head σ and averages two Laplace
negative log-likelihoods of the residual, one with the σ of the crop's
translation σ(G(P(x))) and one with the crop of the full image's σ,
P(σ(G(x))) — so the full-image σ shown at inference is trained directly.

A WGAN critic (DCGAN layout, one score per image, He initialisation) sees
whole images and crops in two separate updates, each with the one-sided
gradient penalty (weight 10), the drift term 5e-4·(D(real)² + D(fake)²) and a
pool of 50 earlier translations. One training iteration is one critic
iteration; the generator is updated after every ``n_critic`` = 15 of them,
2·15 during the first ``critic_warmup`` = 150 generator updates (the
reference's first epoch). The generator loss is 0.5·(−D(G(x))) +
0.5·(−D(G(P(x)))) + 0.5·patch loss. Adam β = (0, 0.9); learning rates 5e-5
(generator) and 2e-5 (critic), constant.

Deviations (named options, off by default, recorded in the translator's
metadata): ``lambda_paired`` adds a supervised term on aligned pairs (L1 for
PI, the Laplace NLL with the full-image σ for UAPI), ``nll_beta`` the β-NLL of
Seitzer et al. (ICLR 2022), ``lambda_paired_l1`` a plain L1 next to the
supervised NLL; ``critic="patch"`` the cheaper PatchGAN-layout critic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.losses import (
    CropBox,
    ImagePool,
    critic_score,
    crop_resize,
    drift_penalty,
    gradient_penalty,
    laplace_nll,
    sample_crop_boxes,
)
from training.methods.base import GeneratorOptions, Method, StepContext, register, set_requires_grad

IMAGE_RANGE = (-1.0, 1.0)
MIN_SCALE = 1e-6  # lower clip of a resampled σ (bicubic resampling can undershoot 0)


@dataclass
class PIOptions(GeneratorOptions):
    generator: str = "unet"
    """Generator architecture (paper: U-Net)."""
    ngf: int = 32
    """Filters of the generator's first layer."""
    lr_decay_start: float = 1.0
    """Fraction of iterations before linear learning-rate decay (paper: constant, 1)."""
    critic: str = "dcgan"
    """Critic layout: ``dcgan`` (paper: one score per image) or ``patch`` (PatchGAN layout, a deviation)."""
    ndf: int = 24
    """Filters of the critic's first layer (paper: 24)."""
    n_layers_d: int = 5
    """Downsampling stages of the critic (paper: 5)."""
    lr_critic: float = 2e-5
    """Critic learning rate (paper: 2e-5; the generator's is the method learning rate, 5e-5)."""
    n_critic: int = 15
    """Critic iterations per generator update (paper: 15)."""
    critic_warmup: int = 150
    """Generator updates at the start with twice ``n_critic`` critic iterations (reference: first epoch, 150)."""
    lambda_gp: float = 10.0
    """Gradient-penalty weight (paper: 10)."""
    gp_one_sided: bool = True
    """Penalise only gradient norms above 1 (reference code); False = the two-sided WGAN-GP penalty."""
    lambda_drift: float = 5e-4
    """Weight of the drift term D(real)² + D(fake)² in the critic loss (reference: 5e-4)."""
    pool_size: int = 50
    """Earlier translations the critic sees, one pool for images and one for crops (reference: 50)."""
    lambda_adv: float = 0.5
    """Weight of each of the two adversarial terms, whole image and crop (reference: 0.5 + 0.5)."""
    lambda_pi: float = 0.5
    """Weight of the patch-invariance loss (reference: 0.5)."""
    crop_min: float = 0.7
    """Smallest crop side as a fraction of the image side (paper: 0.7)."""
    crop_max: float = 1.0
    """Largest crop side as a fraction of the image side (paper: 1.0)."""
    lambda_paired: float = 0.0
    """DEVIATION (supervised): weight of an L1 / Laplace-NLL term against aligned targets; 0 = unpaired as the paper."""
    nll_beta: float = 0.0
    """DEVIATION: β of the β-NLL (Seitzer et al. 2022) in the supervised term; 0 = plain NLL."""
    lambda_paired_l1: float = 0.0
    """DEVIATION (supervised, UAPI with lambda_paired): weight of a plain L1 next to the supervised NLL."""


def generator_due(iteration: int, n_critic: int, warmup: int) -> bool:
    """Whether critic iteration ``iteration`` (1-based) ends a block of critic updates:
    blocks of 2·``n_critic`` for the first ``warmup`` generator updates, then of ``n_critic``.
    """
    warm_iterations = warmup * 2 * n_critic
    if iteration <= warm_iterations:
        return iteration % (2 * n_critic) == 0
    return (iteration - warm_iterations) % n_critic == 0


@register("pi")
class PatchInvariance(Method):
    """PI: WGAN critic + L1 patch invariance."""

    Options = PIOptions
    default_lr = 5e-5
    betas = (0.0, 0.9)
    init_type = "he"
    uses_scale = False

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        extra = {"scale_head": True} if self.uses_scale else {}
        if o.critic == "dcgan":
            critic = {"arch": "dcgan_critic", "ndf": o.ndf, "n_down": o.n_layers_d}
        elif o.critic == "patch":
            critic = {"arch": "wgan_critic", "ndf": o.ndf, "n_layers": o.n_layers_d}
        else:
            raise ValueError(f"model.critic must be 'dcgan' or 'patch', got {o.critic!r}")
        return {
            "G": self.generator_spec(self.in_channels, self.out_channels, **extra),
            "C": {**critic, "in_channels": self.out_channels},
        }

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.pool_full = ImagePool(self.options.pool_size)
        self.pool_crop = ImagePool(self.options.pool_size)
        return {"G": self.adam("G"), "C": self.adam("C", lr=self.options.lr_critic)}

    @property
    def pairs_required(self) -> bool:
        return self.options.lambda_paired > 0

    def _generate(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.uses_scale:
            return self.nets["G"].forward_with_scale(x)
        return self.nets["G"](x), None

    def _critic_update(self, real: Tensor, fake: Tensor, ctx: StepContext) -> dict[str, Tensor]:
        """One critic update: −W estimate + drift + gradient penalty."""
        o, C = self.options, self.nets["C"]
        with ctx.autocast():
            score_real, score_fake = critic_score(C, torch.cat([real, fake], 0)).float().chunk(2, 0)
        wdist = score_real.mean() - score_fake.mean()
        gp = gradient_penalty(C, real, fake, one_sided=o.gp_one_sided, generator=ctx.generator)
        loss = -wdist + o.lambda_drift * drift_penalty(score_real, score_fake) + o.lambda_gp * gp
        ctx.zero_grad(self.optimizers["C"])
        ctx.backward(loss)
        ctx.step(self.optimizers["C"])
        return {"C": loss.detach(), "wasserstein": wdist.detach(), "gp": gp.detach()}

    def _patch_loss(
        self, from_crop: Tensor, crop_of_full: Tensor, scale: Tensor | None, boxes: list[CropBox]
    ) -> Tensor:
        """L1 (PI) or the mean of the two Laplace NLLs (UAPI) of G(P(x)) against P(G(x))."""
        if scale is None:
            return F.l1_loss(from_crop, crop_of_full)
        n = from_crop.shape[0]
        scale_of_crop = scale[n:]
        crop_of_scale = crop_resize(scale[:n], boxes).clamp(min=MIN_SCALE)
        return 0.5 * (
            laplace_nll(from_crop, crop_of_full, scale_of_crop) + laplace_nll(from_crop, crop_of_full, crop_of_scale)
        )

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        G, C = self.nets["G"], self.nets["C"]
        source, target = batch["source"], batch["target"]
        n = source.shape[0]
        boxes = sample_crop_boxes(n, *source.shape[-2:], o.crop_min, o.crop_max, ctx.generator)
        source_crop = crop_resize(source, boxes)
        # critic: whole images, then crops (two updates, as the reference)
        with torch.no_grad(), ctx.autocast():
            fake = G(torch.cat([source, source_crop], 0)).float()
        losses = self._critic_update(target, self.pool_full.query(fake[:n]), ctx)
        crop_losses = self._critic_update(crop_resize(target, boxes), self.pool_crop.query(fake[n:]), ctx)
        losses.update({f"{k}_crop": v for k, v in crop_losses.items()})
        if not generator_due(ctx.iteration, o.n_critic, o.critic_warmup):
            return losses
        # generator: the same patch operator on input and output
        set_requires_grad(C, False)
        with ctx.autocast():
            image, scale = self._generate(torch.cat([source, source_crop], 0))
            full, from_crop = image[:n], image[n:]
            score = critic_score(C, image)
            loss_adv = -o.lambda_adv * (score[:n].mean() + score[n:].mean())
            crop_of_full = crop_resize(full, boxes, clip=IMAGE_RANGE)
            loss_pi = self._patch_loss(from_crop, crop_of_full, scale, boxes)
            loss_g = loss_adv + o.lambda_pi * loss_pi
            if o.lambda_paired > 0:
                loss_g = loss_g + self._supervised(full, target, scale, losses)
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        set_requires_grad(C, True)
        losses.update(G_adv=loss_adv.detach(), patch=loss_pi.detach())
        return losses

    def _supervised(self, full: Tensor, target: Tensor, scale: Tensor | None, losses: dict[str, Tensor]) -> Tensor:
        """The supervised deviation (``lambda_paired``, ``lambda_paired_l1``) on aligned pairs."""
        o = self.options
        if scale is None:
            loss_sup = F.l1_loss(full, target)
        else:
            loss_sup = laplace_nll(full, target, scale[: full.shape[0]], beta=o.nll_beta)
        losses["supervised"] = loss_sup.detach()
        total = o.lambda_paired * loss_sup
        if o.lambda_paired_l1 > 0 and scale is not None:
            # plain L1 on the image as well: the NLL alone can 'explain away' an error by
            # inflating σ (then the image gets gradients ∝ 1/σ and stalls, e.g. in air)
            loss_l1 = F.l1_loss(full, target)
            losses["supervised_l1"] = loss_l1.detach()
            total = total + o.lambda_paired_l1 * loss_l1
        return total

    def extra_state(self) -> dict[str, Tensor]:
        return {**self.pool_full.state_tensors("pool_full"), **self.pool_crop.state_tensors("pool_crop")}

    def load_extra_state(self, tensors: dict[str, Tensor]) -> None:
        self.pool_full.load_state_tensors(tensors, "pool_full", self.device)
        self.pool_crop.load_state_tensors(tensors, "pool_crop", self.device)


@register("uapi")
class UncertaintyAwarePatchInvariance(PatchInvariance):
    """UAPI: PI with a softplus scale head and the Laplace NLL (outputs an uncertainty map)."""

    uses_scale = True
    outputs = ("image", "scale")
