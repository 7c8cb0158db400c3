"""UNSB: unpaired translation with a neural Schrödinger bridge.

Kim et al., "Unpaired Image-to-Image Translation via Neural Schrödinger
Bridge", ICLR 2024. Defaults from the paper / public code (cyclomon/UNSB,
``models/sb_model.py``, ``options/``, ``run_train.sh``): a time- and
latent-conditioned ResNet generator (9 blocks, ngf 64) taking T = 5 bridge
steps (NFE 5), τ = 0.01; a time-conditioned 70×70 PatchGAN D (LSGAN) and a
time-conditioned PatchGAN energy network E on pairs (x_t, x̂₁);
λ_GAN 1, λ_SB 1 (the training command; the option's code default is 0.1),
λ_NCE 1 with the identity NCE on target images, PatchNCE on layers
0,4,8,12,16 of the reference (0,4,7,10,14 of ours) with 256 patches, 256
features and temperature 0.07; Adam lr 2e-4, β = (0.5, 0.999), Xavier
initialisation (gain 0.02), linear decay over the second half.

One step (the reference's ``optimize_parameters``): draw a step t, simulate
the bridge from the source to x_t without gradients (each step: G's
prediction, then the Brownian-bridge interpolation with √(τ·s) noise), predict
x̂₁ = G(x_t, t, z); update D on (x̂₁, target), then E on the entropy term,
then G (and the PatchNCE head) on
``L_GAN + λ_SB·[−(T−t)/T·τ·(E(x_t,x̂₁; same) − logsumexp E(x_t,x̂₁; other)) + τ·‖x_t − x̂₁‖²] + λ_NCE·NCE``.

The energy network contrasts each translation with one of an independent
source image; the reference loads a second batch for it. Here the independent
image is the previous step's source (kept for the next step and in the
checkpoint; the first step uses the mirrored source). PatchNCE is CUT's
(:mod:`training.methods.cut`), with the encoder features taken at time 0 and
a random latent code as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn

from napari_medtrans.nets.time_conditioned import SBResnetGenerator
from training.losses import gan_loss
from training.methods._stochastic import translate_sampled
from training.methods.base import StepContext, register, set_requires_grad
from training.methods.cut import CUT, CUTOptions, PatchSampleMLP


@dataclass
class UNSBOptions(CUTOptions):
    num_timesteps: int = 5
    """Bridge steps T, the number of function evaluations at inference (paper: NFE 5)."""
    tau: float = 0.01
    """Entropy coefficient τ of the bridge (reference ``--tau``: 0.01)."""
    lambda_sb: float = 1.0
    """Weight of the entropy-regularised SB loss (reference training command ``--lambda_SB 1.0``)."""
    n_mlp: int = 3
    """Hidden layers of the generator's latent mapping (reference ``--n_mlp``: 3)."""


@register("unsb")
class UNSB(CUT):
    """Stochastic generator G (the exported sampler), time-conditioned D and energy network E, MLP head F."""

    Options = UNSBOptions

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        super().network_specs()  # checks nce_layers against the encoder
        patchgan = {"arch": "patchgan_t", "ndf": o.ndf, "n_layers": o.n_layers_d}
        return {
            "G": {
                "arch": "unsb",
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "ngf": o.ngf,
                "n_blocks": o.n_blocks,
                "n_mlp": o.n_mlp,
                "num_timesteps": o.num_timesteps,
                "tau": o.tau,
                "stochastic": True,
                "steps": o.num_timesteps,
            },
            "D": {**patchgan, "in_channels": self.out_channels},
            "E": {**patchgan, "in_channels": 4 * self.out_channels},
        }

    def extra_networks(self) -> dict[str, nn.Module]:
        G = cast(SBResnetGenerator, self.nets["G"])
        with torch.no_grad():
            probe = torch.zeros(1, self.in_channels, 32, 32, device=self.device)
            feats = G.features(probe, self.options.nce_layers, 0, G.latent(probe, None))
        return {"F": PatchSampleMLP([f.shape[1] for f in feats], self.options.nce_features)}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.previous_source: Tensor | None = None
        return {**super().build_optimizers(), "E": self.adam("E")}

    def translate(self, source: Tensor) -> dict[str, Tensor]:
        return translate_sampled(self.generator, source)

    def _energy_terms(self, noisy: Tensor, fake: Tensor, noisy2: Tensor, fake2: Tensor, t: Tensor) -> Tensor:
        """E(x_t ⊕ x̂₁, t, same) averaged, minus logsumexp over E(x_t ⊕ x̂₁, t, other)."""
        E = self.nets["E"]
        pair, other = torch.cat([noisy, fake], 1), torch.cat([noisy2, fake2], 1)
        return E(pair, t, pair).mean() - torch.logsumexp(E(pair, t, other).reshape(-1), 0)

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        G, D, E = cast(SBResnetGenerator, self.nets["G"]), self.nets["D"], self.nets["E"]
        real_a, real_b = batch["source"], batch["target"]
        n, noise = real_a.shape[0], ctx.generator
        real_a2 = self.previous_source if self.previous_source is not None else torch.flip(real_a, [3])
        if real_a2.shape != real_a.shape:
            real_a2 = torch.flip(real_a, [3])
        self.previous_source = real_a.detach().clone()
        t_index = int(torch.randint(o.num_timesteps, (1,), generator=noise))
        t = torch.full((n,), t_index, dtype=torch.long, device=real_a.device)
        starts = torch.cat([real_a, real_a2] + ([real_b] if o.nce_idt else []), 0)
        with ctx.autocast():
            with torch.no_grad():
                noisy_all = G.noisy_state(starts, t_index, noise)
            noisy, noisy2 = noisy_all[:n], noisy_all[n : 2 * n]
            inputs = torch.cat([noisy, noisy_all[2 * n :]], 0) if o.nce_idt else noisy
            flipped = o.flip_equivariance and bool(torch.rand((), generator=noise) < 0.5)
            if flipped:
                inputs = torch.flip(inputs, [3])
            step_t = torch.full((inputs.shape[0] + n,), t_index, dtype=torch.long, device=real_a.device)
            both = torch.cat([inputs, noisy2], 0)
            out = G.denoise(both, step_t, G.latent(both, noise))
            fake_b, fake_b2 = out[:n], out[inputs.shape[0] :]
            pred_real, pred_fake = D(torch.cat([real_b, fake_b.detach()], 0), t_index).chunk(2, 0)
            loss_d = 0.5 * (gan_loss(pred_real, True, "lsgan") + gan_loss(pred_fake, False, "lsgan"))
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d)
        ctx.step(self.optimizers["D"])
        with ctx.autocast():
            temp = torch.logsumexp(
                E(torch.cat([noisy, fake_b.detach()], 1), t, torch.cat([noisy2, fake_b2.detach()], 1)).reshape(-1), 0
            )
            pair = torch.cat([noisy, fake_b.detach()], 1)
            loss_e = -E(pair, t, pair).mean() + temp + temp**2
        ctx.zero_grad(self.optimizers["E"])
        ctx.backward(loss_e)
        ctx.step(self.optimizers["E"])
        set_requires_grad([D, E], False)
        with ctx.autocast():
            loss_gan = gan_loss(D(fake_b, t_index), True, "lsgan")
            energy = self._energy_terms(noisy, fake_b, noisy2, fake_b2, t)
            loss_sb = -(o.num_timesteps - t_index) / o.num_timesteps * o.tau * energy
            loss_sb = loss_sb + o.tau * torch.mean((noisy - fake_b) ** 2)
            z = G.latent(real_a, noise)
            features = partial(G.features, layer_ids=o.nce_layers, t=0, z=z)
            loss_nce = self._nce(real_a, fake_b, flipped, ctx, features)
            losses = {"G_GAN": loss_gan, "SB": loss_sb, "NCE": loss_nce, "D": loss_d, "E": loss_e}
            nce_total = loss_nce
            if o.nce_idt:
                loss_nce_y = self._nce(real_b, out[n : 2 * n], flipped, ctx, features)
                nce_total = 0.5 * (loss_nce + loss_nce_y)
                losses["NCE_Y"] = loss_nce_y
            loss_g = o.lambda_gan * loss_gan + o.lambda_sb * loss_sb + o.lambda_nce * nce_total
        ctx.zero_grad(self.optimizers["G"], self.optimizers["F"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        ctx.step(self.optimizers["F"])
        set_requires_grad([D, E], True)
        return {k: v.detach() for k, v in losses.items()}

    def extra_state(self) -> dict[str, Tensor]:
        return {} if self.previous_source is None else {"previous_source": self.previous_source}

    def load_extra_state(self, tensors: dict[str, Tensor]) -> None:
        if "previous_source" in tensors:
            self.previous_source = tensors["previous_source"].to(self.device)
