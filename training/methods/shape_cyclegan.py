"""Shape-consistent CycleGAN: CycleGAN plus segmenters that keep the anatomy.

Zhang, Yang and Zheng, "Translating and Segmenting Multimodal Medical Volumes
with Cycle- and Shape-Consistency Generative Adversarial Network", CVPR 2018.
Two segmenters S_A and S_B (one per domain) train together with the
generators: the shape-consistency loss is the cross-entropy of S_B(G_AB(a))
against a's label map and of S_A(G_BA(b)) against b's, and the segmenters
also learn from the real images with their labels. Objective
L_GAN + λ·L_cyc + γ·L_shape with λ = 10, γ = 1 (the paper's text; there is no
public reference code); the rest is CycleGAN's (:mod:`training.methods.cyclegan`)
without the identity term, which the paper does not use. The paper's networks
are 3-D; here they are the project's 2-D ResNet generators and segmentation U-Nets.

Needs label maps for both domains in every batch (``source_labels``,
``target_labels``): the phantom regimes provide them, folders do not yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from training.methods.base import StepContext, register
from training.methods.cyclegan import CycleGAN, CycleGANOptions


@dataclass
class ShapeCycleGANOptions(CycleGANOptions):
    lambda_identity: float = 0.0
    """Identity loss weight as a fraction of λ (the paper uses none: 0)."""
    lambda_shape: float = 1.0
    """Shape-consistency weight γ on the segmenters' cross-entropy of the translations (paper: 1)."""
    lambda_seg: float = 1.0
    """Weight of the segmenters' cross-entropy on the real images."""
    n_classes: int = 10
    """Label classes of the segmenters (the phantom's 10 tissues)."""
    seg_features: int = 16
    """Filters of the segmentation U-Nets' first level."""
    seg_depth: int = 3
    """Resolution levels of the segmentation U-Nets."""


def shape_consistency_loss(seg_logits_of_translation: Tensor, source_labels: Tensor) -> Tensor:
    """Cross-entropy of a segmenter's logits (B, K, H, W) on a translation against the labels
    (B, H, W) of the image it was translated from.
    """
    return F.cross_entropy(seg_logits_of_translation.float(), source_labels)


@register("shape-cyclegan")
class ShapeCycleGAN(CycleGAN):
    """CycleGAN's G_AB, G_BA, D_A, D_B plus segmenters S_A, S_B, stepped with the generators."""

    Options = ShapeCycleGANOptions

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        seg = {"arch": "seg_unet", "n_classes": o.n_classes, "features": o.seg_features, "depth": o.seg_depth}
        return {
            **super().network_specs(),
            "S_A": {**seg, "in_channels": self.in_channels},
            "S_B": {**seg, "in_channels": self.out_channels},
        }

    def build_optimizers(self) -> dict:
        return {**super().build_optimizers(), "S": self.adam("S_A", "S_B")}

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        if "source_labels" not in batch or "target_labels" not in batch:
            raise ValueError(
                "shape-cyclegan needs label maps of both domains: train on --phantom data "
                "(folder data carry no labels yet)"
            )
        o = self.options
        s_a, s_b = self.nets["S_A"], self.nets["S_B"]
        real_a, real_b = batch["source"], batch["target"]
        labels_a, labels_b = batch["source_labels"], batch["target_labels"]
        with ctx.autocast():
            loss_g, losses, fake_a, fake_b = self.generator_losses(real_a, real_b)
            loss_shape = shape_consistency_loss(s_b(fake_b), labels_a) + shape_consistency_loss(s_a(fake_a), labels_b)
            loss_seg = F.cross_entropy(s_a(real_a).float(), labels_a) + F.cross_entropy(s_b(real_b).float(), labels_b)
            loss = loss_g + o.lambda_shape * loss_shape + o.lambda_seg * loss_seg
        losses.update(shape=loss_shape, seg=loss_seg)
        ctx.zero_grad(self.optimizers["G"], self.optimizers["S"])
        ctx.backward(loss)
        ctx.step(self.optimizers["G"])
        ctx.step(self.optimizers["S"])
        losses.update(self.discriminator_step(real_a, real_b, fake_a, fake_b, ctx))
        return {k: v.detach() for k, v in losses.items()}
