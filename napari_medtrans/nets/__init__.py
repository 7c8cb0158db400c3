"""Networks shared by training and inference, built from a spec dict.

``build_network({"arch": "resnet", "ngf": 64, "n_blocks": 9})``: the spec is
what checkpoints store, so a translator is rebuilt without unpickling.
Every generator ends in tanh and has ``provides_scale`` and ``size_multiple``;
``in_channels = k`` gives 2.5D input (k neighbouring slices, centre translated).
Stochastic generators (``unsb``, ``syndiff``) have ``stochastic = True``, an
int ``steps`` (sampling steps, settable) and ``forward(x, noise)`` drawing all
randomness from the ``torch.Generator`` ``noise``; their spec records
``"stochastic": true`` and ``"steps"``.
The displacement-field convention is documented in
:mod:`napari_medtrans.nets.registration`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from napari_medtrans.nets.discriminators import DCGANCritic, PatchGANDiscriminator, WGANCritic
from napari_medtrans.nets.ggd import GGDUNetGenerator
from napari_medtrans.nets.maskgan import MaskGANGenerator
from napari_medtrans.nets.multiscale import MultiScaleDiscriminator
from napari_medtrans.nets.munit import MUNITAutoencoder, MUNITTranslator
from napari_medtrans.nets.nicegan import NICEDecoder, NICEDiscriminator, NICETranslator
from napari_medtrans.nets.registration import RegistrationNet, warp
from napari_medtrans.nets.res_unet import ResUNet
from napari_medtrans.nets.resnet import ResnetGenerator
from napari_medtrans.nets.spade import SPADEDiscriminator, SPADEGenerator
from napari_medtrans.nets.syndiff import SynDiffGenerator
from napari_medtrans.nets.time_conditioned import SBResnetGenerator, TimeConditionedPatchGAN
from napari_medtrans.nets.unet import SegUNet, UNetGenerator
from napari_medtrans.nets.unit import UNITGenerators, UNITTranslator

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "resnet": ResnetGenerator,
    "unet": UNetGenerator,
    "patchgan": PatchGANDiscriminator,
    "wgan_critic": WGANCritic,
    "dcgan_critic": DCGANCritic,
    "registration": RegistrationNet,
    "seg_unet": SegUNet,
    "unet_ggd": GGDUNetGenerator,
    "res_unet": ResUNet,
    "nicegan": NICETranslator,
    "nicegan_decoder": NICEDecoder,
    "nicegan_discriminator": NICEDiscriminator,
    "maskgan": MaskGANGenerator,
    "spade": SPADEGenerator,
    "spade_discriminator": SPADEDiscriminator,
    "unit": UNITGenerators,
    "unit_translator": UNITTranslator,
    "munit_autoencoder": MUNITAutoencoder,
    "munit_translator": MUNITTranslator,
    "multiscale_discriminator": MultiScaleDiscriminator,
    "unsb": SBResnetGenerator,
    "syndiff": SynDiffGenerator,
    "patchgan_t": TimeConditionedPatchGAN,
}


def build_network(spec: dict[str, Any]) -> nn.Module:
    """Build the network ``spec["arch"]`` with the remaining keys as hyperparameters."""
    params = dict(spec)
    arch = params.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    try:
        return ARCHITECTURES[arch](**params)
    except TypeError as exc:
        raise ValueError(f"bad hyperparameters for {arch!r} {params}: {exc}") from exc


__all__ = [
    "ARCHITECTURES",
    "DCGANCritic",
    "GGDUNetGenerator",
    "MUNITAutoencoder",
    "MUNITTranslator",
    "MaskGANGenerator",
    "MultiScaleDiscriminator",
    "NICEDecoder",
    "NICEDiscriminator",
    "NICETranslator",
    "PatchGANDiscriminator",
    "RegistrationNet",
    "ResUNet",
    "ResnetGenerator",
    "SBResnetGenerator",
    "SPADEDiscriminator",
    "SPADEGenerator",
    "SegUNet",
    "SynDiffGenerator",
    "TimeConditionedPatchGAN",
    "UNITGenerators",
    "UNITTranslator",
    "UNetGenerator",
    "WGANCritic",
    "build_network",
    "warp",
]
