"""MaskGAN: a mask-guided CycleGAN with automatically extracted coarse masks.

Phan et al., "Structure-Preserving Synthesis: MaskGAN for Unpaired MR-CT
Translation", MICCAI 2023. Each generator
(:class:`~napari_medtrans.nets.maskgan.MaskGANGenerator`) has a content
decoder and a mask decoder; its last mask (the one that weighs the input) is
supervised with the coarse mask of the input image (mask loss, L1), and the
masks drawn while translating and while translating back must agree (shape
consistency, L1 between the mask of G_AB(a) and that of G_BA(G_AB(a)), and the
same for b). The shape weight ramps up linearly over training, as the
reference code's ``lambda_shape · epoch / epochs``. The rest is CycleGAN's.

Coarse masks come from each slice by the reference code's preprocessing,
applied per 2-D slice (:func:`coarse_masks`): source (MR) scaled to [0, max],
threshold 10/255; target (CT) clipped to the window [−800, 2000] HU, threshold
50/255 (≈ −251 HU); then binary opening, holes smaller than width² pixels
filled (the reference: width³ voxels in 3-D) and the largest connected
component kept. The reference trains on CT clipped to [−800, 2000]; here the
CT keeps the trainer's window (:func:`napari_medtrans.intensity.ct_window`) and
[−800, 2000] is the mask rule's window only — every method then sees the same
data and is scored in the same units.

Defaults from the reference code's README command: ResNet-9 ``att`` generator
with 5 masks, 70×70 PatchGAN, LSGAN, cycle 10, identity 0.5, mask 1.0, shape
0.5, pool 50, Adam 2e-4, β = (0.5, 0.999), N(0, 0.02), decay over the second
half, generator gradients clipped at norm 1. The reference's ``shapeA`` compares
G_BA's mask with the mask of the wrong reconstruction (``att_rec_bg_a``); this
one uses the paper's symmetric term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from napari_medtrans.intensity import ct_window
from napari_medtrans.nets import MaskGANGenerator
from training.losses import gan_loss
from training.methods.base import StepContext, register, set_requires_grad
from training.methods.cyclegan import CycleGAN, CycleGANOptions


@dataclass
class MaskGANOptions(CycleGANOptions):
    generator: str = "resnet"
    """Encoder of the mask-guided generators: ``resnet`` only (the reference's ``att`` generator)."""
    n_blocks: int = 9
    """Residual blocks of the generators' shared encoder (reference ``att``: 9)."""
    n_attentions: int = 5
    """Masks of each generator: n − 1 content images plus the input's mask (reference: 5)."""
    lambda_mask: float = 1.0
    """Weight of the mask loss, L1 of the input's mask against its coarse mask (reference README: 1.0)."""
    lambda_shape: float = 0.5
    """Final weight of the shape-consistency loss, reached linearly at the end of training (reference README: 0.5)."""
    clip_grad_norm: float = 1.0
    """Largest norm of the generators' gradient (reference: 1.0; 0 = no clipping)."""
    source_threshold: float = 10 / 255
    """Coarse source mask: fraction of the slice's maximum (above its minimum) a foreground pixel exceeds (reference: 10/255)."""
    target_window_low: float = -800.0
    """Low end of the HU window of the target (CT) mask rule (reference: −800)."""
    target_window_high: float = 2000.0
    """High end of the HU window of the target (CT) mask rule (reference: 2000)."""
    target_threshold: float = 50 / 255
    """Coarse target mask: threshold as a fraction of the target window (reference: 50/255)."""
    hole_width_source: int = 10
    """Holes of the source mask smaller than this width² are filled (reference MR: 10)."""
    hole_width_target: int = 2
    """Holes of the target mask smaller than this width² are filled (reference CT: 2)."""


def coarse_mask(image: np.ndarray, threshold: float, hole_width: int) -> np.ndarray:
    """Foreground of a 2-D ``image`` scaled to [0, 1]: threshold, binary opening (3×3 cross), holes
    smaller than ``hole_width``² pixels filled, largest 8-connected component (float32 0/1; all
    zero when nothing passes the threshold). scikit-image's defaults, the reference's functions.
    """
    mask = ndimage.binary_opening(image > threshold)
    holes, n_holes = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    if n_holes:
        small = np.flatnonzero(np.bincount(holes.ravel())[1:] < max(hole_width, 1) ** 2) + 1
        mask |= np.isin(holes, small)
    components, n_components = ndimage.label(mask, structure=np.ones((3, 3)))
    if n_components == 0:
        return np.zeros(image.shape, np.float32)
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    return (components == largest).astype(np.float32)


def coarse_masks(
    images: Tensor, threshold: float, hole_width: int, window: tuple[float, float] | None = None
) -> Tensor:
    """Coarse masks (B, 1, H, W) of network-range slices (B, C, H, W) (the centre channel).

    ``window``: CT rule — map to HU with the trainer's CT window, clip to ``window``
    and scale it to [0, 1]; None: MR rule — shift to [0, …] and divide by the slice's maximum.
    """
    centre = images[:, images.shape[1] // 2].detach().float().cpu().numpy()
    if window is not None:
        low, high = window
        hu = ct_window().output_mapping().from_network(centre)
        scaled = (np.clip(hu, low, high) - low) / (high - low)
    else:
        shifted = centre - centre.min(axis=(1, 2), keepdims=True)
        scaled = shifted / np.maximum(shifted.max(axis=(1, 2), keepdims=True), 1e-8)
    masks = np.stack([coarse_mask(s, threshold, hole_width) for s in scaled])
    return torch.from_numpy(masks)[:, None].to(images.device)


def mask_loss(input_mask_map: Tensor, coarse: Tensor) -> Tensor:
    """L1 between a generator's input mask map (B, 1, H, W) and the coarse mask of its input."""
    return F.l1_loss(input_mask_map.float(), coarse.float())


def shape_consistency_loss(mask_of_translation: Tensor, mask_of_reconstruction: Tensor) -> Tensor:
    """L1 between the input mask map drawn while translating x and the one drawn while translating it back."""
    return F.l1_loss(mask_of_translation.float(), mask_of_reconstruction.float())


@register("maskgan")
class MaskGAN(CycleGAN):
    """CycleGAN's G_AB, G_BA (mask-guided generators), D_A, D_B and image pools."""

    Options = MaskGANOptions

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        if o.generator != "resnet":
            raise ValueError(f"maskgan's generators are its own ResNet 'att' generators; got generator={o.generator!r}")

        def generator(cin: int, cout: int) -> dict[str, Any]:
            return {
                "arch": "maskgan",
                "in_channels": cin,
                "out_channels": cout,
                "ngf": o.ngf,
                "n_blocks": o.n_blocks,
                "n_attentions": o.n_attentions,
                **o.generator_options,
            }

        specs = super().network_specs()
        specs.update(
            G_AB=generator(self.in_channels, self.out_channels), G_BA=generator(self.out_channels, self.in_channels)
        )
        return specs

    def shape_weight(self, ctx: StepContext) -> float:
        """λ_shape ramped linearly from 0 to its value over the run (the reference's per-epoch ramp)."""
        total = ctx.iterations or ctx.iteration or 1
        return self.options.lambda_shape * min(ctx.iteration / (total + 1), 1.0)

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        real_a, real_b = batch["source"], batch["target"]
        mask_a = coarse_masks(real_a, o.source_threshold, o.hole_width_source)
        window = (o.target_window_low, o.target_window_high)
        mask_b = coarse_masks(real_b, o.target_threshold, o.hole_width_target, window)
        g_ab, g_ba = (cast(MaskGANGenerator, self.nets[k]) for k in ("G_AB", "G_BA"))
        d_a, d_b = self.nets["D_A"], self.nets["D_B"]
        with ctx.autocast():
            fake_b, maps_ab = g_ab.forward_with_masks(real_a)
            rec_a, maps_rec_a = g_ba.forward_with_masks(fake_b)
            fake_a, maps_ba = g_ba.forward_with_masks(real_b)
            rec_b, maps_rec_b = g_ab.forward_with_masks(fake_a)
            set_requires_grad([d_a, d_b], False)
            adv_ab = gan_loss(d_b(fake_b), True, o.gan_mode)
            adv_ba = gan_loss(d_a(fake_a), True, o.gan_mode)
            cycle_a = F.l1_loss(rec_a.float(), real_a.float())
            cycle_b = F.l1_loss(rec_b.float(), real_b.float())
            loss_mask_a = mask_loss(maps_ab[:, -1:], mask_a)
            loss_mask_b = mask_loss(maps_ba[:, -1:], mask_b)
            shape_a = shape_consistency_loss(maps_ab[:, -1:], maps_rec_a[:, -1:])
            shape_b = shape_consistency_loss(maps_ba[:, -1:], maps_rec_b[:, -1:])
            loss = (
                adv_ab
                + adv_ba
                + o.lambda_cycle * (cycle_a + cycle_b)
                + o.lambda_mask * (loss_mask_a + loss_mask_b)
                + self.shape_weight(ctx) * (shape_a + shape_b)
            )
            losses = {
                "G_AB": adv_ab,
                "G_BA": adv_ba,
                "cycle_A": cycle_a,
                "cycle_B": cycle_b,
                "mask_A": loss_mask_a,
                "mask_B": loss_mask_b,
                "shape_A": shape_a,
                "shape_B": shape_b,
            }
            if o.lambda_identity > 0:
                idt_b, idt_a = g_ab(real_b), g_ba(real_a)
                loss_idt_a = F.l1_loss(idt_b.float(), real_b.float())
                loss_idt_b = F.l1_loss(idt_a.float(), real_a.float())
                loss = loss + o.lambda_cycle * o.lambda_identity * (loss_idt_a + loss_idt_b)
                losses.update(idt_A=loss_idt_a, idt_B=loss_idt_b)
        optimizer = self.optimizers["G"]
        ctx.zero_grad(optimizer)
        ctx.backward(loss)
        if o.clip_grad_norm > 0:
            ctx.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, o.clip_grad_norm)
        ctx.step(optimizer)
        losses.update(self.discriminator_step(real_a, real_b, fake_a, fake_b, ctx))
        return {k: v.detach() for k, v in losses.items()}
