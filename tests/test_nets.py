"""Networks: shapes, ranges, spec building, features, registration convention."""

import pytest
import torch

from napari_medtrans.nets import ARCHITECTURES, build_network, warp

GENERATORS = [
    {"arch": "resnet", "ngf": 8, "n_blocks": 2},
    {"arch": "unet", "ngf": 8, "depth": 3},
    {"arch": "unet", "ngf": 8, "depth": 3, "scale_head": True, "dropout": 0.2},
]


@pytest.mark.parametrize("spec", GENERATORS)
@pytest.mark.parametrize("k", [1, 3])
def test_generators_shape_range_and_25d(spec, k):
    net = build_network({**spec, "in_channels": k}).eval()
    x = torch.randn(2, k, 64, 64)
    y = net(x)
    assert y.shape == (2, 1, 64, 64)
    assert y.abs().max() <= 1
    assert 64 % net.size_multiple == 0
    assert net.provides_scale == spec.get("scale_head", False)


def test_scale_head_positive_and_consistent():
    net = build_network(GENERATORS[2]).eval()
    x = torch.randn(1, 1, 64, 64)
    image, scale = net.forward_with_scale(x)
    assert torch.equal(image, net(x))
    assert scale.shape == image.shape and (scale > 0).all()
    with pytest.raises(RuntimeError, match="scale head"):
        build_network(GENERATORS[1]).forward_with_scale(x)


@pytest.mark.slow  # trains two U-Nets (200 s on a loaded 2-core machine)
def test_unet_learns_the_output_level_quickly():
    """Regression: with a 1×1 head behind instance norm the U-Net took hundreds of Adam
    steps to move air from 0 to −1 (the shipped UAPI demo kept air at +177 HU)."""
    torch.manual_seed(0)
    x = -torch.ones(2, 1, 32, 32)
    x[:, :, 8:24, 8:24] = torch.rand(2, 1, 16, 16)  # a 'head' in air
    target = torch.full_like(x, -0.98)
    target[:, :, 8:24, 8:24] = -0.5
    levels = {}
    for kernel in (1, 7):
        net = build_network({"arch": "unet", "ngf": 8, "depth": 2, "head_kernel": kernel})
        opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.0, 0.9))
        for _ in range(40):
            loss = (net(x) - target).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        levels[kernel] = float(net(x)[:, :, :4, :4].mean())  # air corner
    assert levels[7] < -0.7, levels
    assert levels[7] < levels[1] - 0.2, levels


def test_resnet_names_follow_cyclegan_layout():
    names = set(build_network({"arch": "resnet", "ngf": 8, "n_blocks": 9}).state_dict())
    for key in (
        "model.1.weight",
        "model.4.weight",
        "model.7.weight",
        "model.10.conv_block.1.weight",
        "model.18.conv_block.5.weight",
        "model.19.weight",
        "model.22.weight",
        "model.26.weight",
    ):
        assert key in names
    with_dropout = build_network({"arch": "resnet", "ngf": 8, "n_blocks": 1, "dropout": 0.5})
    assert "model.10.conv_block.6.weight" in with_dropout.state_dict()


def test_resnet_features_for_cut():
    net = build_network({"arch": "resnet", "ngf": 8, "n_blocks": 9})
    feats = net.features(torch.randn(1, 1, 64, 64), [0, 4, 8, 12, 16])
    assert [f.shape[1] for f in feats] == [1, 16, 32, 32, 32]
    with pytest.raises(ValueError):
        net.features(torch.randn(1, 1, 64, 64), [99])


def test_discriminators():
    patch = build_network({"arch": "patchgan", "ndf": 8})
    assert patch(torch.randn(1, 1, 70, 70)).shape == (1, 1, 6, 6)  # 70×70 receptive field, stride 8
    critic = build_network({"arch": "wgan_critic", "ndf": 8, "norm": "layer"})
    assert not any(isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.Sigmoid)) for m in critic.modules())
    with pytest.raises(ValueError, match="norm"):
        build_network({"arch": "wgan_critic", "norm": "instance"})


def test_seg_unet_logits():
    net = build_network({"arch": "seg_unet", "n_classes": 5, "features": 8})
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 5, 64, 64)


def test_build_network_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        build_network({"arch": "nope"})
    with pytest.raises(ValueError, match="bad hyperparameters"):
        build_network({"arch": "resnet", "wings": 2})
    assert set(ARCHITECTURES) >= {"resnet", "unet", "patchgan", "wgan_critic", "registration", "seg_unet"}


def test_registration_starts_near_identity():
    net = build_network({"arch": "registration", "nf": 8, "depth": 3})
    a, b = torch.randn(2, 1, 1, 32, 32)
    field = net(a, b)
    assert field.shape == (1, 2, 32, 32) and field.abs().max() < 1e-2


def test_warp_convention_row_and_col():
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 4] = 1.0
    field = torch.zeros(1, 2, 9, 9)
    field[:, 0] = 2.0  # Δrow: sample two rows further down
    out = warp(image, field)
    assert out[0, 0, 2, 4] == 1.0 and out[0, 0, 4, 4] == 0.0
    field = torch.zeros(1, 2, 9, 9)
    field[:, 1] = -1.0  # Δcol: sample one column to the left
    assert warp(image, field)[0, 0, 4, 5] == 1.0
    assert torch.equal(warp(image, torch.zeros(1, 2, 9, 9)), image)


@pytest.mark.parametrize("spec", [{"arch": "resnet", "ngf": 8, "n_blocks": 1}, {"arch": "unet", "ngf": 8, "depth": 2}])
def test_input_layer_stays_float32_under_bf16_autocast(spec):
    """The first convolution of a generator computes in float32 under autocast (bf16 loses the
    small variations of a nearly uniform slice); the layers after it run in bf16."""
    from napari_medtrans.nets.float32 import Float32Conv2d

    net = build_network(spec).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert isinstance(convs[0], Float32Conv2d) and not any(isinstance(m, Float32Conv2d) for m in convs[1:])
    x = -1 + 0.01 * torch.rand(1, 1, 16, 16)  # air with faint noise
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        first = convs[0](x)
        later = convs[1](first)
    assert first.dtype == torch.float32 and later.dtype == torch.bfloat16
    with torch.inference_mode():
        torch.testing.assert_close(
            first, torch.nn.functional.conv2d(x, convs[0].weight, convs[0].bias, convs[0].stride, convs[0].padding)
        )
