"""Tiny random-weight T1 → CT translators for viewer and demo tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_medtrans.checkpoint import TranslatorMetadata, save_translator
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.nets import build_network

UAPI = "tiny-uapi"
REGGAN = "tiny-reggan"
DROPOUT = "tiny-pix2pix-dropout"
GENERATOR = {"arch": "unet", "in_channels": 1, "out_channels": 1, "ngf": 8, "depth": 2}
#: constant displacement (Δrow, Δcol) in pixels that the tiny registration network predicts
FIELD_BIAS = (1.5, -2.0)


def _save(folder: Path, name: str, method: str, networks: dict, outputs: list[str]) -> None:
    modules = {role: build_network(spec) for role, spec in networks.items()}
    if "registration" in modules:  # a clearly visible field, the same everywhere
        modules["registration"].field.bias.data = torch.tensor(FIELD_BIAS)
    metadata = TranslatorMetadata(
        name=name,
        method=method,
        source="T1",
        target="CT",
        networks=networks,
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
        size=64,
        outputs=outputs,
    )
    save_translator(folder / f"{name}.safetensors", modules, metadata)


def make_tiny_translators(folder: Path) -> Path:
    """Write ``tiny-uapi`` (U-Net + scale head), ``tiny-reggan`` (U-Net + registration) and
    ``tiny-pix2pix-dropout`` (U-Net with dropout, for MC dropout) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    _save(folder, UAPI, "uapi", {"generator": {**GENERATOR, "scale_head": True}}, ["image", "scale"])
    registration = {"arch": "registration", "nf": 4, "depth": 2}
    _save(folder, REGGAN, "reggan", {"generator": GENERATOR, "registration": registration}, ["image", "field"])
    _save(folder, DROPOUT, "pix2pix", {"generator": {**GENERATOR, "dropout": 0.5}}, ["image"])
    return folder


TINY_UNET = {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_levels": [1], "nz": 8, "z_emb_dim": 16}
"""A tiny SynDiff denoising U-Net (options / spec keys)."""
SYNDIFF = "tiny-syndiff"
UNSB = "tiny-unsb"
#: tiny stochastic generators: SynDiff's denoising U-Net (T = 4) and UNSB's bridge generator (T = 3)
STOCHASTIC = {
    SYNDIFF: (
        "syndiff",
        {
            "arch": "syndiff",
            "in_channels": 1,
            "out_channels": 1,
            **TINY_UNET,
            "stochastic": True,
            "steps": 4,
        },
    ),
    UNSB: (
        "unsb",
        {"arch": "unsb", "ngf": 8, "n_blocks": 2, "num_timesteps": 3, "stochastic": True, "steps": 3},
    ),
}


def make_stochastic_translators(folder: Path) -> Path:
    """Write ``tiny-syndiff`` and ``tiny-unsb`` (random weights) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, (method, spec) in STOCHASTIC.items():
        _save(folder, name, method, {"generator": spec}, ["image"])
    return folder
