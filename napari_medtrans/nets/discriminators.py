"""PatchGAN discriminator, WGAN patch critic and the DCGAN scalar critic.

PatchGAN: Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks" (pix2pix), CVPR 2017 — with ``n_layers=3`` each output
sees a 70×70 patch. Layers live in a flat ``model`` ``nn.Sequential`` as in the
public CycleGAN code. The WGAN critic (Gulrajani et al., "Improved Training of
Wasserstein GANs", NeurIPS 2017) has the same layout without instance/batch
norm (which break the gradient penalty): no norm or layer norm, no sigmoid.
The DCGAN critic is the one of the PI/UAPI reference code (Angermann et al.,
``critic_networks.define_dcgan_critic``): one score per image.
"""

from __future__ import annotations

import torch
from torch import nn

_NORMS = {
    "instance": lambda c: nn.InstanceNorm2d(c),
    "layer": lambda c: nn.GroupNorm(1, c),
    "none": lambda c: nn.Identity(),
}


class PatchGANDiscriminator(nn.Module):
    """``n_layers`` stride-2 4×4 convolutions, one stride-1, a 1-channel map."""

    norms: tuple[str, ...] = ("instance", "none")

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        if norm not in self.norms:
            raise ValueError(f"{type(self).__name__} norm must be one of {self.norms}, got {norm!r}")
        make_norm = _NORMS[norm]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1), make_norm(out), nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class WGANCritic(PatchGANDiscriminator):
    """Patch critic for WGAN-GP: no norm (default) or layer norm, no sigmoid."""

    norms = ("none", "layer")

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3, norm: str = "none") -> None:
        super().__init__(in_channels, ndf, n_layers, norm)


class DCGANCritic(nn.Module):
    """Scalar WGAN critic of the PI/UAPI reference code (``define_dcgan_critic``).

    ``n_down`` stages, each a stride-2 4×4 convolution followed by a stride-1
    4×4 convolution of the same width (``ndf·2^i``; TensorFlow's "same"
    padding, 1 before and 2 after), LeakyReLU 0.2, no norm;
    then a 4×4 valid convolution to one score per image. The reference runs it
    on 128² images, where five stages leave exactly 4×4; other sizes are
    average-pooled to 4×4 first (a no-op at 128²), so every input of at least
    ``2**n_down`` pixels gives a (B, 1) score. ``ndf`` 24 and five stages are
    the reference's (4.72 M parameters for one input channel).
    """

    def __init__(self, in_channels: int = 1, ndf: int = 24, n_down: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for stage in range(n_down):
            out = ndf * 2**stage
            layers += [
                nn.Conv2d(width, out, 4, stride=2, padding=1),
                nn.LeakyReLU(0.2),
                nn.ZeroPad2d((1, 2, 1, 2)),
                nn.Conv2d(out, out, 4),
                nn.LeakyReLU(0.2),
            ]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(self.features(x), 4)).flatten(1)
