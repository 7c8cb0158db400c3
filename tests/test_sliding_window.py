"""Sliding-window 3-D inference: window geometry, Gaussian weights and blending, padding."""

import math

import numpy as np
import pytest
import torch

from napari_medtrans.sliding_window import gaussian_importance, sliding_window, window_starts, windows


def test_window_starts_cover_the_axis_with_even_steps():
    assert window_starts(10, 4) == [0, 2, 4, 6]  # step 2 = half the patch
    assert window_starts(11, 4) == [0, 2, 4, 5, 7]  # 5 windows, step 7/4 rounded
    assert window_starts(4, 4) == [0]
    assert window_starts(10, 4, overlap=0.0) == [0, 3, 6]  # ceil(6/4) + 1 = 3 windows
    with pytest.raises(ValueError, match="patch ≤ size"):
        window_starts(3, 4)


def test_gaussian_importance_values():
    w = gaussian_importance((4, 5))
    # axis of 4: centre 1.5, σ 0.5 → exp(-4.5), exp(-0.5), exp(-0.5), exp(-4.5), scaled to a maximum of 1
    along_4 = np.array([math.exp(-4.0), 1.0, 1.0, math.exp(-4.0)])
    # axis of 5: centre 2, σ 0.625 → exp(-(x-2)² / 0.78125)
    along_5 = np.exp(-((np.arange(5) - 2.0) ** 2) / 0.78125)
    np.testing.assert_allclose(w, np.maximum(np.outer(along_4, along_5), 1e-3), rtol=1e-6)
    assert w.max() == 1.0 and w.min() == pytest.approx(1e-3)


def test_identity_network_returns_the_volume_through_padding_and_odd_sizes():
    volume = torch.arange(2 * 3 * 9 * 11, dtype=torch.float32).reshape(2, 3, 9, 11)
    out = sliding_window(volume, lambda x: x, (4, 4, 4), batch_size=3)  # depth 3 < 4: padded and cropped
    assert out.shape == volume.shape
    torch.testing.assert_close(out, volume)
    assert len(list(windows((4, 9, 11), (4, 4, 4)))) == 1 * 4 * 5


def test_padding_with_a_value_instead_of_edge_values():
    volume = torch.ones(1, 2, 4, 4)
    seen = []
    out = sliding_window(volume, lambda x: seen.append(x.clone()) or x, (4, 4, 4), pad_value=-1.0)
    torch.testing.assert_close(out, volume)
    # depth 2 padded to 4: one slice of -1 before and after
    assert (seen[0][0, 0, 0] == -1).all() and (seen[0][0, 0, 3] == -1).all() and (seen[0][0, 0, 1:3] == 1).all()


def test_overlapping_windows_blend_with_their_gaussian_weights():
    calls = iter(range(10))
    # one window along z and y, two along x (starts 0 and 2); window k predicts the constant k
    out = sliding_window(torch.zeros(1, 4, 4, 6), lambda x: torch.full_like(x, float(next(calls))), (4, 4, 4))
    edge = math.exp(-4.0)  # the weight of a patch's outer voxel relative to its inner ones
    expected = [0.0, 0.0, edge / (1 + edge), 1 / (1 + edge), 1.0, 1.0]
    np.testing.assert_allclose(out[0, 2, 1].numpy(), expected, rtol=1e-5)
    # in a corner row both weights, e²·1 and e²·e, fall below the 1e-3 floor: an even blend
    np.testing.assert_allclose(out[0, 0, 0].numpy(), [0.0, 0.0, 0.5, 0.5, 1.0, 1.0], rtol=1e-5)


def tiny_translator(tmp_path, spec: dict, patch: list[int] | None = None, name: str | None = None):
    """A translator file (``<name>.safetensors``, default ``<dims>d``) of an untrained generator ``spec``
    (3-D ones with their ``patch``), loaded on the CPU."""
    from napari_medtrans.checkpoint import TranslatorMetadata, save_translator
    from napari_medtrans.inference import load_translator
    from napari_medtrans.intensity import ct_window, mr_percentile
    from napari_medtrans.nets import build_network

    outputs = ["image", "scale"] if spec.get("scale_head") else ["image"]
    md = TranslatorMetadata(
        name=name or "tiny",
        method="regression",
        source="T1",
        target="CT",
        networks={"generator": spec},
        outputs=outputs,
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
        provenance={"run": "test"},
        patch=patch,
    )
    path = save_translator(
        tmp_path / f"{name or str(spec.get('dims', 2)) + 'd'}.safetensors", {"generator": build_network(spec)}, md
    )
    return load_translator(path, device="cpu")


def test_translate_volume_3d_matches_one_whole_volume_pass(tmp_path):
    """With a patch as large as the volume there is one window: the result is one forward pass."""
    from test_res_unet import TINY

    from napari_medtrans.sliding_window import translate_volume_3d

    translator = tiny_translator(tmp_path, {**TINY, "depth": 2, "dims": 3, "scale_head": True}, patch=[4, 8, 8])
    array = np.random.default_rng(0).uniform(0, 800, (8, 12, 16)).astype(np.float32)
    whole = translate_volume_3d(translator, array, (8, 12, 16))
    windowed = translate_volume_3d(translator, array, (4, 8, 8), batch_size=4)
    assert whole["image"].shape == windowed["image"].shape == array.shape
    assert (whole["scale"] > 0).all() and -1024 <= whole["image"].min() <= whole["image"].max() <= 3071
    x = torch.from_numpy(translator.prepare(array).mapping.to_network(array))[None, None]
    with torch.inference_mode():
        expected = translator.output_mapping.from_network(translator.generator(x)[0, 0].numpy())
    np.testing.assert_allclose(whole["image"], expected, atol=1e-3)
    with pytest.raises(ValueError, match="2-D generator"):
        translate_volume_3d(tiny_translator(tmp_path, TINY), array, (4, 8, 8))
