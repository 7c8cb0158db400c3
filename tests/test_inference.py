"""Inference engine: padding, axes, batching, cache, cancel, progress, precision, uncertainty, register."""

import numpy as np
import pytest
import torch

from napari_medtrans.checkpoint import TranslatorMetadata, save_translator
from napari_medtrans.inference import Cancelled, _pad, load_translator, resolve_device
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.nets import build_network

RESNET = {"arch": "resnet", "ngf": 8, "n_blocks": 1}
UNET_SCALE = {"arch": "unet", "ngf": 8, "depth": 2, "scale_head": True, "dropout": 0.3}
REGISTRATION = {"arch": "registration", "nf": 8, "depth": 2}


def make_translator(path, generator=RESNET, registration=None, context=1, seed=0):
    """Save a randomly initialised T1→CT translator to ``path`` and return the path."""
    torch.manual_seed(seed)
    generator = {**generator, "in_channels": context}
    networks = {"generator": generator, **({"registration": registration} if registration else {})}
    modules = {role: build_network(spec) for role, spec in networks.items()}
    outputs = ["image"] + (["scale"] if generator.get("scale_head") else []) + (["field"] if registration else [])
    metadata = TranslatorMetadata(
        name=path.stem,
        method="test",
        source="T1",
        target="CT",
        networks=networks,
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
        context_slices=context,
        size=64,
        outputs=outputs,
    )
    return save_translator(path, modules, metadata)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    return load_translator(make_translator(tmp_path_factory.mktemp("m") / "resnet.safetensors"), device="cpu")


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    return load_translator(make_translator(tmp_path_factory.mktemp("m") / "unet.safetensors", UNET_SCALE), device="cpu")


@pytest.fixture(scope="module")
def volume(small_subject):
    return small_subject.t1[:6]


def test_pad_and_crop_any_size():
    for height, width in [(5, 7), (37, 50), (64, 64), (3, 100)]:
        x = torch.randn(2, 1, height, width)
        padded, crop = _pad(x, 4)
        assert padded.shape[-2] % 4 == 0 and padded.shape[-1] % 4 == 0 and min(padded.shape[-2:]) >= 8
        assert torch.equal(padded[..., crop[0], crop[1]], x)


def test_pad_reaches_training_window_with_air_and_background_labels():
    image = torch.rand(2, 1, 20, 30) * 2 - 1
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 20, 30)), 3).permute(0, 3, 1, 2).float()
    padded, crop = _pad(torch.cat([image, one_hot], 1), 8, minimum=64, image_channels=1)
    assert padded.shape[-2:] == (64, 64)
    assert torch.equal(padded[:, :, crop[0], crop[1]], torch.cat([image, one_hot], 1))
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[crop] = False
    assert (padded[:, 0, outside] == -1).all()  # air
    assert (padded[:, 1, outside] == 1).all() and (padded[:, 2:, outside] == 0).all()  # label 0


def test_small_slice_is_translated_inside_air_as_in_training(resnet):
    """A crop smaller than the training window (64²) sees the air training windows had around it."""
    crop = torch.rand(2, 1, 20, 30) * 2 - 1
    in_air = torch.full((2, 1, 64, 64), -1.0)
    in_air[..., 22:42, 17:47] = crop
    small = resnet._run(crop, "fp32", None)["image"]
    placed = resnet._run(in_air, "fp32", None)["image"][:, 22:42, 17:47]
    np.testing.assert_allclose(small, placed, atol=1e-3)


@pytest.mark.parametrize("shape", [(3, 37, 50), (2, 5, 9)])
def test_any_size_volume_keeps_shape(resnet, shape):
    array = np.random.default_rng(0).uniform(0, 500, shape).astype(np.float32)
    result = resnet.translate_volume(array)
    assert result.image.shape == shape and result.image.dtype == np.float32
    assert np.isfinite(result.image).all()
    assert result.image.min() >= -1024 - 1e-3 and result.image.max() <= 3000 + 1e-3  # HU window
    assert result.scale is None and result.uncertainty is None


def test_axis_handling_matches_transposed_input(resnet, volume):
    volume = volume[:, 20:44, 16:40]
    along_y = resnet.translate_volume(volume, axis=1).image
    moved = resnet.translate_volume(np.ascontiguousarray(np.moveaxis(volume, 1, 0)), axis=0).image
    np.testing.assert_allclose(along_y, np.moveaxis(moved, 0, 1), atol=0.05)


def test_batching_equals_one_by_one_and_slice_api(resnet, volume):
    batched = resnet.translate_volume(volume, batch_size=4).image
    single = resnet.translate_volume(volume, batch_size=1).image
    np.testing.assert_allclose(batched, single, atol=0.05)
    prepared = resnet.prepare(volume, axis=0)
    first = resnet.translate_slice(prepared, 2)
    np.testing.assert_allclose(first.image, batched[2], atol=0.05)
    assert resnet.translate_slice(prepared, 2) is first  # cached
    assert resnet.translate_slice(prepared, 2, precision="bf16") is not first
    with pytest.raises(IndexError):
        resnet.translate_slice(prepared, 99)


def test_estimated_batch_size_follows_the_activation_budget(resnet, unet, volume):
    """(The registration's batch size) slices × padded pixels × first-layer channels ≤ the CPU budget
    (2²¹), at least 1, at most 64; the generator's is measured (test_batch_size.py)."""
    assert resnet.auto_batch_size(128, 128) == 2**21 // (128 * 128 * 8) == 16
    assert resnet.auto_batch_size(511, 510) == 1  # padded to 512² (multiple of 4)
    assert resnet.auto_batch_size(8, 8) == 64
    assert unet.auto_batch_size(64, 64) == 2**21 // (64 * 64 * 8)


def test_context_slices_25d(tmp_path, volume):
    translator = load_translator(make_translator(tmp_path / "k3.safetensors", context=3), device="cpu")
    result = translator.translate_volume(volume, batch_size=4)
    prepared = translator.prepare(volume)
    assert prepared.network_input(0, 2).shape == (2, 3, 64, 64)
    np.testing.assert_allclose(translator.translate_slice(prepared, 5).image, result.image[5], atol=0.05)


def test_progress_and_cancel(resnet, volume):
    calls = []
    resnet.translate_volume(volume, batch_size=4, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 6), (6, 6)]
    calls.clear()
    with pytest.raises(Cancelled):
        resnet.translate_volume(
            volume, batch_size=2, progress=lambda d, t: calls.append(d), cancel=lambda: len(calls) >= 1
        )
    assert calls == [2]


def test_bf16_runs_close_to_fp32(resnet, volume):
    fp32 = resnet.translate_volume(volume[:2]).image
    bf16 = resnet.translate_volume(volume[:2], precision="bf16").image
    assert np.isfinite(bf16).all()
    assert np.abs(bf16 - fp32).mean() < 50  # HU
    with pytest.raises(ValueError, match="precision"):
        resnet.translate_volume(volume[:1], precision="int8")


@pytest.mark.parametrize("uncertainty", [None, "tta"])
def test_uniform_slices_run_in_fp32_under_bf16(resnet, unet, volume, uncertainty):
    """A slice of pure air (constant after clipping) is computed in fp32 even in a bf16 batch.

    It must equal that slice translated alone in fp32 bit for bit (same batch size, so the
    same kernels on any CPU, native or emulated bf16); the other slices differ from fp32.
    """
    mixed = volume[:3].copy()
    mixed[1] = 0.0
    for translator in (resnet, unet):
        fp32 = translator.translate_volume(mixed, uncertainty=uncertainty)
        alone = translator.translate_slice(translator.prepare(mixed), 1, uncertainty=uncertainty)
        bf16 = translator.translate_volume(mixed, batch_size=3, precision="bf16", uncertainty=uncertainty)
        np.testing.assert_array_equal(bf16.image[1], alone.image)
        assert np.abs(bf16.image[0] - fp32.image[0]).mean() > 0.5  # the others did run in bf16
        if translator.provides_scale:
            np.testing.assert_array_equal(bf16.scale[1], alone.scale)


def test_engine_equals_the_bare_generator_bit_for_bit(resnet, unet, volume):
    """translate_volume adds no arithmetic: slice by slice it gives exactly the bare generator's output
    on the normalised slices, mapped to HU; the scale head changes nothing in the image."""
    for translator in (resnet, unet):
        x = translator.prepare(volume).network_input(0, len(volume))
        with torch.inference_mode():
            bare = torch.cat([translator.generator(x[i : i + 1]) for i in range(len(x))])[:, 0]
        expected = translator.output_mapping.from_network(bare.numpy())
        for scale in (True, False):
            result = translator.translate_volume(volume, batch_size=1, scale=scale)
            np.testing.assert_array_equal(result.image, expected)
            assert (result.scale is not None) == (scale and translator.provides_scale)
    with torch.inference_mode():
        sigma = torch.cat([unet.generator.forward_with_scale(x[i : i + 1])[1] for i in range(len(x))])[:, 0]
    np.testing.assert_array_equal(
        unet.translate_volume(volume, batch_size=1).scale, unet.output_mapping.scale_from_network(sigma.numpy())
    )


def test_tta_and_mc_dropout_uncertainty(resnet, unet, volume):
    tta = resnet.translate_volume(volume[:2], uncertainty="tta")
    assert tta.uncertainty.shape == volume[:2].shape and (tta.uncertainty >= 0).all()
    assert tta.uncertainty.max() > 0
    with pytest.raises(ValueError, match="no dropout"):
        resnet.translate_volume(volume[:1], uncertainty="mc_dropout")
    mc = unet.translate_volume(volume[:2], uncertainty="mc_dropout", mc_samples=3)
    assert (mc.uncertainty >= 0).all() and mc.uncertainty.max() > 0
    assert not unet.generator.training  # the MC copy, not the generator, samples dropout
    np.testing.assert_array_equal(unet.translate_volume(volume[:1]).image, unet.translate_volume(volume[:1]).image)


def test_scale_map_in_target_units(unet, volume):
    result = unet.translate_volume(volume[:2])
    assert result.scale.shape == volume[:2].shape and (result.scale > 0).all()
    prepared = unet.prepare(volume[:2])
    with torch.inference_mode():
        _, sigma = unet.generator.forward_with_scale(prepared.network_input(0, 1))
    np.testing.assert_allclose(result.scale[0], sigma[0, 0].numpy() * (3000 + 1024) / 2, rtol=1e-3)


def test_device_resolution():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


def _blob(shape, centre, sigma=3.0):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return 1000 * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2)) - 1000


def test_register_units_axis_and_warp(tmp_path):
    path = make_translator(tmp_path / "reg.safetensors", registration=REGISTRATION)
    translator = load_translator(path, device="cpu")
    with torch.no_grad():  # a constant field: Δrow = 2 px, Δcol = -1 px
        translator.registration.field.weight.zero_()
        translator.registration.field.bias.copy_(torch.tensor([2.0, -1.0]))
    moving = np.stack([_blob((40, 36), (20, 18))] * 3).astype(np.float32)
    result = translator.register(moving, moving, spacing=(0.5, 2.0, 3.0))
    assert result.field.shape == (3, 2, 40, 36) and result.axis == 0
    np.testing.assert_allclose(result.field[:, 0], 2.0 * 2.0)  # rows ↔ y spacing
    np.testing.assert_allclose(result.field[:, 1], -1.0 * 0.5)  # cols ↔ x spacing
    expected = _blob((40, 36), (18, 19))  # sampled at p + u: content moves up 2 rows, right 1 col
    np.testing.assert_allclose(result.warped[1], expected, atol=1.0)
    flat = translator.register(moving[0], moving[0], spacing=(0.5, 2.0))
    assert flat.field.shape == (2, 40, 36) and flat.warped.shape == (40, 36)
    with pytest.raises(ValueError, match="no registration"):
        load_translator(make_translator(tmp_path / "plain.safetensors"), device="cpu").register(
            moving, moving, spacing=(1, 1, 1)
        )


@pytest.mark.slow  # fits a registration net (> 20 s)
def test_register_recovers_shift_direction(tmp_path):
    """Fit the registration net on one known shift; the field must point the right way."""
    path = make_translator(tmp_path / "reg.safetensors", registration={**REGISTRATION, "nf": 4})
    translator = load_translator(path, device="cpu")
    moving = _blob((24, 24), (10, 12))[None].astype(np.float32)
    fixed = _blob((24, 24), (13, 12))[None].astype(np.float32)  # target 3 rows lower
    mapping = ct_window().fit(None)
    m, f = (torch.from_numpy(mapping.to_network(a))[:, None] for a in (moving, fixed))
    from napari_medtrans.nets import warp

    net = translator.registration.train()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(20):
        optimiser.zero_grad()
        loss = torch.nn.functional.l1_loss(warp(m, net(m, f)), f)
        loss.backward()
        optimiser.step()
    net.eval()
    result = translator.register(moving, fixed, spacing=(1.0, 1.0, 1.0))
    blob = fixed[0] > -500
    assert result.field[0, 0][blob].mean() < -1.5  # sample 3 rows up: Δrow < 0
    assert abs(result.field[0, 1][blob].mean()) < abs(result.field[0, 0][blob].mean())
    assert np.abs(result.warped - fixed).mean() < np.abs(moving - fixed).mean()
