"""Reference weight initialisations of the translation papers' public code.

``normal``: N(0, 0.02) for convolution and linear weights (CycleGAN / pix2pix
``init_weights(init_type='normal', init_gain=0.02)``); ``xavier``: Xavier normal
with gain 0.02 (CUT's ``init_type='xavier'``); ``he``: a normal truncated at
two standard deviations whose std after truncation is √(2 / fan_in) (Keras
``he_normal``, the PI/UAPI reference's ``Conv2DHE``); ``kaiming``: an untruncated
normal with std √(2 / fan_in) (``kaiming_normal_``, the UNIT/MUNIT reference's ``kaiming``);
``default``: PyTorch's own initialisation (RegGAN's reference). Biases are set
to zero, affine norm weights to N(1, 0.02) as in the CycleGAN code.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

KERAS_TRUNCATION = 0.87962566103423978
"""Std of a unit normal truncated at ±2 (Keras divides by it so that ``he_normal`` keeps √(2 / fan_in))."""

InitType = Literal["normal", "xavier", "he", "kaiming", "default"]
INIT_TYPES: tuple[str, ...] = ("normal", "xavier", "he", "kaiming", "default")


def init_weights(module: nn.Module, kind: InitType, gain: float = 0.02) -> nn.Module:
    """Initialise every convolution, linear and affine norm layer of ``module`` in place."""
    if kind not in INIT_TYPES:
        raise ValueError(f"unknown initialisation {kind!r}; choose one of {', '.join(INIT_TYPES)}")
    if kind == "default":
        return module
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)):
            weight = layer.weight
            if kind == "normal":
                nn.init.normal_(weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                std = math.sqrt(2.0 / nn.init._calculate_fan_in_and_fan_out(weight)[0]) / KERAS_TRUNCATION
                nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif (
            isinstance(layer, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.InstanceNorm3d))
            and layer.weight is not None
        ):
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)
    return module
