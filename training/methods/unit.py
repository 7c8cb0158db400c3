"""UNIT: unpaired translation through a shared latent space of two coupled VAE-GANs.

Liu, Breuel and Kautz, "Unsupervised Image-to-Image Translation Networks",
NeurIPS 2017. Encoders E_A, E_B map images to the mean of q(z|x) = N(E(x), I)
in one latent space (their last layers are shared); generators G_A, G_B decode
a sample z = E(x) + n, n ~ N(0, I) (their first layers are shared)
(:mod:`napari_medtrans.nets.unit`). Losses of the generator step, as in the
reference trainer (``UNIT_Trainer.gen_update``):

- VAE: L1(G_A(z_a), a) and L1(G_B(z_b), b) with weight ``lambda_recon``, and
  the KL term of each latent mean (:func:`latent_kl`) with ``lambda_kl``;
- GAN: LSGAN on G_A(z_b) (D_A) and G_B(z_a) (D_B), summed over the scales of
  the multi-scale discriminators, ``lambda_gan``;
- cycle: L1(G_A(E_B(G_B(z_a)) + n), a) and the same for b with
  ``lambda_cycle``, and the KL of the re-encoded means with ``lambda_kl_cycle``.

Defaults from the reference configuration (mingyuliutw/UNIT,
``configs/unit_*_folder.yaml``, for hyper-parameters only: its code is
non-commercial): loss weights gan 1, recon_x 10, recon_kl 0.01, recon_x_cyc
10, recon_kl_cyc 0.01 (the paper's λ0 = 10, λ1 = λ3 = 0.1, λ2 = λ4 = 100
divided by ten), Adam lr 1e-4, β = (0.5, 0.999), weight decay 1e-4, Kaiming
initialisation for the generators and N(0, 0.02) for the discriminators,
``dim`` 64, 2 down-samplings, 4 residual blocks, 3-scale discriminators of
4 layers without norm. Each iteration updates the discriminators first, on
fresh translations, then the generators (the reference's order). Its
learning-rate policy halves the rate every 100 000 of 1 000 000 iterations;
any run shorter than 100 000 iterations keeps it constant, so
``lr_decay_start`` is 1 here. The exported translator is E_A → G_B on the
latent mean (deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_medtrans.nets.init import init_weights
from napari_medtrans.nets.unit import UNITGenerators
from training.losses import gan_loss
from training.methods.base import Method, StepContext, register, set_requires_grad


def latent_kl(mean: Tensor) -> Tensor:
    """KL term of a latent mean, the reference's ``mean(μ²)``.

    KL(N(μ, I) ‖ N(0, I)) = ½ Σ μ²; this is that KL times 2/N (N = elements
    of ``mean``), the normalisation the reference's weight 0.01 goes with.
    """
    return mean.float().pow(2).mean()


def multiscale_gan_loss(scores: list[Tensor], real: bool, mode: str) -> Tensor:
    """Adversarial loss summed over the scales of a multi-scale discriminator (the reference's sum)."""
    return torch.stack([gan_loss(score, real, mode) for score in scores]).sum()  # type: ignore[arg-type]


@dataclass
class MultiScaleGANOptions:
    """Options UNIT and MUNIT share: network widths, discriminators, optimiser, adversarial weight."""

    ngf: int = 64
    """Filters of the generators' first layer (reference ``gen.dim``: 64)."""
    n_down: int = 2
    """Stride-2 down-samplings of the encoders, as many up-samplings in the decoders (reference: 2)."""
    n_res: int = 4
    """Residual blocks of each encoder and of each decoder (reference: 4)."""
    ndf: int = 64
    """Filters of the discriminators' first layer (reference ``dis.dim``: 64)."""
    n_layers_d: int = 4
    """Stride-2 layers of each discriminator scale (reference ``dis.n_layer``: 4)."""
    num_scales: int = 3
    """Image scales of each discriminator (reference ``dis.num_scales``: 3; images ≥ 2^(layers+scales−1) px)."""
    gan_mode: str = "lsgan"
    """Adversarial loss: ``lsgan`` (reference ``gan_type``) or ``vanilla`` (its ``nsgan``)."""
    weight_decay: float = 1e-4
    """Adam weight decay of generators and discriminators (reference: 1e-4)."""
    lr_decay_start: float = 1.0
    """Fraction of iterations before a linear decay to 0 (1: constant, as the reference's step policy
    for runs under 100 000 iterations)."""
    lambda_gan: float = 1.0
    """Adversarial weight of each translation direction, and of the discriminator loss (``gan_w``: 1)."""


class MultiScaleGAN(Method):
    """Two domains' generators, multi-scale discriminators D_A and D_B, discriminators updated first.

    Subclasses define the generator networks (``generator_specs``), the
    translator (``build_translator``, ``translator_spec``), fresh translations
    for the discriminator step and the generator objective.
    """

    default_lr = 1e-4
    betas = (0.5, 0.999)
    init_type = "kaiming"
    supports_context = False

    def __init__(self, options: Any, **kwargs: Any) -> None:
        self._translator: nn.Module | None = None
        super().__init__(options, **kwargs)
        for name in ("D_A", "D_B"):  # the reference's 'gaussian' initialisation of the discriminators
            init_weights(self.nets[name], "normal")

    def generator_specs(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def network_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        discriminator = {"arch": "multiscale_discriminator", "ndf": o.ndf, "n_layers": o.n_layers_d}
        discriminator["num_scales"] = o.num_scales
        return {
            **self.generator_specs(),
            "D_A": {**discriminator, "in_channels": self.in_channels},
            "D_B": {**discriminator, "in_channels": self.out_channels},
        }

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        generators = [name for name in self.nets if not name.startswith("D_")]
        return {"G": self._adam(*generators), "D": self._adam("D_A", "D_B")}

    def _adam(self, *names: str) -> torch.optim.Optimizer:
        params = [p for name in names for p in self.nets[name].parameters()]
        return torch.optim.Adam(
            params, lr=self.lr, betas=self.betas, weight_decay=self.options.weight_decay, foreach=True
        )

    def normal(self, like: Tensor, ctx: StepContext) -> Tensor:
        """Standard normal noise shaped like ``like``, from the step's generator (reproducible on resume)."""
        return torch.randn(like.shape, generator=ctx.generator).to(device=like.device, dtype=like.dtype)

    # --- the step ---------------------------------------------------------------
    def translations(self, real_a: Tensor, real_b: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """(B→A, A→B) translations as the discriminator step sees them."""
        raise NotImplementedError

    def generator_objective(
        self, real_a: Tensor, real_b: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """(weighted sum without the adversarial terms, its terms, B→A, A→B translations)."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        real_a, real_b = batch["source"], batch["target"]
        d_a, d_b = self.nets["D_A"], self.nets["D_B"]
        with ctx.autocast():
            with torch.no_grad():
                fake_a, fake_b = self.translations(real_a, real_b, ctx)
            loss_d_a = self.discriminator_loss(d_a, real_a, fake_a)
            loss_d_b = self.discriminator_loss(d_b, real_b, fake_b)
        ctx.zero_grad(self.optimizers["D"])
        ctx.backward(o.lambda_gan * (loss_d_a + loss_d_b))
        ctx.step(self.optimizers["D"])
        set_requires_grad([d_a, d_b], False)
        with ctx.autocast():
            loss_g, losses, fake_a, fake_b = self.generator_objective(real_a, real_b, ctx)
            loss_adv_a = multiscale_gan_loss(d_a(fake_a), True, o.gan_mode)
            loss_adv_b = multiscale_gan_loss(d_b(fake_b), True, o.gan_mode)
            loss_g = loss_g + o.lambda_gan * (loss_adv_a + loss_adv_b)
        ctx.zero_grad(self.optimizers["G"])
        ctx.backward(loss_g)
        ctx.step(self.optimizers["G"])
        set_requires_grad([d_a, d_b], True)
        losses.update(G_AB=loss_adv_b, G_BA=loss_adv_a, D_A=loss_d_a, D_B=loss_d_b)
        return {k: v.detach() for k, v in losses.items()}

    def discriminator_loss(self, net: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """Real and fake adversarial losses over all scales, from one pass over [real, fake] (no ½)."""
        scores = [score.chunk(2, 0) for score in net(torch.cat([real, fake], 0))]
        mode = self.options.gan_mode
        return multiscale_gan_loss([r for r, _ in scores], True, mode) + multiscale_gan_loss(
            [f for _, f in scores], False, mode
        )

    # --- the translator -----------------------------------------------------------
    def build_translator(self) -> nn.Module:
        raise NotImplementedError

    def translator_spec(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def generator(self) -> nn.Module:
        """The A→B translator, sharing the training networks' parameters."""
        if self._translator is None:
            self._translator = self.build_translator()
        return self._translator

    def translator_specs(self) -> dict[str, dict[str, Any]]:
        return {"generator": self.translator_spec()}


@dataclass
class UNITOptions(MultiScaleGANOptions):
    n_shared: int = 1
    """Residual blocks shared by the encoders' ends and by the decoders' starts (paper / first release: 1)."""
    lambda_recon: float = 10.0
    """Weight of the VAE image reconstruction L1 (reference ``recon_x_w``: 10; paper λ2 = 100 with λ0 = 10)."""
    lambda_kl: float = 0.01
    """Weight of the VAE KL term (reference ``recon_kl_w``: 0.01; paper λ1 = 0.1 with λ0 = 10)."""
    lambda_cycle: float = 10.0
    """Weight of the cycle reconstruction L1 (reference ``recon_x_cyc_w``: 10; paper λ4 = 100)."""
    lambda_kl_cycle: float = 0.01
    """Weight of the KL term of the re-encoded translations (reference ``recon_kl_cyc_w``: 0.01; paper λ3 = 0.1)."""


@register("unit")
class UNIT(MultiScaleGAN):
    """One network ``G`` holding E_A, E_B, G_A, G_B and their shared layers; D_A, D_B."""

    Options = UNITOptions

    def generator_specs(self) -> dict[str, dict[str, Any]]:
        o = self.options
        return {
            "G": {
                "arch": "unit",
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "ngf": o.ngf,
                "n_down": o.n_down,
                "n_res": o.n_res,
                "n_shared": o.n_shared,
            }
        }

    @property
    def vaes(self) -> UNITGenerators:
        return cast(UNITGenerators, self.nets["G"])

    def encode(self, real_a: Tensor, real_b: Tensor) -> tuple[Tensor, Tensor]:
        """Latent means E_A(a), E_B(b) (one pass through the shared layers)."""
        nets = self.vaes
        return nets.enc_shared(torch.cat([nets.enc_a(real_a), nets.enc_b(real_b)], 0)).chunk(2, 0)

    def decode(self, z_a: Tensor, z_b: Tensor) -> tuple[Tensor, Tensor]:
        """G_A and G_B each on [z_a, z_b] (one pass through the shared layers): (G_A(·), G_B(·))."""
        nets = self.vaes
        shared = nets.dec_shared(torch.cat([z_a, z_b], 0))
        return nets.dec_a(shared), nets.dec_b(shared)

    def cross_decode(self, z_to_a: Tensor, z_to_b: Tensor) -> tuple[Tensor, Tensor]:
        """(G_A(z_to_a), G_B(z_to_b)) with one pass through the shared layers."""
        nets = self.vaes
        shared = nets.dec_shared(torch.cat([z_to_a, z_to_b], 0))
        return nets.dec_a(shared[: z_to_a.shape[0]]), nets.dec_b(shared[z_to_a.shape[0] :])

    def translations(self, real_a: Tensor, real_b: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        mean_a, mean_b = self.encode(real_a, real_b)
        return self.cross_decode(mean_b + self.normal(mean_b, ctx), mean_a + self.normal(mean_a, ctx))

    def generator_objective(
        self, real_a: Tensor, real_b: Tensor, ctx: StepContext
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        o, n = self.options, real_a.shape[0]
        mean_a, mean_b = self.encode(real_a, real_b)
        z_a, z_b = mean_a + self.normal(mean_a, ctx), mean_b + self.normal(mean_b, ctx)
        out_a, out_b = self.decode(z_a, z_b)
        recon_a, fake_a = out_a[:n], out_a[n:]
        fake_b, recon_b = out_b[:n], out_b[n:]
        mean_b_cycle, mean_a_cycle = self.encode(fake_a, fake_b)  # E_A(G_A(z_b)), E_B(G_B(z_a))
        cycle_a, cycle_b = self.cross_decode(
            mean_a_cycle + self.normal(mean_a_cycle, ctx), mean_b_cycle + self.normal(mean_b_cycle, ctx)
        )
        losses = {
            "recon_A": F.l1_loss(recon_a, real_a),
            "recon_B": F.l1_loss(recon_b, real_b),
            "kl_A": latent_kl(mean_a),
            "kl_B": latent_kl(mean_b),
            "cycle_A": F.l1_loss(cycle_a, real_a),
            "cycle_B": F.l1_loss(cycle_b, real_b),
            "kl_cycle_A": latent_kl(mean_a_cycle),
            "kl_cycle_B": latent_kl(mean_b_cycle),
        }
        loss = (
            o.lambda_recon * (losses["recon_A"] + losses["recon_B"])
            + o.lambda_kl * (losses["kl_A"] + losses["kl_B"])
            + o.lambda_cycle * (losses["cycle_A"] + losses["cycle_B"])
            + o.lambda_kl_cycle * (losses["kl_cycle_A"] + losses["kl_cycle_B"])
        )
        return loss, losses, fake_a, fake_b

    def build_translator(self) -> nn.Module:
        return self.vaes.translator()

    def translator_spec(self) -> dict[str, Any]:
        return {**self.specs["G"], "arch": "unit_translator"}
