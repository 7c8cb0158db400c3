"""CUT and FastCUT: one-sided translation with patchwise contrastive learning.

Park et al., "Contrastive Learning for Unpaired Image-to-Image Translation",
ECCV 2020. Defaults from the paper / public code: ResNet generator, LSGAN
PatchGAN, PatchNCE over five encoder layers with a two-layer MLP head (256
features), 256 patches per layer, temperature 0.07, negatives from the same
image; CUT: λ_NCE 1 with the identity NCE loss on target images; FastCUT:
λ_NCE 10, no identity loss, flip equivariance. Adam lr 2e-4, β = (0.5, 0.999),
Xavier-normal initialisation (gain 0.02); each step updates D first, then G
and the MLP head (the reference's ``optimize_parameters``).

The reference's layer ids 0, 4, 8, 12, 16 index its anti-aliased ResNet
(each downsampling is conv, norm, ReLU, blur-pool): the padded input, the
first and second downsampling convolutions, and the outputs of residual
blocks 1 and 5. Our ResNet downsamples with strided convolutions (3 layers
each), so the same five features are layers 0, 4, 7, 10 and 14
(:data:`REFERENCE_NCE_LAYERS`). Layers must lie in the encoder (before the
first upsampling); with fewer than 5 residual blocks set ``model.nce_layers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_medtrans.nets.resnet import FIRST_BLOCK
from training.losses import gan_loss
from training.methods.base import GeneratorOptions, Method, StepContext, register, set_requires_grad

REFERENCE_NCE_LAYERS = (0, 4, 7, 10, 14)
"""The reference's layers 0, 4, 8, 12, 16 (anti-aliased ResNet) in our ResNet's layer ids."""


@dataclass
class CUTOptions(GeneratorOptions):
    ndf: int = 64
    """Filters of the discriminator's first layer (paper: 64)."""
    n_layers_d: int = 3
    """Stride-2 layers of the PatchGAN discriminator (paper: 3)."""
    nce_layers: list[int] = field(default_factory=lambda: list(REFERENCE_NCE_LAYERS))
    """Generator layers whose features enter PatchNCE (the reference's 0,4,8,12,16 mapped to our ResNet)."""
    nce_features: int = 256
    """Output features of the MLP head (paper: 256)."""
    num_patches: int = 256
    """Sampled locations per layer and image (paper: 256)."""
    nce_temperature: float = 0.07
    """PatchNCE temperature τ (paper: 0.07)."""
    lambda_gan: float = 1.0
    """Adversarial weight (paper: 1)."""
    lambda_nce: float = 1.0
    """PatchNCE weight (paper: CUT 1, FastCUT 10)."""
    nce_idt: bool = True
    """Identity PatchNCE on target images (paper: CUT yes, FastCUT no)."""
    flip_equivariance: bool = False
    """Randomly flip the generator input horizontally (paper: FastCUT only)."""


@dataclass
class FastCUTOptions(CUTOptions):
    lambda_nce: float = 10.0
    """PatchNCE weight (paper: FastCUT 10)."""
    nce_idt: bool = False
    """Identity PatchNCE on target images (paper: FastCUT no)."""
    flip_equivariance: bool = True
    """Randomly flip the generator input horizontally (paper: FastCUT yes)."""


class PatchSampleMLP(nn.Module):
    """Per-layer two-layer MLP projecting sampled feature vectors (CUT's ``PatchSampleF``)."""

    def __init__(self, channels: list[int], features: int) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, features), nn.ReLU(), nn.Linear(features, features)) for c in channels
        )

    def forward(
        self,
        feats: list[Tensor],
        num_patches: int,
        patch_ids: list[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        out, ids = [], []
        for i, feat in enumerate(feats):
            b, c, h, w = feat.shape
            flat = feat.permute(0, 2, 3, 1).reshape(b, h * w, c)
            if patch_ids is not None:
                idx = patch_ids[i]
            else:
                idx = torch.randperm(h * w, generator=generator)[: min(num_patches, h * w)].to(feat.device)
            sample = flat[:, idx, :].reshape(-1, c)
            out.append(F.normalize(self.mlps[i](sample), dim=1).view(b, -1, self.mlps[i][-1].out_features))
            ids.append(idx)
        return out, ids


def patch_nce(query: Tensor, key: Tensor, temperature: float) -> Tensor:
    """PatchNCE loss for (B, N, C) normalised features: positives are the same location,
    negatives the other sampled locations of the same image.
    """
    key = key.detach()
    b, n, _ = query.shape
    logits = torch.bmm(query, key.transpose(1, 2)) / temperature  # (B, N, N); diagonal = positives
    target = torch.arange(n, device=query.device).repeat(b)
    return F.cross_entropy(logits.reshape(b * n, n), target)


@register("cut")
class CUT(Method):
    """Generator G, PatchGAN D, MLP head F."""

    Options = CUTOptions
    supports_context = False
    init_type = "xavier"

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        if o.generator != "resnet":
            raise ValueError("CUT needs the ResNet generator (it samples its encoder layers)")
        encoder_end = FIRST_BLOCK + o.n_blocks  # first upsampling layer
        outside = [layer for layer in o.nce_layers if not 0 <= layer < encoder_end]
        if outside:
            raise ValueError(
                f"model.nce_layers {outside} lie outside the encoder of a {o.n_blocks}-block ResNet "
                f"(layers 0–{encoder_end - 1}); choose encoder layers, e.g. "
                f"model.nce_layers={[layer for layer in REFERENCE_NCE_LAYERS if layer < encoder_end]}"
            )
        return {
            "G": self.generator_spec(self.in_channels, self.out_channels),
            "D": {"arch": "patchgan", "in_channels": self.out_channels, "ndf": o.ndf, "n_layers": o.n_layers_d},
        }

    def extra_networks(self) -> dict[str, nn.Module]:
        with torch.no_grad():
            probe = torch.zeros(1, self.in_channels, 32, 32, device=self.device)
            channels = [f.shape[1] for f in self.nets["G"].features(probe, self.options.nce_layers)]
        return {"F": PatchSampleMLP(channels, self.options.nce_features)}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.adam("G"), "F": self.adam("F"), "D": self.adam("D")}

    def _nce(
        self,
        source: Tensor,
        output: Tensor,
        flipped: bool,
        ctx: StepContext,
        features: Callable[[Tensor], list[Tensor]] | None = None,
    ) -> Tensor:
        """PatchNCE between ``output`` and ``source`` on the generator's ``nce_layers``;
        ``features(x)`` extracts them (default: ``G.features(x, nce_layers)``; UNSB passes its
        time- and latent-conditioned encoder).
        """
        o, G, head = self.options, self.nets["G"], self.nets["F"]
        features = features or partial(G.features, layer_ids=o.nce_layers)
        feat_q = features(output)
        if flipped:
            feat_q = [torch.flip(f, [3]) for f in feat_q]
        feat_k = features(source)
        k_pool, ids = head(feat_k, o.num_patches, generator=ctx.generator)
        q_pool, _ = head(feat_q, o.num_patches, ids)
        return sum(patch_nce(q, k, o.nce_temperature) for q, k in zip(q_pool, k_pool)) / len(q_pool)

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """The reference order: D on the current translation first, then G and F."""
        o = self.options
        G, D = self.nets["G"], self.nets["D"]
        real_a, real_b = batch["source"], batch["target"]
        n = real_a.shape[0]
        flipped = o.flip_equivariance and bool(torch.rand((), generator=ctx.generator) < 0.5)
        inputs = torch.cat([real_a, real_b], 0) if o.nce_idt else real_a
        if flipped:
            inputs = torch.flip(inputs, [3])
        with ctx.autocast():
            out = G(inputs)
            fake_b = out[:n]
            pred_real, pred_fake = D(torch.cat([real_b, fake_b.detach()], 0)).chunk(2, 0)
            loss_d = 0.5 * (gan_loss(pred_real, True, "lsgan") + gan_loss(pred_fake, False, "lsgan"))
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d)
        ctx.step(self.optimizers["D"])
        set_requires_grad(D, False)
        with ctx.autocast():
            loss_gan = gan_loss(D(fake_b), True, "lsgan")
            loss_nce = self._nce(real_a, fake_b, flipped, ctx)
            losses = {"G_GAN": loss_gan, "NCE": loss_nce, "D": loss_d}
            nce_total = loss_nce
            if o.nce_idt:
                loss_nce_y = self._nce(real_b, out[n:], flipped, ctx)
                nce_total = 0.5 * (loss_nce + loss_nce_y)
                losses["NCE_Y"] = loss_nce_y
            loss_g = o.lambda_gan * loss_gan + o.lambda_nce * nce_total
        ctx.zero_grad(self.optimizers["G"], self.optimizers["F"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        ctx.step(self.optimizers["F"])
        set_requires_grad(D, True)
        return {k: v.detach() for k, v in losses.items()}


@register("fastcut")
class FastCUT(CUT):
    """FastCUT: λ_NCE 10, no identity NCE, flip equivariance."""

    Options = FastCUTOptions
