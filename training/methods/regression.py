"""Paired regression: a residual U-Net trained with L1 on aligned pairs (the clinical baseline).

The approach of the SynthRAD2023/2025 MR→CT winners: an nnU-Net-style network
(Isensee et al., Nature Methods 2021; residual encoder, "nnU-Net Revisited",
MICCAI 2024) regressing the CT directly, no adversary. Network:
:class:`napari_medtrans.nets.res_unet.ResUNet` (instance norm, leaky ReLU,
residual encoder blocks). Loss: L1 against the aligned target at full
resolution, plus deep supervision: the same loss at 1/2, 1/4, … resolution
against the area-downsampled target, weighted 1, 1/2, 1/4, … and normalised
(nnU-Net's weights). 2.5-D input through ``data.context_slices``.

Where this differs from nnU-Net (whose recipe is SGD, Nesterov momentum 0.99,
lr 1e-2, polynomial decay, weight decay 3e-5, 1000 epochs): Adam (lr 1e-3,
β = (0.9, 0.999)) with the trainer's linear decay from the first iteration,
which converges within the few thousand iterations a CPU allows. 1e-3 is the
top of the Adam range used with nnU-Net-style regression networks (3e-4–1e-3);
on validation subjects it reached 189 HU where 3e-4 reached 305 HU after the
same 300 iterations (``benchmarks/results/regression_recipe.md``).

Named options, off by default (recorded in the translator's ``deviations``):
``lambda_ssim`` adds 1 − SSIM at full resolution; ``sigma_head`` adds a
softplus σ head trained with the Laplace negative log-likelihood in place of
the full-resolution L1 (the translator then outputs an uncertainty map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import DataConfig
from training.losses import area_downsample, deep_supervision_weights, laplace_nll, ssim_loss
from training.methods.base import GeneratorOptions, Method, StepContext, register
from training.patches import Patch, network_3d


@dataclass
class RegressionOptions(GeneratorOptions):
    generator: str = "res_unet"
    """Generator architecture (nnU-Net style: ``res_unet``; ``resnet`` and ``unet`` also work, without deep supervision)."""
    ngf: int = 32
    """Filters of the network's first stage (nnU-Net: 32)."""
    depth: int = 5
    """Downsampling stages of the residual U-Net (nnU-Net at 128²: 5, a 4×4 bottleneck)."""
    encoder_blocks: int = 2
    """Residual blocks per encoder stage."""
    lr_decay_start: float = 0.0
    """Fraction of the iterations before the learning rate decays linearly to 0 (nnU-Net decays from the start)."""
    deep_supervision: bool = True
    """Add the L1 of the lower-resolution heads with nnU-Net's weights 1, 1/2, 1/4, …"""
    lambda_ssim: float = 0.0
    """OPTION: weight of a 1 − SSIM term at full resolution (0 = L1 only)."""
    sigma_head: bool = False
    """OPTION: a softplus σ head trained with the Laplace NLL instead of the full-resolution L1 (outputs a σ map)."""
    dims: Literal[2, 3] = 2
    """2: slices (2-D; 2.5-D with data.context_slices); 3: 3-D patches (patch_depth × size²), sliding-window inference."""
    patch_depth: int = 32
    """Slices of a 3-D training patch along data.slice_axis (dims 3 only; a multiple of 2 ** depth)."""


@register("regression")
class Regression(Method):
    """Residual U-Net regressing the target with L1 + deep supervision (no adversary)."""

    Options = RegressionOptions
    needs_pairs = True
    default_lr = 1e-3
    betas = (0.9, 0.999)
    init_type = "he"

    def __init__(self, options: RegressionOptions, **kwargs: Any) -> None:
        # the outputs depend on the options here (a σ map only with the σ head)
        self.outputs = ("image", "scale") if options.sigma_head else ("image",)  # type: ignore[misc]
        super().__init__(options, **kwargs)

    @property
    def deep(self) -> bool:
        """Whether this run adds the deep-supervision losses (the generator must have the heads)."""
        return self.options.deep_supervision and hasattr(self.generator, "forward_deep")

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        extra: dict[str, Any] = (
            {"depth": o.depth, "encoder_blocks": o.encoder_blocks} if o.generator == "res_unet" else {}
        )
        if o.sigma_head:
            extra["scale_head"] = True
        if o.dims == 3:
            extra.update(network_3d(o.generator))
        return {"G": self.generator_spec(self.in_channels, self.out_channels, **extra)}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.adam("G")}

    def patch_3d(self, data: DataConfig) -> Patch | None:
        o = self.options
        return (o.patch_depth, data.size, data.size) if o.dims == 3 else None

    def _outputs(self, source: Tensor) -> tuple[list[Tensor], Tensor | None]:
        """Images (full resolution first; lower ones with deep supervision) and σ (with the σ head)."""
        G: Any = self.generator  # forward_with_scale / forward_deep are not nn.Module methods
        if self.options.sigma_head:
            image, scale = G.forward_with_scale(source)
            lower = G.forward_deep(source)[1:] if self.deep else []
            return [image, *lower], scale
        return (G.forward_deep(source) if self.deep else [G(source)]), None

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        source, target = batch["source"], batch["target"]
        with ctx.autocast():
            images, scale = self._outputs(source)
            full = images[0].float()
            losses = {"L1": F.l1_loss(full, target)}
            main = laplace_nll(full, target, scale.float()) if scale is not None else losses["L1"]
            if scale is not None:
                losses["NLL"] = main
            weights = deep_supervision_weights(len(images))
            loss = weights[0] * main
            for level, (weight, image) in enumerate(zip(weights[1:], images[1:]), start=1):
                loss = loss + weight * F.l1_loss(image.float(), area_downsample(target, 2**level))
            if o.lambda_ssim > 0:
                losses["SSIM"] = ssim_loss(full, target)
                loss = loss + o.lambda_ssim * losses["SSIM"]
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss)
        ctx.step(self.optimizers["G"])
        return {"G": loss.detach(), **{k: v.detach() for k, v in losses.items()}}
