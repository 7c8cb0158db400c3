"""SynDiff: unpaired translation with adversarial diffusion and a cycle-consistent non-diffusive module.

Özbey et al., "Unsupervised Medical Image Translation with Adversarial
Diffusion Models", IEEE TMI 2023. Defaults from the paper / public code
(icon-lab/SynDiff ``train.py`` and the README's training command): T = 4
diffusion steps on a VP schedule (β_min 0.1, β_max 20); diffusive generators
(NCSN++, nf 64, ch_mult 1,1,2,2,4,4, 2 residual blocks, attention at 16²,
latent z of 100 with a 256-wide 3-layer mapping; ours: the documented smaller
equivalent :class:`napari_medtrans.nets.syndiff.DenoisingUNet` with these
sizes); time-conditioned discriminators on (x_t, x_{t+1}) with the
non-saturating (softplus) loss and an R1 penalty γ = 1 every 10 steps (lazy
regularisation); non-diffusive ResNet generators (6 blocks, ngf 64) with
PatchGAN discriminators; λ = 0.5 for the cycle and the diffusive L1 losses;
Adam β = (0.5, 0.9), lr 1.6e-4 (generators) and 1e-4 (discriminators), EMA
0.999 of the generators' weights (the exported translator is the EMA of the
target-side diffusive generator). The learning rates follow a cosine to 1e-5
over the run, as the reference's ``CosineAnnealingLR`` (stepped per iteration
here, per epoch there).

One step (the reference's order): the diffusive discriminators see real
pairs (x_t, x_{t+1}) of each domain and fake ones whose x_t is drawn from the
posterior q(x_t | x_{t+1}, x̂₀) of the diffusive generator's prediction x̂₀;
the non-diffusive discriminators see real images and translations; then all
four generators minimise
``λ·(cycle + L1(x̂₀, x₀)) + adversarial(diffusive) + adversarial(non-diffusive)``.
The source-guided conditioning of the unpaired training: the diffusive
generator of the target domain denoises x_{t+1} of a *real target* image
conditioned on its non-diffusive translation to the source domain, so its L1
to the real image is a cycle through both modules; at inference it is
conditioned on the real source image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_medtrans.nets.syndiff import SynDiffGenerator
from training.losses import gan_loss
from training.methods._stochastic import ema_update, translate_sampled
from training.methods.base import GeneratorOptions, Method, StepContext, register, set_requires_grad


@dataclass
class SynDiffOptions(GeneratorOptions):
    n_blocks: int = 6
    """Residual blocks of the non-diffusive ResNet generators (reference ``resnet_6blocks``)."""
    lr_decay_start: float = 0.0
    """Fraction of the iterations after which the learning rates decay (reference: from the start)."""
    lr_schedule: Literal["linear", "cosine"] = "cosine"
    """Shape of the decay (reference: ``CosineAnnealingLR`` over the whole run)."""
    lr_min: float = 1e-5
    """Learning rate at the end of the decay (reference: ``eta_min`` 1e-5)."""
    lr_d: float = 1e-4
    """Learning rate of the discriminators (reference ``--lr_d``: 1e-4)."""
    num_timesteps: int = 4
    """Diffusion steps T (paper: 4)."""
    beta_min: float = 0.1
    """VP noise schedule β_min (reference ``--beta_min``: 0.1)."""
    beta_max: float = 20.0
    """VP noise schedule β_max (reference ``--beta_max``: 20)."""
    nf: int = 64
    """Base width of the diffusive U-Net (reference ``--num_channels_dae``: 64)."""
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4, 4])
    """Width multipliers of the U-Net levels (reference ``--ch_mult 1 1 2 2 4 4``)."""
    num_res_blocks: int = 2
    """Residual blocks per U-Net level (reference: 2)."""
    attn_levels: list[int] = field(default_factory=lambda: [4])
    """U-Net levels with self-attention (reference: resolution 16 at 256², level 4)."""
    nz: int = 100
    """Latent code size (reference ``--nz``: 100)."""
    z_emb_dim: int = 256
    """Width of the latent mapping (reference ``--z_emb_dim``: 256)."""
    n_mlp: int = 3
    """Layers of the latent mapping (reference ``--n_mlp``: 3)."""
    ndf: int = 64
    """Filters of the discriminators' first layer (reference ``--ngf`` of the discriminators: 64)."""
    n_layers_d: int = 3
    """Stride-2 layers of the discriminators (reference PatchGAN: 3)."""
    lambda_l1: float = 0.5
    """Weight of the cycle and diffusive L1 losses (reference ``--lambda_l1_loss``: 0.5)."""
    r1_gamma: float = 1.0
    """R1 penalty γ on the diffusive discriminators (reference training command: 1)."""
    lazy_reg: int = 10
    """Apply the R1 penalty every this many steps (reference training command: 10)."""
    ema_decay: float = 0.999
    """EMA decay of the exported generator's weights (reference command ``--use_ema --ema_decay 0.999``; 0: none)."""


@register("syndiff")
class SynDiff(Method):
    """Diffusive generators G_diff_B (the translator), G_diff_A; non-diffusive G_AB, G_BA; four discriminators."""

    Options = SynDiffOptions
    supports_context = False
    default_lr = 1.6e-4
    betas = (0.5, 0.9)
    init_type = "normal"
    generator_net = "G_diff_B_ema"

    def _diffusive_spec(self, condition: int, out: int) -> dict[str, Any]:
        o = self.options
        return {
            "arch": "syndiff",
            "in_channels": condition,
            "out_channels": out,
            "num_timesteps": o.num_timesteps,
            "beta_min": o.beta_min,
            "beta_max": o.beta_max,
            "nf": o.nf,
            "ch_mult": list(o.ch_mult),
            "num_res_blocks": o.num_res_blocks,
            "attn_levels": list(o.attn_levels),
            "nz": o.nz,
            "z_emb_dim": o.z_emb_dim,
            "n_mlp": o.n_mlp,
            "stochastic": True,
            "steps": o.num_timesteps,
        }

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o, a, b = self.options, self.in_channels, self.out_channels
        patch_t = {"arch": "patchgan_t", "ndf": o.ndf, "n_layers": o.n_layers_d}
        patch = {"arch": "patchgan", "ndf": o.ndf, "n_layers": o.n_layers_d}
        specs = {
            "G_diff_B": self._diffusive_spec(a, b),
            "G_diff_A": self._diffusive_spec(b, a),
            "G_AB": self.generator_spec(a, b),
            "G_BA": self.generator_spec(b, a),
            "D_diff_B": {**patch_t, "in_channels": 2 * b},
            "D_diff_A": {**patch_t, "in_channels": 2 * a},
            "D_B": {**patch, "in_channels": b},
            "D_A": {**patch, "in_channels": a},
        }
        specs["G_diff_B_ema"] = specs["G_diff_B"]
        return specs

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        for name in ("G_diff_A", "G_diff_B"):
            cast(SynDiffGenerator, self.nets[name]).net.initialise()
        self.nets["G_diff_B_ema"].load_state_dict(self.nets["G_diff_B"].state_dict())  # never in a loss
        generators = ("G_diff_A", "G_diff_B", "G_AB", "G_BA")
        return {
            "G": self.adam(*generators),
            "D": self.adam("D_diff_A", "D_diff_B", "D_A", "D_B", lr=self.options.lr_d),
        }

    def translate(self, source: Tensor) -> dict[str, Tensor]:
        return translate_sampled(self.generator, source)

    @staticmethod
    def _fake_state(
        net: SynDiffGenerator, x_next: Tensor, condition: Tensor, t: Tensor, noise: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """(x̂₀, x_t drawn from q(x_t | x_{t+1}, x̂₀)) of a diffusive generator."""
        x0 = net.predict_x0(x_next, condition, t, net.latent(x_next, noise))
        return x0, net.posterior(x0, x_next, t + 1, t, noise)

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o, nets, noise = self.options, self.nets, ctx.generator
        real_a, real_b = batch["source"], batch["target"]
        n = real_a.shape[0]
        gd_a, gd_b = cast(SynDiffGenerator, nets["G_diff_A"]), cast(SynDiffGenerator, nets["G_diff_B"])
        g_ab, g_ba = nets["G_AB"], nets["G_BA"]
        dd_a, dd_b, d_a, d_b = nets["D_diff_A"], nets["D_diff_B"], nets["D_A"], nets["D_B"]

        def steps() -> tuple[Tensor, Tensor]:
            drawn = torch.randint(o.num_timesteps, (2, n), generator=noise).to(real_a.device)
            return drawn[0], drawn[1]

        # --- discriminators -------------------------------------------------------
        t_a, t_b = steps()
        xa_t, xa_next = gd_a.noisy_pair(real_a, t_a, noise)
        xb_t, xb_next = gd_b.noisy_pair(real_b, t_b, noise)
        with torch.no_grad(), ctx.autocast():
            fake_a, fake_b = g_ba(real_b), g_ab(real_a)
            fake_xa = self._fake_state(gd_a, xa_next, fake_b, t_a, noise)[1]
            fake_xb = self._fake_state(gd_b, xb_next, fake_a, t_b, noise)[1]
        penalise = o.r1_gamma > 0 and (ctx.iteration - 1) % max(o.lazy_reg, 1) == 0
        xa_t.requires_grad_(penalise)
        xb_t.requires_grad_(penalise)
        with ctx.autocast():
            real_da, real_db = dd_a(xa_t, t_a, xa_next), dd_b(xb_t, t_b, xb_next)
            loss_d_diff = (
                gan_loss(real_da, True, "vanilla")
                + gan_loss(real_db, True, "vanilla")
                + gan_loss(dd_a(fake_xa, t_a, xa_next), False, "vanilla")
                + gan_loss(dd_b(fake_xb, t_b, xb_next), False, "vanilla")
            )
            loss_d_cycle = (
                gan_loss(d_a(real_a), True, "vanilla")
                + gan_loss(d_b(real_b), True, "vanilla")
                + gan_loss(d_a(fake_a), False, "vanilla")
                + gan_loss(d_b(fake_b), False, "vanilla")
            )
        loss_d = loss_d_diff + loss_d_cycle
        losses = {"D_diff": loss_d_diff, "D_cycle": loss_d_cycle}
        if penalise:
            grads = torch.autograd.grad((real_da.float().sum(), real_db.float().sum()), (xa_t, xb_t), create_graph=True)
            r1 = grads[0].flatten(1).pow(2).sum(1).mean() + grads[1].flatten(1).pow(2).sum(1).mean()
            loss_d = loss_d + o.r1_gamma / 2 * r1
            losses["R1"] = r1
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d)
        ctx.step(self.optimizers["D"])

        # --- generators -------------------------------------------------------------
        set_requires_grad([dd_a, dd_b, d_a, d_b], False)
        t_a, t_b = steps()
        xa_next = gd_a.noisy_pair(real_a, t_a, noise)[1]
        xb_next = gd_b.noisy_pair(real_b, t_b, noise)[1]
        with ctx.autocast():
            fake_a = g_ba(real_b)
            out_ab = g_ab(torch.cat([real_a, fake_a], 0))
            fake_b, rec_b = out_ab[:n], out_ab[n:]
            rec_a = g_ba(fake_b)
            x0_a, pos_a = self._fake_state(gd_a, xa_next, fake_b, t_a, noise)
            x0_b, pos_b = self._fake_state(gd_b, xb_next, fake_a, t_b, noise)
            adv_diff = gan_loss(dd_a(pos_a, t_a, xa_next), True, "vanilla") + gan_loss(
                dd_b(pos_b, t_b, xb_next), True, "vanilla"
            )
            adv_cycle = gan_loss(d_a(fake_a), True, "vanilla") + gan_loss(d_b(fake_b), True, "vanilla")
            l1 = F.l1_loss(x0_a, real_a) + F.l1_loss(x0_b, real_b)
            cycle = F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b)
            loss_g = o.lambda_l1 * (cycle + l1) + adv_diff + adv_cycle
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        set_requires_grad([dd_a, dd_b, d_a, d_b], True)
        ema_update(nets["G_diff_B_ema"], gd_b, o.ema_decay)
        losses.update(G_adv_diff=adv_diff, G_adv_cycle=adv_cycle, L1_diff=l1, cycle=cycle)
        return {k: v.detach() for k, v in losses.items()}
