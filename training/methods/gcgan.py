"""GcGAN: one-sided unpaired translation with geometry consistency.

Fu et al., "Geometry-Consistent Generative Adversarial Networks for One-Sided
Unsupervised Domain Mapping", CVPR 2019. One generator direction only (A→B):
the translation of a transformed image must equal the transformed translation,
G(f(x)) ≈ f(G(x)), for a predefined f (a 90° rotation, the paper's and the
reference's default ``--geometry rot``, or a vertical flip ``vf``).

Defaults from the reference code (github.com/hufu6371/GcGAN, model
``gc_gan_share`` of its ``train_gcgan.sh``): one generator shared by x and
f(x) (``share_generator``; False = the ``gc_gan_cross`` model, a second
generator G_gc for f(x), which the README uses for horse↔zebra), two
discriminators (D_B on G(x), D_gc on G(f(x)), each with its image pool of 50),
ResNet generator without dropout, LSGAN, loss weights
adv ``lambda_G`` 1, geometry consistency ``lambda_AB · lambda_gc`` = 10 · 2,
identity ``lambda_AB · identity`` = 10 · 0.5 on B and f(B), Adam 2e-4,
β = (0.5, 0.999), Xavier initialisation (gain 0.02), linear decay over the
second half. As in the reference, each half of the geometry term compares one
translation with the (inverse-)transformed other one, which is detached, and
the generator steps before the discriminators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.losses import ImagePool, gan_loss
from training.methods.base import Method, StepContext, register, set_requires_grad
from training.methods.cyclegan import PatchGANOptions, discriminator_loss, patchgan_spec

GEOMETRIES = ("rot", "vf")


def transform(images: Tensor, geometry: str, *, inverse: bool = False) -> Tensor:
    """f (or f⁻¹) on a (B, C, H, W) batch: ``rot`` a 90° clockwise rotation (the
    reference's transpose + column reversal), ``vf`` a vertical flip (its own inverse).
    """
    if geometry == "rot":
        return torch.rot90(images, 1 if inverse else -1, dims=(2, 3))
    if geometry == "vf":
        return images.flip(2)
    raise ValueError(f"unknown GcGAN geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}")


def geometry_consistency_loss(translated: Tensor, translated_transformed: Tensor, geometry: str) -> Tensor:
    """L1(G(x), f⁻¹(G(f(x)))) + L1(G(f(x)), f(G(x))), each target detached (the reference's
    ``get_gc_rot_loss`` / ``get_gc_vf_loss`` before weighting). Zero for a G that commutes with f.
    """
    back = transform(translated_transformed.detach(), geometry, inverse=True)
    forth = transform(translated.detach(), geometry)
    return F.l1_loss(translated, back) + F.l1_loss(translated_transformed, forth)


@dataclass
class GcGANOptions(PatchGANOptions):
    geometry: str = "rot"
    """Geometric transformation f: ``rot`` (90° rotation, paper default) or ``vf`` (vertical flip)."""
    share_generator: bool = True
    """One generator for x and f(x) (reference ``gc_gan_share``); False adds G_gc (``gc_gan_cross``)."""
    lambda_adv: float = 1.0
    """Adversarial weight of each of the two generator terms (reference ``lambda_G``: 1)."""
    lambda_ab: float = 10.0
    """Base weight of the geometry and identity terms (reference ``lambda_AB``: 10)."""
    lambda_gc: float = 2.0
    """Geometry-consistency weight, times ``lambda_ab`` (reference ``lambda_gc``: 2)."""
    lambda_identity: float = 0.5
    """Identity weight on B and f(B), times ``lambda_ab`` (reference ``identity``: 0.5; 0.3 for parsing→city)."""


@register("gcgan")
class GcGAN(Method):
    """Generator G (and G_gc unless shared), discriminators D_B and D_gc."""

    Options = GcGANOptions
    supports_context = False
    init_type = "xavier"

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        transform(torch.zeros(1, 1, 1, 1), o.geometry)  # reject an unknown geometry before building anything
        specs = {
            "G": self.generator_spec(self.in_channels, self.out_channels),
            "D_B": patchgan_spec(o, self.out_channels),
            "D_gc": patchgan_spec(o, self.out_channels),
        }
        if not o.share_generator:
            specs["G_gc"] = self.generator_spec(self.in_channels, self.out_channels)
        return specs

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.pool = ImagePool(self.options.pool_size)
        self.pool_gc = ImagePool(self.options.pool_size)
        gens = ("G",) if self.options.share_generator else ("G", "G_gc")
        return {"G": self.adam(*gens), "D": self.adam("D_B", "D_gc")}

    def _translate_pair(self, plain: Tensor, transformed: Tensor) -> tuple[Tensor, Tensor]:
        """G on the plain images and G (or G_gc) on the transformed ones, batched when shared."""
        if self.options.share_generator:
            return self.nets["G"](torch.cat([plain, transformed], 0)).chunk(2, 0)
        return self.nets["G"](plain), self.nets["G_gc"](transformed)

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        d_b, d_gc = self.nets["D_B"], self.nets["D_gc"]
        real_a, real_b = batch["source"], batch["target"]
        if real_a.shape[-1] != real_a.shape[-2] and o.geometry == "rot":
            raise ValueError(f"GcGAN geometry 'rot' needs square images, got {tuple(real_a.shape[-2:])}")
        n = real_a.shape[0]
        real_gc_a, real_gc_b = transform(real_a, o.geometry), transform(real_b, o.geometry)
        use_idt = o.lambda_identity > 0
        with ctx.autocast():
            plain = torch.cat([real_a, real_b], 0) if use_idt else real_a
            transformed = torch.cat([real_gc_a, real_gc_b], 0) if use_idt else real_gc_a
            out, out_gc = self._translate_pair(plain, transformed)
            fake_b, fake_gc_b = out[:n], out_gc[:n]
            set_requires_grad([d_b, d_gc], False)
            loss_adv = gan_loss(d_b(fake_b), True, o.gan_mode)
            loss_adv_gc = gan_loss(d_gc(fake_gc_b), True, o.gan_mode)
            loss_gc = geometry_consistency_loss(fake_b, fake_gc_b, o.geometry)
            loss_g = o.lambda_adv * (loss_adv + loss_adv_gc) + o.lambda_ab * o.lambda_gc * loss_gc
            losses = {"G_AB": loss_adv, "G_gc_AB": loss_adv_gc, "gc": loss_gc}
            if use_idt:
                loss_idt = F.l1_loss(out[n:], real_b)
                loss_idt_gc = F.l1_loss(out_gc[n:], real_gc_b)
                loss_g = loss_g + o.lambda_ab * o.lambda_identity * (loss_idt + loss_idt_gc)
                losses.update(idt=loss_idt, idt_gc=loss_idt_gc)
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        set_requires_grad([d_b, d_gc], True)
        with ctx.autocast():
            loss_d = discriminator_loss(d_b, real_b, self.pool.query(fake_b), o.gan_mode)
            loss_d_gc = discriminator_loss(d_gc, real_gc_b, self.pool_gc.query(fake_gc_b), o.gan_mode)
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d + loss_d_gc)
        ctx.step(self.optimizers["D"])
        losses.update(D_B=loss_d, D_gc=loss_d_gc)
        return {k: v.detach() for k, v in losses.items()}

    def extra_state(self) -> dict[str, Tensor]:
        return {**self.pool.state_tensors("pool_B"), **self.pool_gc.state_tensors("pool_gc_B")}

    def load_extra_state(self, tensors: dict[str, Tensor]) -> None:
        self.pool.load_state_tensors(tensors, "pool_B", self.device)
        self.pool_gc.load_state_tensors(tensors, "pool_gc_B", self.device)
