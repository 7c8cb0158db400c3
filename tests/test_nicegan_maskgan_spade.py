"""What makes NICE-GAN, MaskGAN and SPADE themselves, at the level of their losses and steps.

NICE-GAN: the translator's encoder is the discriminator's, and only the discriminator loss moves it.
MaskGAN: coarse masks, the mask and shape-consistency terms against hand cases, the ramped shape weight.
SPADE: the label-dependent γ/β modulation (a constant label map gives a constant modulation), hinge losses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_method_steps import RecordingContext

from napari_medtrans.checkpoint import TranslatorMetadata, load_modules, save_translator
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.nets.spade import SPADE
from training.methods import StepContext, get_method
from training.methods.maskgan import coarse_mask, mask_loss, shape_consistency_loss
from training.methods.spade import hinge_d_loss, hinge_g_loss

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {
    "nicegan": {"ngf": 8, "ndf": 8, "n_blocks": 2, "n_dis": 6, "img_size": 64},
    "maskgan": {"ngf": 8, "ndf": 8, "n_blocks": 2, "pool_size": 2, "n_attentions": 3},
    "spade": {"ngf": 2, "n_up": 3, "hidden": 8, "ndf": 8, "n_layers_d": 3},
}
#: (networks whose gradients one backward changes, optimisers stepped after it), in the reference order
EXPECTED = {
    "nicegan": [({"D_A", "D_B"}, ["D"]), ({"G_AB", "G_BA"}, ["G"])],
    "maskgan": [({"G_AB", "G_BA"}, ["G"]), ({"D_A", "D_B"}, ["D"])],
    "spade": [({"G"}, ["G"]), ({"D"}, ["D"])],
}


def build(name: str):
    cls = get_method(name)
    torch.manual_seed(0)
    return cls(
        cls.Options(**OPTIONS[name]), in_channels=1, out_channels=1, lr=cls.default_lr, device=torch.device("cpu")
    )


def batch(name: str) -> dict[str, torch.Tensor]:
    size = 64 if name == "nicegan" else 32  # NICE-GAN's global head needs 48 px at n_dis = 6
    generator = torch.Generator().manual_seed(1)
    images = {
        "source": torch.rand(2, 1, size, size, generator=generator) * 2 - 1,
        "target": torch.rand(2, 1, size, size, generator=generator) * 2 - 1,
    }
    if name == "spade":
        images["source_labels"] = torch.randint(0, 10, (2, size, size), generator=generator)
    return images


def context() -> StepContext:
    ctx = StepContext(torch.device("cpu"), torch.amp.GradScaler("cpu", enabled=False), None, lambda params: None)
    ctx.iteration, ctx.iterations = 1, 10
    return ctx


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_step_moves_the_right_networks_in_reference_order(name):
    method = build(name)
    ctx = RecordingContext(method)
    ctx.iteration, ctx.iterations = 1, 10
    losses = method.train_step(batch(name), ctx)
    assert ctx.events == EXPECTED[name]
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.requires_grad for p in method.parameters())


# --- NICE-GAN -------------------------------------------------------------------------------


def test_nicegan_encoder_is_the_discriminators_and_the_generator_step_leaves_it_alone(tmp_path):
    method = build("nicegan")
    translator = method.generator
    encoder = method.nets["D_A"].encoder
    assert translator.encoder is encoder and translator.decoder is method.nets["G_AB"]
    assert {id(p) for p in encoder.parameters()} <= {id(p) for p in method.nets["D_A"].parameters()}
    assert not {id(p) for p in encoder.parameters()} & {
        id(p) for n in ("G_AB", "G_BA") for p in method.nets[n].parameters()
    }

    data = batch("nicegan")
    d_a, d_b, g_ab = (snapshot(method.nets[k]) for k in ("D_A", "D_B", "G_AB"))
    enc = snapshot(encoder)
    method.generator_step(data["source"], data["target"], context())
    assert not moved(enc, encoder) and not moved(d_a, method.nets["D_A"]) and not moved(d_b, method.nets["D_B"])
    assert moved(g_ab, method.nets["G_AB"])

    g_ab = snapshot(method.nets["G_AB"])
    method.discriminator_step(data["source"], data["target"], context())
    assert moved(enc, encoder)  # the encoder learns from the discriminator loss only
    assert not moved(g_ab, method.nets["G_AB"])

    # the exported translator is that encoder + G_AB, rebuilt from its spec
    metadata = TranslatorMetadata(
        name="nice",
        method="nicegan",
        source="T1",
        target="CT",
        networks=method.translator_specs(),
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
    )
    path = save_translator(tmp_path / "nice.safetensors", method.translator_modules(), metadata)
    modules, _ = load_modules(path)
    method.train(False)
    with torch.no_grad():
        assert torch.allclose(modules["generator"](data["source"]), translator(data["source"]), atol=1e-5)


def test_nicegan_light_variant_pools_before_its_gamma_beta_layers():
    full, light = (get_method("nicegan").Options(**{**OPTIONS["nicegan"], "light": flag}) for flag in (False, True))
    cls = get_method("nicegan")
    sizes = [
        sum(
            p.numel()
            for p in cls(o, in_channels=1, out_channels=1, lr=1e-4, device=torch.device("cpu"))
            .nets["G_AB"]
            .fc.parameters()
        )
        for o in (full, light)
    ]
    dim = 4 * OPTIONS["nicegan"]["ngf"]
    assert sizes == [(64 // 4) ** 2 * dim * dim + dim * dim, 2 * dim * dim]


# --- MaskGAN -------------------------------------------------------------------------------------


def test_maskgan_shape_and_mask_terms_against_hand_cases():
    translation = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    reconstruction = torch.tensor([[[[0.5, 0.0], [1.0, 1.0]]]])
    assert shape_consistency_loss(translation, reconstruction).item() == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert shape_consistency_loss(translation, translation).item() == 0.0
    coarse = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert mask_loss(translation, coarse).item() == pytest.approx(2 / 4)


def test_maskgan_coarse_mask_keeps_the_largest_component_and_fills_small_holes():
    image = np.zeros((32, 32), np.float32)
    image[4:24, 4:24] = 1.0  # the head
    image[10:12, 10:12] = 0.0  # a 4-pixel hole: filled (< width² = 9 with width 3)
    image[14:19, 14:19] = 0.0  # a 25-pixel hole: kept
    image[28:31, 28:31] = 1.0  # a speck: not the largest component
    mask = coarse_mask(image, 0.5, hole_width=3)
    expected = np.zeros_like(image)
    expected[4:24, 4:24] = 1.0
    expected[14:19, 14:19] = 0.0
    expected[[4, 4, 23, 23], [4, 23, 4, 23]] = 0.0  # the opening with a 3×3 cross cuts the corners
    assert np.array_equal(mask, expected)
    assert not coarse_mask(np.zeros((8, 8), np.float32), 0.5, 3).any()


def test_maskgan_shape_weight_ramps_up_over_the_run():
    method = build("maskgan")
    ctx = context()
    ctx.iterations = 99
    weights = []
    for it in (0, 50, 99):
        ctx.iteration = it
        weights.append(method.shape_weight(ctx))
    assert weights == pytest.approx([0.0, 0.5 * 50 / 100, 0.5 * 99 / 100])


def test_maskgan_generator_blends_its_input_with_the_last_mask():
    generator = build("maskgan").nets["G_AB"]
    with torch.no_grad():
        generator.masks[-1].bias.copy_(torch.tensor([-30.0, -30.0, 30.0]))  # the input's mask ≈ 1 everywhere
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    image, maps = generator.forward_with_masks(x)
    assert torch.allclose(maps.sum(1), torch.ones(1, 32, 32))
    assert torch.allclose(image, x, atol=1e-4)


# --- SPADE ---------------------------------------------------------------------------------------


def _one_hot(labels: torch.Tensor, classes: int = 4) -> torch.Tensor:
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def test_spade_constant_labels_give_a_constant_modulation():
    torch.manual_seed(0)
    layer = SPADE(3, 4, hidden=8, norm="instance").eval()
    x = torch.randn(1, 3, 16, 16)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # beyond the zero padding of two 3×3 convolutions
    normalised = F.instance_norm(x)
    modulations = []
    for label in (1, 2):
        labels = _one_hot(torch.full((1, 16, 16), label))
        gamma, beta = layer.modulation(labels, (16, 16))
        g, b = gamma[inner], beta[inner]
        assert torch.allclose(g, g[..., :1, :1].expand_as(g)) and torch.allclose(b, b[..., :1, :1].expand_as(b))
        out = layer(x, labels)
        assert torch.allclose(out[inner], (normalised * (1 + gamma) + beta)[inner], atol=1e-5)
        modulations.append(g[0, :, 0, 0])
    assert not torch.allclose(*modulations)  # the modulation depends on the label

    halves = torch.zeros(1, 16, 16, dtype=torch.long)
    halves[:, :, 8:] = 3
    gamma, _ = layer.modulation(_one_hot(halves), (16, 16))
    assert not torch.allclose(gamma[0, :, 8, 4], gamma[0, :, 8, 12])  # each region gets its own γ


def test_spade_hinge_losses_against_hand_cases():
    real, fake = [torch.tensor([2.0, 0.5])], [torch.tensor([-2.0, 0.0])]
    assert hinge_d_loss(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)
    two_scales = hinge_d_loss(real * 2, fake * 2)
    assert two_scales.item() == pytest.approx(hinge_d_loss(real, fake).item())  # averaged over scales


def test_spade_records_the_vgg_deviation_and_uses_ttur():
    method = build("spade")
    assert "vgg_loss" in method.deviations()
    assert method.optimizers["D"].param_groups[0]["lr"] == pytest.approx(
        4 * method.optimizers["G"].param_groups[0]["lr"]
    )
    assert method.optimizers["G"].param_groups[0]["betas"] == (0.0, 0.999)
