"""Losses and small training helpers shared by the methods."""

from __future__ import annotations

import random
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gan_loss(prediction: Tensor, real: bool, mode: Literal["lsgan", "vanilla", "wgan"]) -> Tensor:
    """Adversarial loss of a discriminator output against the real/fake label.

    ``lsgan``: least squares (Mao et al., ICCV 2017), the CycleGAN default;
    ``vanilla``: binary cross-entropy on logits (Goodfellow et al. 2014), the
    pix2pix default; ``wgan``: the critic score, negated for "real"
    (Arjovsky et al. 2017).
    """
    if mode == "lsgan":
        target = 1.0 if real else 0.0
        return F.mse_loss(prediction, torch.full_like(prediction, target))
    if mode == "vanilla":
        target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
        return F.binary_cross_entropy_with_logits(prediction, target)
    if mode == "wgan":
        return -prediction.mean() if real else prediction.mean()
    raise ValueError(f"unknown GAN loss mode {mode!r}")


def critic_score(critic: nn.Module, images: Tensor) -> Tensor:
    """Per-sample critic score (B,): the mean over a patch critic's outputs, the
    output itself for a scalar critic — the quantity the Wasserstein estimate uses.
    """
    return critic(images).flatten(1).mean(1)


def gradient_penalty(
    critic: nn.Module, real: Tensor, fake: Tensor, *, one_sided: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP penalty on random interpolates x̂ (Gulrajani et al., NeurIPS 2017).

    Two-sided: (‖∇D(x̂)‖₂ − 1)²; one-sided: max(0, ‖∇D(x̂)‖₂ − 1)² (as the
    PI/UAPI reference code). D is the per-sample score of :func:`critic_score`
    (for a patch critic the MEAN of its outputs, the quantity whose difference
    estimates the Wasserstein distance), so a patch critic is held to
    1-Lipschitz like a scalar one. One mixing weight per sample, drawn from
    ``generator``. Computed in float32 outside autocast so the double backward
    is exact.
    """
    with torch.autocast(real.device.type, enabled=False):
        alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
        mixed = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
        score = critic_score(critic, mixed)
        (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
        excess = grad.flatten(1).norm(2, dim=1) - 1
        if one_sided:
            excess = excess.clamp(min=0)
        return (excess**2).mean()


def drift_penalty(score_real: Tensor, score_fake: Tensor) -> Tensor:
    """Drift term E[D(x)²] + E[D(G(z))²] that keeps critic scores near 0 (Karras et al.,
    ICLR 2018; weight 5e-4 in the PI/UAPI reference code).
    """
    return score_real.float().square().mean() + score_fake.float().square().mean()


def smoothness_loss(field: Tensor) -> Tensor:
    """Mean squared forward differences of a displacement field (RegGAN, Kong et al. 2021)."""
    d_row = field[:, :, 1:, :] - field[:, :, :-1, :]
    d_col = field[:, :, :, 1:] - field[:, :, :, :-1]
    return (d_row * d_row).mean() + (d_col * d_col).mean()


def laplace_nll(prediction: Tensor, target: Tensor, scale: Tensor, eps: float = 1e-6, beta: float = 0.0) -> Tensor:
    """Negative log-likelihood of ``target`` under Laplace(prediction, scale), up to log 2.

    ``|target − prediction| / σ + log σ`` averaged over pixels (Kendall & Gal,
    NeurIPS 2017, heteroscedastic aleatoric uncertainty with a Laplace likelihood).
    ``beta > 0`` weights each pixel by stop-gradient(σ)^β (β-NLL, Seitzer et al.,
    ICLR 2022): with β = 1 the mean gets L1-like gradients wherever σ is large,
    so early over-estimated σ no longer stalls learning of the image.
    """
    scale = scale + eps
    nll = (target - prediction).abs() / scale + torch.log(scale)
    if beta > 0:
        nll = nll * scale.detach() ** beta
    return nll.mean()


def ggd_nll(
    prediction: Tensor,
    target: Tensor,
    inv_alpha: Tensor,
    beta: Tensor,
    *,
    alpha_eps: float = 1e-5,
    beta_eps: float = 0.1,
) -> Tensor:
    """Generalised-Gaussian negative log-likelihood (UGAC, Upadhyay et al., NeurIPS 2021).

    The NLL of ``target`` under GGD(prediction, α, β), up to log 2, averaged over
    pixels, in the paper's form:

    ``(|target − prediction| / α)^β − log(1/α) − log β + log Γ(1/β)``

    with 1/α = ``inv_alpha`` + ``alpha_eps`` and β = ``beta`` + ``beta_eps`` (the
    reference's offsets). The base |r|/α is clamped at 1e-6 so the power's gradient
    stays finite for β < 1. The reference repository's active loss instead takes
    ``clamp(|r|/α · β, 1e-6, 50)``, a product where the paper raises to the power β.
    """
    inv_alpha = inv_alpha + alpha_eps
    beta = beta + beta_eps
    base = ((target - prediction).abs() * inv_alpha).clamp(min=1e-6)
    nll = base.pow(beta) - torch.log(inv_alpha) - torch.log(beta) + torch.lgamma(1.0 / beta)
    return nll.mean()


class ImagePool:
    """History of generated images for the discriminator (Shrivastava et al., CVPR 2017).

    With probability 0.5 a query returns a stored image and stores the new one
    in its place, as in CycleGAN's ``ImagePool`` (size 50). Uses Python's
    ``random`` (whose state the checkpoints save).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size <= 0:
            return images.detach()
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.random() > 0.5:
                index = random.randrange(self.size)
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_tensors(self, prefix: str) -> dict[str, Tensor]:
        """Stored images as named tensors for a checkpoint."""
        if not self.images:
            return {}
        return {f"{prefix}": torch.cat(self.images, 0).contiguous().cpu()}

    def load_state_tensors(self, tensors: dict[str, Tensor], prefix: str, device: torch.device) -> None:
        """Restore from :meth:`state_tensors` output."""
        stacked = tensors.get(prefix)
        self.images = [] if stacked is None else [t.unsqueeze(0).to(device) for t in stacked]


CropBox = tuple[int, int, int, int]
"""(top, left, height, width) of a crop."""


def sample_crop_boxes(
    count: int, height: int, width: int, min_scale: float, max_scale: float, generator: torch.Generator | None = None
) -> list[CropBox]:
    """Patch operators of PI/UAPI, one per sample: random boxes whose side is
    ``min_scale..max_scale`` of the image side (drawn from ``generator``).
    """
    boxes = []
    for _ in range(count):
        frac = min_scale + (max_scale - min_scale) * float(torch.rand((), generator=generator))
        side_h = max(1, int(height * frac))
        side_w = max(1, int(width * frac))
        top = int(torch.randint(0, height - side_h + 1, (), generator=generator))
        left = int(torch.randint(0, width - side_w + 1, (), generator=generator))
        boxes.append((top, left, side_h, side_w))
    return boxes


def crop_resize(image: Tensor, boxes: list[CropBox], *, clip: tuple[float, float] | None = None) -> Tensor:
    """Crop box ``boxes[i]`` out of sample ``i`` of a (B, C, H, W) batch and resize it
    back to (H, W) bicubically (as the PI/UAPI reference), then clamp to ``clip``.

    ``boxes`` holds one box per sample; a batch that stacks several groups of
    ``len(boxes)`` samples (e.g. ``cat([x, y])``) reuses the boxes per group.
    Differentiable, so it can sit inside a loss.
    """
    if image.shape[0] % len(boxes):
        raise ValueError(f"{image.shape[0]} samples do not split into groups of {len(boxes)} boxes")
    size = tuple(image.shape[-2:])
    crops = []
    for index, sample in enumerate(image.split(1, 0)):
        top, left, side_h, side_w = boxes[index % len(boxes)]
        crop = sample[..., top : top + side_h, left : left + side_w]
        crops.append(F.interpolate(crop, size=size, mode="bicubic", align_corners=False))
    out = torch.cat(crops, 0)
    return out if clip is None else out.clamp(*clip)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (SSIM's window: 11 taps, σ 1.5)."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def ssim_loss(prediction: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """1 − mean SSIM of (B, C, H, W) images (Wang et al. 2004: Gaussian window 11, σ 1.5, K = 0.01, 0.03).

    (B, C, D, H, W) patches: the mean SSIM of their D slices.

    Local statistics are computed in the valid region only (no padding), which is
    what ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)`` averages; ``data_range`` 2 for images in [-1, 1].
    """
    if prediction.ndim == 5:  # 3-D patches: the SSIM of their slices
        prediction, target = (x.transpose(1, 2).flatten(0, 1) for x in (prediction, target))
    channels = prediction.shape[1]
    window = gaussian_window().to(prediction)
    kernel_y = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    kernel_x = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)

    def blur(image: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(image, kernel_y, groups=channels), kernel_x, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_p, mu_t = blur(prediction), blur(target)
    var_p = blur(prediction * prediction) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(prediction * target) - mu_p * mu_t
    ssim = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return 1 - ssim.mean()


def area_downsample(image: Tensor, factor: int) -> Tensor:
    """Mean over ``factor``-sided boxes of a (B, C, H, W) image or (B, C, D, H, W) patch (deep-supervision targets)."""
    return (F.avg_pool3d if image.ndim == 5 else F.avg_pool2d)(image, factor)


def deep_supervision_weights(outputs: int) -> list[float]:
    """nnU-Net's deep-supervision weights: 1, 1/2, 1/4, … for full resolution down, normalised to sum 1.

    nnU-Net also gives the coarsest decoder stage weight 0; networks here have no
    head there (:class:`napari_medtrans.nets.res_unet.ResUNet`), so ``outputs``
    counts the heads that exist.
    """
    weights = [0.5**i for i in range(outputs)]
    return [w / sum(weights) for w in weights]
