"""SynDiff's adversarial diffusion generator: a conditional denoising U-Net and its sampler.

Özbey et al., "Unsupervised Medical Image Translation with Adversarial
Diffusion Models", IEEE TMI 2023 (reference: icon-lab/SynDiff, ``train.py``,
``backbones/ncsnpp_generator_adagn.py``).

:class:`SynDiffGenerator` (``arch: "syndiff"``) is the exported translator.
It holds the diffusion schedule (variance-preserving, ``beta_min`` 0.1,
``beta_max`` 20, T = 4 large steps, ``t = k/T·(1−10⁻³) + 10⁻³``) and a
:class:`DenoisingUNet` that predicts x₀ from (x_{t+1}, source, t, z). Its
:meth:`~SynDiffGenerator.forward` starts from x_T ~ N(0, I) and takes
``steps`` reverse steps, each predicting x₀ and drawing x_s from the Gaussian
posterior q(x_s | x_t, x̂₀); ``steps`` < T uses the posterior between
non-adjacent states (s < t − 1), which equals the reference's chain when
``steps`` = T. Every random draw (x_T, latent z, posterior noise) comes from
the ``noise`` generator.

:class:`DenoisingUNet` is a smaller, documented equivalent of NCSN++ with
standard PyTorch operations only (the reference compiles custom CUDA kernels
for its FIR up/downsampling and fused activations): BigGAN-style residual
blocks with the time embedding added between the convolutions, adaptive group
norm driven by the latent code z (a pixel-norm MLP, the reference's AdaGN),
skip rescaling by 1/√2, self-attention at the levels ``attn_levels``,
average-pool downsampling and nearest-neighbour upsampling instead of FIR
filters, and no progressive input pyramid. ``nf``, ``ch_mult`` and
``num_res_blocks`` default to the reference's training command (64,
(1, 1, 2, 2, 4, 4), 2); level 4 is resolution 16 at 256², the reference's
``attn_resolutions``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_medtrans.nets.time_conditioned import (
    PixelNorm,
    StochasticSteps,
    check_stochastic_spec,
    gaussian,
    time_indices,
    timestep_embedding,
)

EPS_SMALL = 1e-3
"""The reference's offset of the first diffusion time (``eps_small``)."""


def alpha_bars(num_timesteps: int, beta_min: float, beta_max: float) -> np.ndarray:
    """ᾱ of the states 0..T (ᾱ₀ = 1) of the reference's discretised VP schedule."""
    t = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps * (1.0 - EPS_SMALL) + EPS_SMALL
    log_mean = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    continuous = np.exp(2.0 * log_mean)  # 1 − var
    betas = 1.0 - continuous[1:] / continuous[:-1]
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


def _groups(channels: int) -> int:
    return min(channels // 4, 32) if channels >= 4 else 1


class AdaptiveGroupNorm(nn.Module):
    """Group norm whose scale and shift come from the latent embedding (the reference's AdaGN)."""

    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, affine=False, eps=1e-6)
        self.style = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, 1)
        return (1 + gamma) * self.norm(x) + beta


class ResBlock(nn.Module):
    """AdaGN, SiLU, conv, + time, AdaGN, SiLU, dropout, conv; skip (1×1 when widths differ); ÷√2."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, style_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = AdaptiveGroupNorm(c_in, style_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(temb_dim, c_out)
        self.norm2 = AdaptiveGroupNorm(c_out, style_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor, style: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x, style)))
        h = h + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h, style))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels, residual, ÷√2 (NCSN++'s ``AttnBlockpp``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return (x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))) / math.sqrt(2.0)


class DenoisingUNet(nn.Module):
    """NCSN++-like U-Net: (x_{t+1} ⊕ condition, t, z) → x̂₀ in [-1, 1] (see the module doc)."""

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        nf: int = 64,
        ch_mult: tuple[int, ...] | list[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_levels: tuple[int, ...] | list[int] = (4,),
        dropout: float = 0.0,
        nz: int = 100,
        z_emb_dim: int = 256,
        n_mlp: int = 3,
    ) -> None:
        super().__init__()
        self.nf = nf
        temb_dim = 4 * nf
        self.temb = nn.Sequential(nn.Linear(nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        mapping: list[nn.Module] = [PixelNorm(), nn.Linear(nz, z_emb_dim), nn.SiLU()]
        for _ in range(n_mlp):
            mapping += [nn.Linear(z_emb_dim, z_emb_dim), nn.SiLU()]
        self.z_transform = nn.Sequential(*mapping)
        self.conv_in = nn.Conv2d(in_channels, nf, 3, padding=1)

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, temb_dim, z_emb_dim, dropout)

        widths = [nf * m for m in ch_mult]
        self.down = nn.ModuleList()
        skips, width = [nf], nf
        for level, c in enumerate(widths):
            stage = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.append(block(width, c))
                width = c
                skips.append(width)
                if level in attn_levels:
                    stage.append(AttnBlock(c))
            if level < len(widths) - 1:
                stage.append(nn.AvgPool2d(2))
                skips.append(width)
            self.down.append(stage)
        self.mid = nn.ModuleList([block(width, width), AttnBlock(width), block(width, width)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            stage = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                stage.append(block(width + skips.pop(), widths[level]))
                width = widths[level]
                if level in attn_levels:
                    stage.append(AttnBlock(width))
            if level > 0:
                stage.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                stage.append(nn.Conv2d(width, width, 3, padding=1))
            self.up.append(stage)
        self.norm_out = nn.GroupNorm(_groups(width), width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)
        self.size_multiple = 2 ** (len(widths) - 1)

    def initialise(self) -> None:
        """The reference's initialisation: variance scaling (fan-avg, uniform) = Xavier uniform, zero biases;
        AdaGN starts as the identity (the reference's style bias 1/0 for (1 + γ, β)).
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            if isinstance(module, AdaptiveGroupNorm):
                nn.init.zeros_(module.style.weight)

    def forward(self, x: Tensor, t: int | Tensor, z: Tensor) -> Tensor:
        temb = self.temb(timestep_embedding(time_indices(t, x.shape[0], x.device), self.nf))
        style = self.z_transform(z)
        h = self.conv_in(x)
        hs = [h]
        for stage in self.down:
            for layer in stage.children():
                if isinstance(layer, AttnBlock):
                    h = hs[-1] = layer(h)
                else:
                    h = layer(h, temb, style) if isinstance(layer, ResBlock) else layer(h)
                    hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, temb, style)), temb, style)
        for stage in self.up:
            for layer in stage.children():
                h = layer(torch.cat([h, hs.pop()], 1), temb, style) if isinstance(layer, ResBlock) else layer(h)
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


class SynDiffGenerator(StochasticSteps, nn.Module):
    """SynDiff's diffusive generator and its T-step sampler (``stochastic``; ``steps`` ≤ T).

    Args:
        in_channels: source (conditioning) channels.
        out_channels: target channels.
        num_timesteps: diffusion steps T (reference: 4).
        beta_min, beta_max: VP noise schedule (reference: 0.1, 20).
        stochastic: must be true (recorded in the spec for the engine).
        steps: reverse steps used by :meth:`forward` (default T).
        **unet: :class:`DenoisingUNet` hyper-parameters (nf, ch_mult, num_res_blocks, attn_levels,
            dropout, nz, z_emb_dim, n_mlp).
    """

    provides_scale = False
    alpha_bar: Tensor

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        num_timesteps: int = 4,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        stochastic: bool = True,
        steps: int | None = None,
        nz: int = 100,
        **unet: object,
    ) -> None:
        super().__init__()
        self.num_timesteps = num_timesteps
        self.steps = check_stochastic_spec(stochastic, steps, num_timesteps)
        self.out_channels = out_channels
        self.net = DenoisingUNet(in_channels=out_channels + in_channels, out_channels=out_channels, nz=nz, **unet)  # type: ignore[arg-type]
        self.nz = nz
        self.size_multiple = self.net.size_multiple
        bars = torch.tensor(alpha_bars(num_timesteps, beta_min, beta_max), dtype=torch.float32)
        self.register_buffer("alpha_bar", bars, persistent=False)

    def latent(self, like: Tensor, noise: torch.Generator | None) -> Tensor:
        """z ~ N(0, I) of (B, nz) for the batch ``like``, drawn from ``noise``."""
        return gaussian((like.shape[0], self.nz), noise, like)

    def predict_x0(self, x_t: Tensor, condition: Tensor, t: int | Tensor, z: Tensor) -> Tensor:
        """x̂₀ from the noisy state x_{t+1} (generator time index ``t``) and the condition image."""
        return self.net(torch.cat([x_t, condition], 1), t, z)

    def _bar(self, k: Tensor, like: Tensor) -> Tensor:
        return self.alpha_bar.to(like.device)[k].view(-1, *([1] * (like.dim() - 1)))

    def noisy_pair(self, x0: Tensor, t: Tensor, noise: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(x_t, x_{t+1}) for the states t (B,) of clean images ``x0`` (the reference's ``q_sample_pairs``)."""
        bar_t, bar_next = self._bar(t, x0), self._bar(t + 1, x0)
        eps1, eps2 = gaussian(x0.shape, noise, x0), gaussian(x0.shape, noise, x0)
        x_t = bar_t.sqrt() * x0 + (1 - bar_t).sqrt() * eps1
        alpha = bar_next / bar_t
        return x_t, alpha.sqrt() * x_t + (1 - alpha).sqrt() * eps2

    def posterior(self, x0: Tensor, x_k: Tensor, k: Tensor, s: Tensor, noise: torch.Generator | None) -> Tensor:
        """A draw of x_s ~ q(x_s | x_k, x̂₀) for states s < k (no noise where s = 0)."""
        bar_k, bar_s = self._bar(k, x_k), self._bar(s, x_k)
        alpha = bar_k / bar_s
        mean = (bar_s.sqrt() * (1 - alpha) * x0 + alpha.sqrt() * (1 - bar_s) * x_k) / (1 - bar_k)
        var = (1 - alpha) * (1 - bar_s) / (1 - bar_k)
        eps = gaussian(x_k.shape, noise, x_k)
        return mean + var.clamp(min=1e-20).sqrt() * eps * (s > 0).view_as(var)

    def forward(self, x: Tensor, noise: torch.Generator | None = None) -> Tensor:
        """Translate the source ``x``: x_T ~ N(0, I), then ``steps`` reverse steps."""
        b = x.shape[0]
        shape = (b, self.out_channels, *x.shape[2:])
        x_t = gaussian(shape, noise, x)
        states = np.unique(np.round(np.linspace(self.num_timesteps, 0, self.steps + 1)).astype(int))[::-1]
        for k, s in itertools.pairwise(states):
            k_t, s_t = time_indices(int(k), b, x.device), time_indices(int(s), b, x.device)
            x0 = self.predict_x0(x_t, x, k_t - 1, self.latent(x, noise))
            x_t = self.posterior(x0, x_t, k_t, s_t, noise)
        return x_t
