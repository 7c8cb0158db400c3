"""The nnU-Net-style residual U-Net: shapes, deep-supervision outputs, σ head, 3-D, file round trip."""

import pytest
import torch

from napari_medtrans.checkpoint import TranslatorMetadata, load_modules, save_translator
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.nets import build_network
from napari_medtrans.nets.float32 import Float32Conv2d
from napari_medtrans.nets.res_unet import NEGATIVE_SLOPE, ResidualBlock

TINY = {"arch": "res_unet", "ngf": 4, "depth": 3, "encoder_blocks": 1}


@pytest.mark.parametrize("k", [1, 3])
def test_shapes_range_and_deep_outputs(k):
    net = build_network({**TINY, "in_channels": k}).eval()
    assert net.size_multiple == 8 and not net.provides_scale
    x = torch.randn(2, k, 32, 24)
    y = net(x)
    assert y.shape == (2, 1, 32, 24) and y.abs().max() <= 1
    deep = net.forward_deep(x)
    # full resolution and 1/2; the coarsest decoder stage (1/4) has no head, as in nnU-Net
    assert [tuple(o.shape) for o in deep] == [(2, 1, 32, 24), (2, 1, 16, 12)]
    assert torch.equal(deep[0], y)


def test_nnunet_building_blocks():
    net = build_network({**TINY, "max_features": 8})
    norms = [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(n.affine for n in norms)
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {NEGATIVE_SLOPE} == {0.01}
    # widths 4, 8, 8, 8 (capped at max_features); the first conv sees the input in float32
    assert [e[0].body[0].out_channels for e in net.encoders] == [4, 8, 8, 8]
    assert isinstance(net.encoders[0][0].body[0], Float32Conv2d)
    assert [e[0].body[0].stride for e in net.encoders] == [(1, 1), (2, 2), (2, 2), (2, 2)]


def test_residual_block_adds_its_input():
    block = ResidualBlock(2, 3, 3)
    torch.nn.init.zeros_(block.body[4].weight)  # second norm's scale 0: the body adds only its bias (0)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(block(x), torch.nn.functional.leaky_relu(x, NEGATIVE_SLOPE))


def test_scale_head_and_3d():
    net = build_network({**TINY, "scale_head": True}).eval()
    x = torch.randn(1, 1, 16, 16)
    image, scale = net.forward_with_scale(x)
    assert torch.equal(image, net(x)) and (scale > 0).all() and scale.shape == image.shape
    with pytest.raises(RuntimeError, match="scale head"):
        build_network(TINY).forward_with_scale(x)
    net3 = build_network({**TINY, "dims": 3, "depth": 2}).eval()
    assert net3(torch.randn(1, 1, 8, 12, 16)).shape == (1, 1, 8, 12, 16)
    with pytest.raises(ValueError, match="dims must be 2 or 3"):
        build_network({**TINY, "dims": 4})


def test_translator_file_round_trip(tmp_path):
    spec = {**TINY, "in_channels": 3, "scale_head": True}
    net = build_network(spec).eval()
    md = TranslatorMetadata(
        name="tiny-regression",
        method="regression",
        source="T1",
        target="CT",
        networks={"generator": spec},
        outputs=["image", "scale"],
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
        provenance={"run": "test"},
        context_slices=3,
    )
    modules, loaded = load_modules(save_translator(tmp_path / "t.safetensors", {"generator": net}, md))
    assert loaded.networks["generator"] == spec
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        assert torch.equal(modules["generator"](x), net(x))
