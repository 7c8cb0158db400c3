"""Sanity tests of napari_medtrans.metrics: known inputs give known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medtrans import metrics


@pytest.fixture
def ct_volume() -> np.ndarray:
    """A small CT-like volume: a bright ellipse with texture on -1000 HU air."""
    rng = np.random.default_rng(0)
    _, yy, xx = np.mgrid[:4, :48, :48]
    head = ((yy - 24) / 18) ** 2 + ((xx - 24) / 15) ** 2 < 1
    return np.where(head, 40 + 300 * np.sin(xx / 3.0) + rng.normal(0, 30, head.shape), -1000).astype(np.float32)


def test_identical_images_are_perfect(ct_volume):
    result = metrics.paired_metrics(ct_volume, ct_volume)
    assert result.mae == 0 and result.nmae == 0
    assert result.ssim == pytest.approx(1.0)
    assert result.psnr == float("inf")
    assert result.per_slice["mae"].shape == (4,)


def test_constant_offset_gives_known_values(ct_volume):
    mask = metrics.body_mask(ct_volume, threshold=-500)
    shifted = ct_volume + 100 * mask
    result = metrics.paired_metrics(shifted, ct_volume, mask)
    assert result.mae == pytest.approx(100)
    assert result.nmae == pytest.approx(100 / 4024)
    assert result.psnr == pytest.approx(10 * np.log10(4024**2 / 100**2))
    assert 0 < result.ssim < 1
    np.testing.assert_allclose(result.per_slice["mae"], 100)


def test_empty_slice_is_nan_and_empty_mask_unavailable(ct_volume):
    mask = metrics.body_mask(ct_volume, threshold=-500)
    mask[0] = False
    result = metrics.paired_metrics(ct_volume + 10, ct_volume, mask)
    assert np.isnan(result.per_slice["mae"][0]) and result.per_slice["mae"][1] == pytest.approx(10)
    with pytest.raises(metrics.MetricUnavailable):
        metrics.paired_metrics(ct_volume, ct_volume, np.zeros_like(mask))


def test_body_mask_fills_holes():
    image = np.full((1, 20, 20), -1000.0)
    image[0, 4:16, 4:16] = 50
    image[0, 8:12, 8:12] = -1000  # an air pocket inside the body
    assert metrics.body_mask(image, -500)[0, 4:16, 4:16].all()


def test_dice_of_labels_with_themselves_is_one():
    labels = np.zeros((2, 10, 10), np.uint8)
    labels[:, 2:5] = 1
    labels[:, 6:9] = 2
    names = {1: "fat", 2: "bone", 3: "csf"}
    dice = metrics.dice_per_label(labels, labels, names)
    assert dice == {"fat": 1.0, "bone": 1.0, "csf": None}
    assert metrics.mean_dice(dice) == 1.0
    half = labels.copy()
    half[:, 2:5, 5:] = 0  # half of label 1 lost
    assert metrics.dice_per_label(half, labels, names)["fat"] == pytest.approx(2 * 0.5 / 1.5)


def test_uncertainty_pcc_tracks_error(ct_volume):
    errors = np.arange(1, 5, dtype=np.float32)[:, None, None] * 10
    prediction = ct_volume + errors
    agreement = metrics.uncertainty_pcc(np.broadcast_to(errors * 0.5, ct_volume.shape), prediction, ct_volume)
    assert agreement.pcc == pytest.approx(1.0)
    np.testing.assert_allclose(agreement.mean_error, [10, 20, 30, 40], rtol=1e-5)
    with pytest.raises(metrics.MetricUnavailable):
        metrics.uncertainty_pcc(np.ones_like(ct_volume), prediction, ct_volume)


def test_uncertainty_pcc_leaves_out_slivers_below_min_foreground():
    """A slice with a few body voxels and a wild error counts only when min_foreground allows it."""
    shape = (5, 20, 20)
    mask = np.zeros(shape, bool)
    mask[:4, 2:18, 2:18] = True
    mask[4, :2, :2] = True  # a 1 % sliver
    errors = np.array([10, 20, 30, 40, 900], np.float32)[:, None, None]
    reference = np.zeros(shape, np.float32)
    scale = np.broadcast_to(np.array([1, 2, 3, 4, 1], np.float32)[:, None, None], shape)
    every = metrics.uncertainty_pcc(scale, reference + errors, reference, mask)
    body = metrics.uncertainty_pcc(scale, reference + errors, reference, mask, min_foreground=0.1)
    assert body.pcc == pytest.approx(1.0) and every.pcc < 0
    np.testing.assert_allclose(body.foreground, [0.64, 0.64, 0.64, 0.64, 0.01])
    assert len(body.mean_error) == 5  # every slice is summarised; only the correlation leaves the sliver out


def _slices(volume: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [s + rng.normal(0, 30, s.shape) for s in volume for _ in range(2)]


def test_swd_is_lower_for_the_same_distribution(ct_volume):
    same = metrics.swd(_slices(ct_volume, 1), _slices(ct_volume, 2))
    shifted = metrics.swd(_slices(ct_volume + 300, 1), _slices(ct_volume, 2))
    assert metrics.swd(_slices(ct_volume, 1), _slices(ct_volume, 1)) == pytest.approx(0, abs=1e-9)
    assert same < shifted


def test_frd_against_itself_is_lower_than_against_shifted(ct_volume):
    reference = _slices(ct_volume, 1)
    masks = [s > -500 for s in reference]
    same = metrics.frd(_slices(ct_volume, 2), reference, masks, masks, image_types=["Original"])
    shifted = metrics.frd(_slices(ct_volume * 1.5 + 300, 2), reference, masks, masks, image_types=["Original"])
    assert same < shifted


def test_fid_kid_with_a_local_torchscript_extractor(tmp_path, ct_volume):
    class Features(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
            pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255, 4)
            return pooled.flatten(1)

    path = tmp_path / "extractor.pt"
    torch.jit.script(Features()).save(str(path))
    extractor = metrics.feature_extractor_from_file(path)
    images = list(ct_volume)
    fid, kid = metrics.fid_kid(images, images, extractor)
    assert fid == pytest.approx(0, abs=1e-6)
    shifted_fid, shifted_kid = metrics.fid_kid([i + 500 for i in images], images, extractor)
    assert shifted_fid > fid and shifted_kid > kid
    with pytest.raises(metrics.MetricUnavailable):
        metrics.feature_extractor_from_file(tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ["GN5", "GN10", "GN20"])
def test_gaussian_scenarios_have_the_stated_std(name):
    image = np.full((4, 64, 64), 500.0, np.float32)
    noisy = metrics.apply_scenario(name, image, seed=3, value_range=(0.0, 1000.0))
    level = metrics.SCENARIOS[name][1]
    assert noisy.std() == pytest.approx(level * 1000, rel=0.05)
    np.testing.assert_array_equal(noisy, metrics.apply_scenario(name, image, seed=3, value_range=(0.0, 1000.0)))


@pytest.mark.parametrize("name", ["IP2", "IP5", "IP10"])
def test_impulse_scenarios_hit_the_stated_fraction(name):
    image = np.full((4, 64, 64), 500.0, np.float32)
    noisy = metrics.apply_scenario(name, image, seed=3, value_range=(0.0, 1000.0))
    assert set(np.unique(noisy)) <= {0.0, 500.0, 1000.0}
    assert (noisy != 500).mean() == pytest.approx(metrics.SCENARIOS[name][1], rel=0.1)


def test_clean_scenario_is_identity_and_unknown_fails(ct_volume):
    np.testing.assert_array_equal(metrics.apply_scenario("GN0", ct_volume, seed=0), ct_volume)
    with pytest.raises(ValueError, match="unknown scenario"):
        metrics.apply_scenario("XX", ct_volume, seed=0)
