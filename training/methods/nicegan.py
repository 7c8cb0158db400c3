"""NICE-GAN: no independent encoder; the discriminators' first layers encode for the generators.

Chen et al., "Reusing Discriminators for Encoding: Towards Unsupervised
Image-to-Image Translation", CVPR 2020. Networks in
:mod:`napari_medtrans.nets.nicegan`. Each domain has a discriminator whose
encoder (two convolutions + the CAM block) feeds both that discriminator's
multi-scale heads and the generator (decoder) translating out of that domain.
Decoupled training: the encoders are updated by the discriminator loss only;
the generator step back-propagates through them but steps the decoders alone.
Losses (LSGAN on the local, global and CAM outputs) with the paper's weights:
adversarial 1, cycle 10, reconstruction (G_X→X(E_X(x)) ≈ x) 10. Defaults of
the reference code: ngf = ndf = 64, 6 AdaILN blocks, 7-layer discriminators,
Adam lr 1e-4, β = (0.5, 0.999), weight decay 1e-4, linear decay over the second
half, PyTorch's default initialisation; discriminator step first.

The translator is the source discriminator's encoder with the A→B decoder
(:class:`~napari_medtrans.nets.nicegan.NICETranslator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_medtrans.nets import NICEDecoder, NICEDiscriminator, build_network
from training.methods.base import Method, StepContext, register, set_requires_grad


@dataclass
class NICEGANOptions:
    """NICE-GAN's options (reference code defaults)."""

    ngf: int = 64
    """Filters of the decoders' last layer (reference ``--ch``: 64)."""
    ndf: int = 64
    """Filters of the discriminators' (= encoders') first layer (reference ``--ch``: 64)."""
    n_blocks: int = 6
    """AdaILN residual blocks of the decoders (reference ``--n_res``: 6)."""
    n_dis: int = 7
    """Layers of the multi-scale discriminators (reference ``--n_dis``: 7; ≥ 6; the global head needs
    slices of at least 3·2^(n_dis−2) px)."""
    img_size: int = 256
    """Slice size the full decoder's γ/β layers are built for (reference ``--img_size``: 256); features of
    other sizes are average-pooled to it. Unused by the light variant."""
    light: bool = False
    """The light variant: γ/β layers on globally pooled features instead of the flattened map (reference ``--light``)."""
    lambda_adv: float = 1.0
    """Weight of the adversarial terms (paper: 1)."""
    lambda_cycle: float = 10.0
    """Weight of the cycle-consistency terms (paper: 10)."""
    lambda_recon: float = 10.0
    """Weight of the reconstruction terms G_X→X(E_X(x)) ≈ x (paper: 10)."""
    weight_decay: float = 1e-4
    """Adam weight decay of both optimisers (reference: 1e-4)."""
    lr_decay_start: float = 0.5
    """Fraction of the iterations after which the learning rate decays linearly to 0 (reference ``decay_flag``: half)."""


def lsgan(prediction: Tensor, real: bool) -> Tensor:
    """Mean squared distance of the scores from 1 (real) or 0 (fake), as the reference's ``MSE_loss``."""
    prediction = prediction.float()
    return F.mse_loss(prediction, torch.full_like(prediction, 1.0 if real else 0.0))


@register("nicegan")
class NICEGAN(Method):
    """Discriminators D_A, D_B (holding the encoders) and decoders G_AB, G_BA."""

    Options = NICEGANOptions
    supports_context = False
    default_lr = 1e-4
    init_type = "default"
    generator_net = "G_AB"

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        decoder = {"arch": "nicegan_decoder", "in_channels": 2 * o.ndf, "ngf": o.ngf, "n_blocks": o.n_blocks}
        decoder.update(img_size=o.img_size, light=o.light)
        dis = {"arch": "nicegan_discriminator", "ndf": o.ndf, "n_layers": o.n_dis}
        return {
            "G_AB": {**decoder, "out_channels": self.out_channels},
            "G_BA": {**decoder, "out_channels": self.in_channels},
            "D_A": {**dis, "in_channels": self.in_channels},
            "D_B": {**dis, "in_channels": self.out_channels},
        }

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        def adam(*names: str) -> torch.optim.Optimizer:
            params = [p for name in names for p in self.nets[name].parameters()]
            return torch.optim.Adam(
                params, lr=self.lr, betas=self.betas, weight_decay=self.options.weight_decay, foreach=True
            )

        return {"G": adam("G_AB", "G_BA"), "D": adam("D_A", "D_B")}

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        real_a, real_b = batch["source"], batch["target"]
        losses = self.discriminator_step(real_a, real_b, ctx)
        losses.update(self.generator_step(real_a, real_b, ctx))
        return {k: v.detach() for k, v in losses.items()}

    def discriminator_step(self, real_a: Tensor, real_b: Tensor, ctx: StepContext) -> dict[str, Tensor]:
        """Update D_A, D_B (and with them the encoders) on real images and detached translations."""
        o = self.options
        d_a, d_b, g_ab, g_ba = self._networks()
        set_requires_grad([d_a, d_b], True)
        with ctx.autocast():
            *scores_a, z_a = d_a(real_a)
            *scores_b, z_b = d_b(real_b)
            with torch.no_grad():
                fake_b, fake_a = g_ab(z_a), g_ba(z_b)
            loss_d_a = o.lambda_adv * self._d_loss(scores_a, d_a.score(fake_a))
            loss_d_b = o.lambda_adv * self._d_loss(scores_b, d_b.score(fake_b))
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(loss_d_a + loss_d_b)
        ctx.step(self.optimizers["D"])
        return {"D_A": loss_d_a, "D_B": loss_d_b}

    def _networks(self) -> tuple[NICEDiscriminator, NICEDiscriminator, NICEDecoder, NICEDecoder]:
        """(D_A, D_B, G_AB, G_BA), typed."""
        return cast(
            "tuple[NICEDiscriminator, NICEDiscriminator, NICEDecoder, NICEDecoder]",
            tuple(self.nets[k] for k in ("D_A", "D_B", "G_AB", "G_BA")),
        )

    @staticmethod
    def _d_loss(real_scores: list[Tensor], fake_scores: tuple[Tensor, ...]) -> Tensor:
        """Sum over the local, global and CAM outputs of the LSGAN real + fake terms."""
        return sum((lsgan(r, True) + lsgan(f, False) for r, f in zip(real_scores, fake_scores)), torch.zeros(())).to(
            real_scores[0].device
        )

    def generator_step(self, real_a: Tensor, real_b: Tensor, ctx: StepContext) -> dict[str, Tensor]:
        """Update the decoders only: adversarial, cycle and reconstruction terms through frozen encoders/discriminators."""
        o = self.options
        d_a, d_b, g_ab, g_ba = self._networks()
        set_requires_grad([d_a, d_b], False)
        with ctx.autocast():
            z_a, z_b = d_a.encoder(real_a)[0], d_b.encoder(real_b)[0]
            fake_b, fake_a = g_ab(z_a), g_ba(z_b)
            *scores_fake_a, z_fake_a = d_a(fake_a)
            *scores_fake_b, z_fake_b = d_b(fake_b)
            adv_a = sum((lsgan(s, True) for s in scores_fake_a), torch.zeros((), device=real_a.device))
            adv_b = sum((lsgan(s, True) for s in scores_fake_b), torch.zeros((), device=real_a.device))
            cycle_a = F.l1_loss(g_ba(z_fake_b).float(), real_a.float())
            cycle_b = F.l1_loss(g_ab(z_fake_a).float(), real_b.float())
            recon_a = F.l1_loss(g_ba(z_a).float(), real_a.float())
            recon_b = F.l1_loss(g_ab(z_b).float(), real_b.float())
            loss = (
                o.lambda_adv * (adv_a + adv_b)
                + o.lambda_cycle * (cycle_a + cycle_b)
                + o.lambda_recon * (recon_a + recon_b)
            )
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss)
        ctx.step(self.optimizers["G"])
        set_requires_grad([d_a, d_b], True)
        return {
            "G_AB": adv_b,
            "G_BA": adv_a,
            "cycle_A": cycle_a,
            "cycle_B": cycle_b,
            "recon_A": recon_a,
            "recon_B": recon_b,
        }

    # --- the translator: D_A's encoder + G_AB ---------------------------------------
    def _translator_spec(self) -> dict[str, Any]:
        o = self.options
        return {
            "arch": "nicegan",
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "ndf": o.ndf,
            "ngf": o.ngf,
            "n_blocks": o.n_blocks,
            "img_size": o.img_size,
            "light": o.light,
        }

    @property
    def generator(self) -> nn.Module:
        """A :class:`~napari_medtrans.nets.nicegan.NICETranslator` sharing D_A's encoder and G_AB (no copies)."""
        if not hasattr(self, "_translator"):
            with torch.device("meta"):
                translator = build_network(self._translator_spec())
            translator.encoder = self.nets["D_A"].encoder
            translator.decoder = self.nets["G_AB"]
            self._translator = translator
        return self._translator

    def translator_specs(self) -> dict[str, dict[str, Any]]:
        return {"generator": self._translator_spec()}
