"""Loss-level tests with hand-computed values, and per method which networks one step moves."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from training.losses import (
    ImagePool,
    critic_score,
    crop_resize,
    drift_penalty,
    gan_loss,
    ggd_nll,
    gradient_penalty,
    laplace_nll,
    sample_crop_boxes,
    smoothness_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere, so ‖∇D‖ = ‖w‖."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize(
    ("norm", "one_sided", "expected"), [(3.0, False, 4.0), (3.0, True, 4.0), (0.5, False, 0.25), (0.5, True, 0.0)]
)
def test_gradient_penalty_scalar_critic(norm, one_sided, expected):
    weight = torch.zeros(1, 2, 2)
    weight[0, 0, 0] = norm  # ‖w‖ = norm
    critic = LinearCritic(weight)
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    gp = gradient_penalty(critic, real, fake, one_sided=one_sided, generator=torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx(expected)


@pytest.mark.parametrize(("one_sided", "expected"), [(False, 1.0), (True, 1.0)])
def test_gradient_penalty_patch_critic_uses_the_mean_score(one_sided, expected):
    # 1×1 convolution with weight 8 on a 4×4 image: 16 patch scores 8·x_p; the per-sample
    # score is their mean, whose gradient is 8/16 at each pixel: norm 8/16·√16 = 2 → (2 − 1)² = 1
    # (the sum would have norm 32 and penalty 961)
    critic = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.constant_(critic.weight, 8.0)
    real, fake = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    gp = gradient_penalty(critic, real, fake, one_sided=one_sided)
    assert gp.item() == pytest.approx(expected)
    assert critic_score(critic, torch.ones(1, 1, 4, 4)).tolist() == [8.0]


def test_drift_penalty():
    assert drift_penalty(torch.tensor([1.0, 3.0]), torch.tensor([2.0])).item() == pytest.approx(5.0 + 4.0)


def test_laplace_nll_by_hand():
    prediction = torch.tensor([0.0, 0.0])
    target = torch.tensor([1.0, -2.0])
    scale = torch.tensor([1.0, 2.0])
    # (|1|/1 + log 1 + |−2|/2 + log 2) / 2
    assert laplace_nll(prediction, target, scale, eps=0.0).item() == pytest.approx((1 + 1 + math.log(2)) / 2)


def test_uapi_patch_loss_averages_both_scale_terms():
    from training.methods.patch_invariance import UncertaintyAwarePatchInvariance

    n, size = 2, 8
    from_crop = torch.zeros(n, 1, size, size)
    crop_of_full = torch.ones(n, 1, size, size)  # residual 1 everywhere
    scale = torch.cat(
        [
            torch.full((n, 1, size, size), 2.0),  # σ(G(x)), cropped by the full box: 2
            torch.full((n, 1, size, size), 1.0),
        ]
    )  # σ(G(P(x))): 1
    full_box = [(0, 0, size, size)] * n
    loss = UncertaintyAwarePatchInvariance._patch_loss(None, from_crop, crop_of_full, scale, full_box)
    # 0.5 · ((1/1 + log 1) + (1/2 + log 2))
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.5 + math.log(2)), rel=1e-5)


def test_patch_nce_matches_brute_force():
    from training.methods.cut import patch_nce

    torch.manual_seed(0)
    q = nn.functional.normalize(torch.randn(2, 5, 3), dim=2)
    k = nn.functional.normalize(torch.randn(2, 5, 3), dim=2)
    tau = 0.07
    terms = []
    for b in range(2):
        for i in range(5):
            logits = [float(q[b, i] @ k[b, j]) / tau for j in range(5)]
            terms.append(-logits[i] + math.log(sum(math.exp(x) for x in logits)))
    assert patch_nce(q, k, tau).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_smoothness_by_hand():
    field = torch.zeros(1, 2, 2, 2)
    field[0, 0] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    # row differences (2, 2) and zeros: mean 8/4; column differences (1, 1) and zeros: mean 2/4
    assert smoothness_loss(field).item() == pytest.approx(2.0 + 0.5)


def test_crop_resize_is_a_per_sample_patch_operator():
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    assert torch.allclose(crop_resize(x, [(0, 0, 4, 4)] * 2), x, atol=1e-5)
    one_pixel = crop_resize(x, [(0, 0, 1, 1), (3, 3, 1, 1)])
    assert torch.allclose(one_pixel[0], torch.full((1, 4, 4), 0.0))
    assert torch.allclose(one_pixel[1], torch.full((1, 4, 4), 31.0))
    # a stacked batch of two groups reuses the boxes per group
    stacked = crop_resize(torch.cat([x, x]), [(0, 0, 1, 1), (3, 3, 1, 1)])
    assert torch.allclose(stacked[2:], one_pixel)
    # it commutes with a pointwise affine map, so G(P(x)) = P(G(x)) for such a G
    boxes = [(1, 0, 3, 3), (0, 1, 2, 2)]
    assert torch.allclose(crop_resize(2 * x + 1, boxes), 2 * crop_resize(x, boxes) + 1, atol=1e-4)
    assert crop_resize(x, boxes, clip=(0.0, 5.0)).max().item() == 5.0
    with pytest.raises(ValueError, match="groups of 2 boxes"):
        crop_resize(x[:1].repeat(3, 1, 1, 1), boxes)


def test_crop_boxes_one_per_sample_within_range():
    boxes = sample_crop_boxes(50, 64, 64, 0.7, 1.0, torch.Generator().manual_seed(1))
    assert len(boxes) == 50 and len(set(boxes)) > 40
    for top, left, h, w in boxes:
        assert 44 <= h <= 64 and h == w and 0 <= top <= 64 - h and 0 <= left <= 64 - w


def test_image_pool(monkeypatch):
    pool = ImagePool(2)
    a, b, c, d = (torch.full((1, 1, 2, 2), float(v)) for v in range(4))
    assert torch.equal(pool.query(torch.cat([a, b])), torch.cat([a, b]))  # filling: returned as is
    monkeypatch.setattr(random, "random", lambda: 0.9)  # > 0.5: swap with a stored image
    monkeypatch.setattr(random, "randrange", lambda n: 1)
    assert torch.equal(pool.query(c), b)
    assert torch.equal(pool.images[1], c)
    monkeypatch.setattr(random, "random", lambda: 0.1)  # ≤ 0.5: the new image, pool unchanged
    assert torch.equal(pool.query(d), d)
    assert [float(i.mean()) for i in pool.images] == [0.0, 2.0]
    assert torch.equal(ImagePool(0).query(d), d)


def test_gan_losses_by_hand():
    pred = torch.tensor([0.5, 1.5])
    assert gan_loss(pred, True, "lsgan").item() == pytest.approx(0.25)
    assert gan_loss(pred, False, "lsgan").item() == pytest.approx((0.25 + 2.25) / 2)
    assert gan_loss(torch.zeros(3), True, "vanilla").item() == pytest.approx(math.log(2))
    assert gan_loss(torch.tensor([2.0]), True, "vanilla").item() == pytest.approx(math.log(1 + math.exp(-2)))
    assert gan_loss(torch.tensor([2.0]), False, "vanilla").item() == pytest.approx(math.log(1 + math.exp(2)))
    assert gan_loss(pred, True, "wgan").item() == pytest.approx(-1.0)
    assert gan_loss(pred, False, "wgan").item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        gan_loss(pred, True, "hinge")


def test_generator_due_doubles_critic_updates_during_warmup():
    from training.methods.patch_invariance import generator_due

    assert [i for i in range(1, 19) if generator_due(i, 3, 2)] == [6, 12, 15, 18]
    assert [i for i in range(1, 5) if generator_due(i, 1, 0)] == [1, 2, 3, 4]


def test_gcgan_rotation_is_the_reference_transpose_then_reverse():
    from training.methods.gcgan import transform

    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    assert torch.equal(transform(x, "rot"), x.transpose(2, 3).flip(3))  # reference rot90(·, 0)
    assert transform(x, "rot").tolist() == [[[[3.0, 0.0], [4.0, 1.0], [5.0, 2.0]]]]
    assert torch.equal(transform(transform(x, "rot"), "rot", inverse=True), x)
    assert transform(x, "vf").tolist() == [[[[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]]]
    with pytest.raises(ValueError, match="unknown GcGAN geometry 'hf'"):
        transform(x, "hf")


@pytest.mark.parametrize("geometry", ["rot", "vf"])
def test_gcgan_loss_is_zero_for_an_equivariant_generator(geometry):
    from training.methods.gcgan import geometry_consistency_loss, transform

    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    pointwise = lambda image: torch.tanh(2 * image) - 0.5 * image  # noqa: E731 - commutes with any permutation
    assert geometry_consistency_loss(pointwise(x), pointwise(transform(x, geometry)), geometry).item() == 0.0
    # a G that ignores f is off by |G(x) − f(G(x))| in both halves
    g_x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # rot: f(G(x)) has the 1 at (0, 1); each half: 2 of 4 pixels differ by 1 → 0.5, total 1.0
    assert geometry_consistency_loss(g_x, g_x, geometry).item() == pytest.approx(1.0)


def test_ugac_ggd_nll_by_hand_is_the_papers_power_not_the_repositorys_product():
    prediction = torch.tensor([0.0, 0.0])
    target = torch.tensor([1.0, -0.5])
    inv_alpha = torch.tensor([2.0, 1.0])
    beta = torch.tensor([3.0, 1.0])
    # pixel 1: (1·2)^3 − log 2 − log 3 + log Γ(1/3) = 8 − 0.693147 − 1.098612 + 0.985420 = 7.193661
    # pixel 2: (0.5·1)^1 − log 1 − log 1 + log Γ(1) = 0.5   (the repository's |r|/α·β gives 6 for pixel 1)
    nll = ggd_nll(prediction, target, inv_alpha, beta, alpha_eps=0.0, beta_eps=0.0)
    assert nll.item() == pytest.approx((7.193661 + 0.5) / 2, abs=1e-5)
    # with the reference's offsets 1/α + 1e-5, β + 0.1 the value moves accordingly
    offset = ggd_nll(prediction, target, torch.zeros(2), torch.zeros(2))  # 1/α = 1e-5, β = 0.1
    by_hand = [(r * 1e-5) ** 0.1 - math.log(1e-5) - math.log(0.1) + math.lgamma(10.0) for r in (1.0, 0.5)]
    assert offset.item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)


@pytest.mark.parametrize(("beta", "ratio"), [(2.0, math.sqrt(0.5)), (1.0, math.sqrt(2.0))])
def test_ugac_sigma_of_gaussian_and_laplace(beta, ratio):
    from napari_medtrans.nets.ggd import ggd_sigma

    # β = 2: GGD = N(0, α²/2), σ = α/√2; β = 1: Laplace(α), σ = √2·α
    sigma = ggd_sigma(torch.tensor([0.5]), torch.tensor([beta]), alpha_eps=0.0, beta_eps=0.0)
    assert sigma.item() == pytest.approx(2.0 * ratio, rel=1e-6)


def test_shape_consistency_is_the_cross_entropy_against_the_source_labels():
    from training.methods.shape_cyclegan import shape_consistency_loss

    # two pixels, two classes; logits (0, log 3): p(class 1) = 3/4
    logits = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1).repeat(1, 1, 1, 2)
    labels = torch.tensor([[[1, 0]]])  # −log(3/4) = 0.287682, −log(1/4) = 1.386294
    assert shape_consistency_loss(logits, labels).item() == pytest.approx((0.287682 + 1.386294) / 2, abs=1e-6)
