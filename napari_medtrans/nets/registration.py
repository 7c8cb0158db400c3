"""RegGAN registration network and the spatial transformer.

Kong et al., "Breaking the Dilemma of Medical Image-to-Image Translation"
(RegGAN), NeurIPS 2021: a registration network R sees the translated image and
the misaligned target and predicts a dense field that warps the translation
onto the target; the spatial transformer follows Jaderberg et al., NeurIPS 2015.

**The displacement-field convention of the whole project** (trainer, inference
and viewer all use :func:`warp`):

- a field is a tensor (B, 2, H, W); channel 0 = Δrow, channel 1 = Δcol,
  **in pixels** of the slice;
- warping samples the moving image at p + u(p), bilinear, border padding
  (pixel centres at integer positions, ``align_corners=True``);
- physical units: multiply Δrow by the row spacing and Δcol by the column
  spacing of the slice plane.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_medtrans.nets.unet import UNetBody

#: Standard deviation of the initial weights of the field layer (near-zero field).
FIELD_INIT_STD = 1e-5


class RegistrationNet(nn.Module):
    """U-Net on ``cat(moving, fixed)`` predicting a (B, 2, H, W) field in pixels."""

    def __init__(self, in_channels: int = 1, nf: int = 16, depth: int = 4, norm: str = "none") -> None:
        super().__init__()
        self.body = UNetBody(2 * in_channels, nf, depth, norm=norm)
        self.size_multiple = self.body.size_multiple
        self.field = nn.Conv2d(nf, 2, 3, padding=1)
        nn.init.normal_(self.field.weight, std=FIELD_INIT_STD)
        nn.init.zeros_(self.field.bias)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.field(self.body(torch.cat([moving, fixed], dim=1)))


def warp(image: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at p + ``field``(p); computed in float32."""
    if field.shape[1] != 2 or field.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"field {tuple(field.shape)} does not fit image {tuple(image.shape)}")
    field = field.float()
    height, width = field.shape[-2:]
    rows = torch.arange(height, device=field.device, dtype=torch.float32).view(height, 1)
    cols = torch.arange(width, device=field.device, dtype=torch.float32).view(1, width)
    # grid_sample wants (x=col, y=row) in [-1, 1] with align_corners=True
    x = (cols + field[:, 1]) * (2.0 / max(width - 1, 1)) - 1.0
    y = (rows + field[:, 0]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([x, y], dim=-1)
    warped = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped.to(image.dtype)
