"""SPADE: synthesis conditioned on the source image's label map (spatially-adaptive normalisation).

Park et al., "Semantic Image Synthesis with Spatially-Adaptive Normalization",
CVPR 2019. Networks in :mod:`napari_medtrans.nets.spade`. Here the label map
is the segmentation of the SOURCE image and the target image is what the
generator learns to draw from it: the translator needs that label map at
inference (its generator spec's ``label_classes``; ``medtrans translate
--labels``, the Translate widget's Labels picker). Paired data: the target must
show the anatomy of the source's labels.

Objective of the paper: hinge adversarial loss of a 2-scale discriminator
conditioned on the labels (input = one-hot labels ‖ image), discriminator
feature matching λ = 10. TTUR: generator lr 1e-4, discriminator 4e-4, Adam
β = (0, 0.999) (the paper; the reference code's default β₂ is 0.9), Xavier
initialisation with gain 0.02, constant learning rate (reference ``niter_decay
0``), generator step first. Deviation: the paper's VGG-19 perceptual loss
(λ = 10) is off — its ImageNet weights are not available offline; every
translator records it in ``deviations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.methods.base import Method, StepContext, register, set_requires_grad

#: Recorded in every SPADE translator's ``deviations``.
VGG_DEVIATION = {"vgg_loss": "off (paper: λ_VGG = 10; no VGG-19 weights offline)"}


@dataclass
class SPADEOptions:
    """SPADE's options (paper / reference code defaults)."""

    n_classes: int = 10
    """Label classes of the conditioning label map (the phantom's 10 tissues)."""
    ngf: int = 64
    """Generator width: its residual blocks have 16, …, 1 × ngf filters (paper: 64)."""
    n_up: int = 5
    """Up-samplings of the generator; it starts at 1/2^n_up of the slice (paper "normal": 5)."""
    hidden: int = 128
    """Filters of each SPADE layer's shared convolution (paper: 128)."""
    norm: str = "batch"
    """Parameter-free normalisation SPADE modulates: ``batch`` (paper: synchronised batch norm) or ``instance``."""
    use_image: bool = False
    """Also condition on the source image (its channels join the label map); the paper: labels only."""
    ndf: int = 64
    """Filters of the discriminators' first layer (paper: 64)."""
    n_layers_d: int = 4
    """Layers of each discriminator (reference ``n_layers_D``: 4)."""
    num_d: int = 2
    """Scales of the multi-scale discriminator (reference ``num_D``: 2)."""
    lambda_feat: float = 10.0
    """Weight of the discriminator feature-matching loss (paper: 10)."""
    lr_d_factor: float = 4.0
    """Discriminator learning rate as a multiple of the generator's (TTUR, paper: 4e-4 / 1e-4)."""
    lr_decay_start: float = 1.0
    """Fraction of the iterations after which the learning rate decays linearly to 0 (reference: 1 = constant)."""


def one_hot(labels: Tensor, classes: int) -> Tensor:
    """(B, H, W) integer labels → (B, K, H, W) float one-hot; labels outside [0, K) are a ValueError."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(
            f"label values must lie in [0, {classes}), got [{int(labels.min())}, {int(labels.max())}]; "
            "set model.n_classes to the number of label classes"
        )
    return F.one_hot(labels.long(), classes).permute(0, 3, 1, 2).float()


def hinge_d_loss(real_scores: list[Tensor], fake_scores: list[Tensor]) -> Tensor:
    """Discriminator hinge loss averaged over scales: E[max(0, 1 − D(real))] + E[max(0, 1 + D(fake))]."""
    terms = [F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean() for r, f in zip(real_scores, fake_scores)]
    return torch.stack(terms).mean()


def hinge_g_loss(fake_scores: list[Tensor]) -> Tensor:
    """Generator hinge loss averaged over scales: −E[D(fake)]."""
    return torch.stack([-f.float().mean() for f in fake_scores]).mean()


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """L1 between the discriminators' intermediate features of fake and (detached) real, averaged over scales."""
    terms = [
        F.l1_loss(f.float(), r.detach().float())
        for scale_r, scale_f in zip(real, fake)
        for r, f in zip(scale_r[:-1], scale_f[:-1])
    ]
    return torch.stack(terms).sum() / len(real)


@register("spade")
class SPADE(Method):
    """Generator G (SPADE) and the label-conditioned multi-scale discriminator D."""

    Options = SPADEOptions
    needs_pairs = True
    supports_context = False
    default_lr = 1e-4
    betas = (0.0, 0.999)
    init_type = "xavier"

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        return {
            "G": {
                "arch": "spade",
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "label_classes": o.n_classes,
                "ngf": o.ngf,
                "n_up": o.n_up,
                "hidden": o.hidden,
                "norm": o.norm,
                "use_image": o.use_image,
            },
            "D": {
                "arch": "spade_discriminator",
                "in_channels": o.n_classes + self.out_channels,
                "ndf": o.ndf,
                "n_layers": o.n_layers_d,
                "num_d": o.num_d,
            },
        }

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.adam("G"), "D": self.adam("D", lr=self.lr * self.options.lr_d_factor)}

    def deviations(self) -> dict[str, Any]:
        return {**super().deviations(), **VGG_DEVIATION}

    def network_input(self, source: Tensor, labels: Tensor | None) -> Tensor:
        if labels is None:
            raise ValueError("spade is conditioned on the source's label map: the data carry no labels (use --phantom)")
        return torch.cat([source, one_hot(labels, self.options.n_classes).to(source.dtype)], 1)

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        if "source_labels" not in batch:
            raise ValueError(
                "spade needs the source's label map in every batch: train on --phantom data "
                "(folder data carry no labels yet)"
            )
        o = self.options
        g, d = self.nets["G"], self.nets["D"]
        source, real = batch["source"], batch["target"]
        labels = one_hot(batch["source_labels"], o.n_classes)
        with ctx.autocast():
            fake = g(self.network_input(source, batch["source_labels"]))
            set_requires_grad(d, False)
            both = d(torch.cat([torch.cat([labels, fake], 1), torch.cat([labels, real], 1)], 0))
            fake_feats = [[t[: len(fake)] for t in scale] for scale in both]
            real_feats = [[t[len(fake) :] for t in scale] for scale in both]
            loss_gan = hinge_g_loss([scale[-1] for scale in fake_feats])
            loss_feat = o.lambda_feat * feature_matching_loss(real_feats, fake_feats)
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_gan + loss_feat)
        ctx.step(self.optimizers["G"])
        set_requires_grad(d, True)
        with ctx.autocast():
            scores = d(torch.cat([torch.cat([labels, fake.detach()], 1), torch.cat([labels, real], 1)], 0))
            n = len(fake)
            loss_d = hinge_d_loss([s[-1][n:] for s in scores], [s[-1][:n] for s in scores])
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d)
        ctx.step(self.optimizers["D"])
        return {"G_gan": loss_gan.detach(), "G_feat": loss_feat.detach(), "D": loss_d.detach()}
