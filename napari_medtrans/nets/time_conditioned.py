"""Time-conditioned networks of the Schrödinger-bridge translator (UNSB) and the
time-conditioned discriminator shared with SynDiff.

Kim et al., "Unpaired Image-to-Image Translation via Neural Schrödinger
Bridge", ICLR 2024 (reference: cyclomon/UNSB, ``models/ncsn_networks.py``):

- :class:`SBResnetGenerator` (``arch: "unsb"``): CycleGAN's ResNet generator
  whose residual blocks receive a time embedding (added after the first
  convolution) and a latent code ``z`` (an affine modulation after its norm,
  ``z`` mapped by a pixel-norm MLP). Its :meth:`~SBResnetGenerator.forward`
  is the whole stochastic sampler: starting from the source image it takes
  ``steps`` (≤ the trained ``num_timesteps``, NFE) bridge steps, each drawing
  a fresh ``z`` and the bridge's Gaussian noise from ``noise``. ``steps`` k < T
  returns the reference's intermediate prediction ``fake_k``.
- :class:`TimeConditionedPatchGAN` (``arch: "patchgan_t"``): PatchGAN whose
  convolutions add a projected time embedding; an optional second input is
  concatenated on the channels (UNSB's energy network E(x, t, x'), SynDiff's
  D(x_t, t, x_{t+1})).

Differences from the reference code: downsampling is a strided convolution
and upsampling a transposed convolution (the reference's anti-aliased blur
pool/upsampling needs its own filters; the project's ResNet has none), so the
reference's PatchNCE layers 0, 4, 8, 12, 16 are our layers 0, 4, 7, 10, 14 as
in CUT. All operations are standard PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_medtrans.nets.resnet import FIRST_BLOCK, decoder_layers, encoder_layers


def timestep_embedding(steps: Tensor, dim: int, max_positions: int = 10000) -> Tensor:
    """Sinusoidal (transformer) embedding (B, dim) of integer or real time steps (B,)."""
    half = dim // 2
    scale = math.log(max_positions) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=steps.device) * -scale)
    angles = steps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(emb, (0, dim % 2))


def time_indices(t: int | Tensor, batch: int, device: torch.device) -> Tensor:
    """A (B,) long tensor of time indices from an int or a tensor."""
    if isinstance(t, Tensor):
        return t.to(device=device, dtype=torch.long).expand(batch) if t.numel() == 1 else t.to(device).long()
    return torch.full((batch,), int(t), dtype=torch.long, device=device)


def gaussian(shape: Sequence[int], noise: torch.Generator | None, like: Tensor) -> Tensor:
    """N(0, I) of ``shape`` on ``like``'s device and dtype, drawn from ``noise`` (None: the global RNG).

    A generator on another device (a CPU generator for CUDA tensors) draws there and the draw is moved.
    """
    if noise is None or noise.device == like.device:
        return torch.randn(tuple(shape), generator=noise, device=like.device, dtype=like.dtype)
    return torch.randn(tuple(shape), generator=noise, device=noise.device, dtype=like.dtype).to(like.device)


def check_stochastic_spec(stochastic: bool, steps: int | None, num_timesteps: int) -> int:
    """The number of sampling steps of a stochastic generator spec (``steps`` None: all)."""
    if not stochastic:
        raise ValueError("this generator is stochastic; its spec must say stochastic: true")
    steps = num_timesteps if steps is None else int(steps)
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must lie in 1..{num_timesteps} (the trained number of steps), got {steps}")
    return steps


class StochasticSteps:
    """``steps``: sampling steps (NFE) of a stochastic generator, settable in 1..``num_timesteps``."""

    stochastic = True
    num_timesteps: int
    _steps: int

    @property
    def steps(self) -> int:
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        if not 1 <= int(value) <= self.num_timesteps:
            raise ValueError(f"steps must lie in 1..{self.num_timesteps} (the trained number of steps), got {value}")
        self._steps = int(value)


class ModulatedResnetBlock(nn.Module):
    """Reference ``ResnetBlock_cond``: conv + time, norm, z-modulation, ReLU, conv, norm, skip."""

    def __init__(self, dim: int, emb_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3))
        self.norm1 = nn.InstanceNorm2d(dim)
        self.time = nn.Linear(emb_dim, dim)
        self.style = nn.Linear(emb_dim, 2 * dim)
        self.conv2 = nn.Sequential(nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim))

    def forward(self, x: Tensor, t_emb: Tensor, z_emb: Tensor) -> Tensor:
        out = self.norm1(self.conv1(x) + self.time(t_emb)[:, :, None, None])
        gamma, beta = self.style(z_emb)[:, :, None, None].chunk(2, 1)
        return x + self.conv2(gamma * out + beta)


class SBResnetGenerator(StochasticSteps, nn.Module):
    """UNSB generator and sampler (``stochastic``; ``steps`` = NFE).

    Args:
        in_channels, out_channels: image channels (equal: the bridge lives in one space).
        ngf: filters of the first layer; embeddings have 4·ngf features.
        n_blocks: time/z-conditioned residual blocks (reference: 9).
        n_mlp: hidden layers of the z mapping (reference: 3).
        num_timesteps: trained bridge steps T (reference: 5).
        tau: entropy coefficient τ of the bridge noise (reference: 0.01).
        stochastic: must be true (recorded in the spec for the engine).
        steps: sampling steps used by :meth:`forward` (default T).
    """

    provides_scale = False
    size_multiple = 4

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_blocks: int = 9,
        n_mlp: int = 3,
        num_timesteps: int = 5,
        tau: float = 0.01,
        stochastic: bool = True,
        steps: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"the bridge maps an image to one of the same channels, got {in_channels}→{out_channels}")
        self.num_timesteps = num_timesteps
        self.steps = check_stochastic_spec(stochastic, steps, num_timesteps)
        self.tau = tau
        self.ngf = ngf
        self.z_dim = 4 * ngf
        self.model = nn.Sequential(*encoder_layers(in_channels, ngf))
        self.blocks = nn.ModuleList(ModulatedResnetBlock(ngf * 4, self.z_dim) for _ in range(n_blocks))
        self.upsample = nn.Sequential(*decoder_layers(ngf, out_channels))
        mapping: list[nn.Module] = [PixelNorm(), nn.Linear(self.z_dim, self.z_dim), nn.LeakyReLU(0.2)]
        for _ in range(n_mlp):
            mapping += [nn.Linear(self.z_dim, self.z_dim), nn.LeakyReLU(0.2)]
        self.z_transform = nn.Sequential(*mapping)
        self.time_embed = nn.Sequential(
            nn.Linear(ngf, self.z_dim), nn.LeakyReLU(0.2), nn.Linear(self.z_dim, self.z_dim), nn.LeakyReLU(0.2)
        )

    # --- one network evaluation ------------------------------------------------
    def _embeddings(self, t: int | Tensor, z: Tensor, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        t_emb = self.time_embed(timestep_embedding(time_indices(t, batch, device), self.ngf))
        return t_emb, self.z_transform(z)

    def denoise(self, x: Tensor, t: int | Tensor, z: Tensor) -> Tensor:
        """One evaluation G(x_t, t, z): the prediction of the target image."""
        t_emb, z_emb = self._embeddings(t, z, x.shape[0], x.device)
        out = self.model(x)
        for block in self.blocks:
            out = block(out, t_emb, z_emb)
        return self.upsample(out)

    def features(self, x: Tensor, layer_ids: Sequence[int], t: int | Tensor, z: Tensor) -> list[Tensor]:
        """Encoder features for PatchNCE: ``model`` layers 0–9, then residual block k is layer 10 + k."""
        wanted = set(layer_ids)
        last = max(wanted)
        if last >= FIRST_BLOCK + len(self.blocks) or min(wanted) < 0:
            raise ValueError(f"layer ids must lie in [0, {FIRST_BLOCK + len(self.blocks) - 1}], got {sorted(wanted)}")
        t_emb, z_emb = self._embeddings(t, z, x.shape[0], x.device)
        feats = []
        for layer_id, layer in enumerate(self.model):
            x = layer(x)
            if layer_id in wanted:
                feats.append(x)
        for k, block in enumerate(self.blocks):
            if FIRST_BLOCK + k > last:
                break
            x = block(x, t_emb, z_emb)
            if FIRST_BLOCK + k in wanted:
                feats.append(x)
        return feats

    def latent(self, like: Tensor, noise: torch.Generator | None) -> Tensor:
        """A latent code z ~ N(0, I) of (B, 4·ngf) for the batch ``like``, drawn from ``noise``."""
        return gaussian((like.shape[0], self.z_dim), noise, like)

    # --- the bridge -------------------------------------------------------------
    def bridge_step(self, x_t: Tensor, prediction: Tensor, t: int, noise: torch.Generator | None) -> Tensor:
        """x_{t} from x_{t-1} and G's prediction: the Brownian-bridge interpolation plus √(τ·s) noise."""
        times = bridge_times(self.num_timesteps)
        delta = times[t] - times[t - 1]
        denominator = times[-1] - times[t - 1]
        inter = delta / denominator
        scale = delta * (1 - inter)
        eps = gaussian(x_t.shape, noise, x_t)
        return (1 - inter) * x_t + inter * prediction + math.sqrt(scale * self.tau) * eps

    def noisy_state(self, x: Tensor, t: int, noise: torch.Generator | None) -> Tensor:
        """x_t of a bridge trajectory from the source x_0 = ``x`` (t network evaluations)."""
        x_t = x
        for s in range(t):
            prediction = self.denoise(x_t, s, self.latent(x, noise))
            x_t = self.bridge_step(x_t, prediction, s + 1, noise)
        return x_t

    def forward(self, x: Tensor, noise: torch.Generator | None = None) -> Tensor:
        """Translate ``x`` with ``steps`` bridge steps, all randomness drawn from ``noise``."""
        last = self.steps - 1
        return self.denoise(self.noisy_state(x, last, noise), last, self.latent(x, noise))


def bridge_times(num_timesteps: int) -> list[float]:
    """The reference's T + 1 bridge times: harmonic increments rescaled into [0.5, 1] after t_0 = 0."""
    increments = np.array([0.0] + [1.0 / (i + 1) for i in range(num_timesteps - 1)])
    times = np.cumsum(increments)
    times = times / times[-1]
    times = 0.5 * times[-1] + 0.5 * times
    return [0.0, *times.tolist()]


class PixelNorm(nn.Module):
    """x / RMS(x) over the features (StyleGAN's mapping-network input norm)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class TimeConditionedPatchGAN(nn.Module):
    """PatchGAN with a time embedding added after each convolution (reference ``NLayerDiscriminator_ncsn``).

    ``forward(x, t, x2=None)``: ``x2`` (when given) is concatenated to ``x`` on
    the channels, so ``in_channels`` counts both. ``n_layers`` stride-2 blocks,
    one stride-1 block and a 1-channel map, as :class:`PatchGANDiscriminator`.
    """

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3, **_: Any) -> None:
        super().__init__()
        emb = 4 * ndf
        self.ndf = ndf
        widths = [in_channels] + [ndf * min(2**n, 8) for n in range(n_layers + 1)]
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 4, stride=2 if i < n_layers else 1, padding=1)
            for i in range(n_layers + 1)
        )
        self.norms = nn.ModuleList(
            nn.Identity() if i == 0 else nn.InstanceNorm2d(widths[i + 1]) for i in range(n_layers + 1)
        )
        self.dense = nn.ModuleList(nn.Linear(emb, widths[i + 1]) for i in range(n_layers + 1))
        self.t_embed = nn.Sequential(nn.Linear(emb, emb), nn.LeakyReLU(0.2), nn.Linear(emb, emb), nn.LeakyReLU(0.2))
        self.final = nn.Conv2d(widths[-1], 1, 4, padding=1)

    def forward(self, x: Tensor, t: int | Tensor, x2: Tensor | None = None) -> Tensor:
        t_emb = self.t_embed(timestep_embedding(time_indices(t, x.shape[0], x.device), 4 * self.ndf))
        out = x if x2 is None else torch.cat([x, x2], 1)
        for conv, norm, dense in zip(self.convs, self.norms, self.dense):
            out = F.leaky_relu(norm(conv(out) + dense(t_emb)[:, :, None, None]), 0.2)
        return self.final(out)
