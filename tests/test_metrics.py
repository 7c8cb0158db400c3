"""Sanity tests of napari_medtrans.metrics: known inputs give known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

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
    assert result.values["mae"] == 0 and result.values["nmae"] == 0
    assert result.values["ssim"] == pytest.approx(1.0)
    assert result.values["psnr"] == float("inf")
    assert result.per_slice["mae"].shape == (4,)
    assert result.values["mae_outside"] is None and "outside" in result.reasons["mae_outside"]


def test_constant_offset_gives_known_values(ct_volume):
    mask = metrics.body_mask(ct_volume, threshold=-500)
    shifted = ct_volume + 100 * mask
    result = metrics.paired_metrics(shifted, ct_volume, mask).values
    assert result["mae"] == pytest.approx(100)
    assert result["nmae"] == pytest.approx(100 / 4024)
    assert result["psnr"] == pytest.approx(10 * np.log10(4024**2 / 100**2))
    assert 0 < result["ssim"] < 1
    assert result["mae_outside"] == 0 and result["hot_voxels_outside"] == 0
    np.testing.assert_allclose(metrics.paired_metrics(shifted, ct_volume, mask).per_slice["mae"], 100)


def test_mae_is_unclipped_and_psnr_clipped_as_synthrad():
    reference = np.zeros((1, 8, 8))
    prediction = np.full((1, 8, 8), 5000.0)  # 2000 HU beyond the CT range
    values = metrics.paired_metrics(prediction, reference).values
    assert values["mae"] == 5000
    assert values["psnr"] == pytest.approx(10 * np.log10(4024**2 / 3000**2))


def test_ssim_soft_tissue_bias_is_small_synthrad_style():
    """+30 HU on 40 HU soft tissue: uniform images, so SSIM is its luminance term, computed by hand
    on values shifted by +1024 (C1 = (0.01 · 4024)²); unshifted it would be 0.889."""
    reference = np.full((8, 16, 16), 40.0)
    c1 = (0.01 * 4024) ** 2
    by_hand = (2 * 1064 * 1094 + c1) / (1064**2 + 1094**2 + c1)
    everywhere = np.ones(reference.shape, bool)
    assert metrics.ssim(reference + 30, reference, everywhere, metrics.CT_RANGE).value == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.99961, abs=1e-5)
    assert (2 * 40 * 70 + c1) / (40**2 + 70**2 + c1) == pytest.approx(0.889, abs=1e-3)


def test_ssim_fills_outside_the_mask_and_is_3d():
    """A textured head on air with +30 HU in the body scores 0.9995 (the issue's case); what the
    prediction does outside the mask does not count; a 3-D map leaves the 3 edge slices out."""
    rng = np.random.default_rng(0)
    _, yy, xx = np.mgrid[:16, :64, :64]
    body = ((yy - 32) / 26) ** 2 + ((xx - 32) / 22) ** 2 < 1
    reference = np.where(body, 40 + rng.normal(0, 10, body.shape), -1000)
    prediction = reference + 30 * body
    score = metrics.ssim(prediction, reference, body, metrics.CT_RANGE)
    assert score.value == pytest.approx(0.9995, abs=2e-4)
    wild_air = np.where(body, prediction, 2000)
    assert metrics.ssim(wild_air, reference, body, metrics.CT_RANGE).value == pytest.approx(score.value)
    assert np.isnan(score.per_slice[:3]).all() and np.isnan(score.per_slice[-3:]).all()
    assert np.isfinite(score.per_slice[3:-3]).all()


def test_outside_body_metrics_count_hallucinations_in_air():
    reference = np.full((2, 10, 10), -1000.0)
    mask = np.zeros(reference.shape, bool)
    mask[:, 2:8, 2:8] = True
    reference[mask] = 40
    reference[0, 2, 2] = 100  # a range for the MR case below
    prediction = reference.copy()
    prediction[0, 0, :5] = 200  # five hot voxels in the air of slice 0: 1200 HU off
    values = metrics.paired_metrics(prediction, reference, mask)
    outside = (~mask).sum()  # 128 voxels
    assert values.values["mae_outside"] == pytest.approx(5 * 1200 / outside)
    assert values.values["hot_voxels_outside"] == 5
    np.testing.assert_array_equal(values.per_slice["hot_voxels_outside"], [5, 0])
    deviation = np.sort(np.abs(prediction[~mask] + 1000))
    assert values.values["p99_outside"] == pytest.approx(np.percentile(deviation, 99))
    assert values.values["p99_outside"] > 1000
    mr = metrics.paired_metrics(prediction, reference, mask, modality="T1")
    assert mr.values["hot_voxels_outside"] is None and "CT" in mr.reasons["hot_voxels_outside"]


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


def _textures(seed: int, n: int = 16) -> list[np.ndarray]:
    """Slices around 500 HU with texture: nowhere near the clip limits of the CT range."""
    rng = np.random.default_rng(seed)
    xx = np.mgrid[:64, :64][1]
    return [500 + 200 * np.sin(xx / 4) + rng.normal(0, 50, (64, 64)) for _ in range(n)]


def test_swd_scores_a_global_offset_through_the_low_pass_level():
    """+500 HU everywhere, no clipping involved: only the low-pass level sees it, and clearly."""
    same = metrics.swd(_textures(1), _textures(2))
    offset = metrics.swd([s + 500 for s in _textures(1)], _textures(2))
    assert len(same.per_level) == 3  # 64, 32 (band-pass) and the 16-pixel low-pass level
    np.testing.assert_allclose(offset.per_level[:-1], same.per_level[:-1])
    assert offset.per_level[-1] > 50 * same.per_level[-1]
    assert offset.value > 20 * same.value


def test_swd_draws_patch_positions_independently_per_set():
    """The same images in both sets: independent positions give a small positive distance."""
    images = _textures(1)
    same = metrics.swd(images, images)
    assert 0 < same.value < metrics.swd(images, _textures(2, n=16)).value * 2
    assert metrics.swd(images, images).value == same.value  # seeded


def test_frd_uses_a_full_rank_subset_and_gives_an_interval(ct_volume):
    reference = _slices(ct_volume, 1)
    masks = [s > -500 for s in reference]
    groups = [i // 2 for i in range(len(reference))]  # two slices per subject
    same = metrics.frd(
        _slices(ct_volume, 2), reference, masks, masks, groups=groups, reference_groups=groups, image_types=["Original"]
    )
    shifted = metrics.frd(
        _slices(ct_volume * 1.5 + 300, 2),
        reference,
        masks,
        masks,
        groups=groups,
        reference_groups=groups,
        image_types=["Original"],
    )
    assert same.samples == (8, 8) and same.features > 50 and same.features_used == 4
    assert same.value < shifted.value
    assert same.ci95[0] <= same.value <= same.ci95[1]


def test_frd_from_features_by_hand():
    """Two Gaussian feature sets a known mean apart: full rank needs n ≥ 2 d, else fewer features."""
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (4000, 3)) * [3, 2, 1]
    features = rng.normal(0, 1, (4000, 3)) * [3, 2, 1] + [2, 0, 0]
    full = metrics.frd_from_features(features, reference, bootstrap=50)
    assert full.features_used == 3 and full.value == pytest.approx(np.log(4), abs=0.1)
    few = metrics.frd_from_features(features[:4], reference[:4], bootstrap=0)
    assert few.features_used == 2 and few.ci95 is None


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
def test_impulse_scenarios_replace_pixels_by_uniform_values(name):
    """UAPI's impulse perturbation: the stated fraction of pixels, each replaced by a value
    uniform in the range (mean 500, std 1000/√12 ≈ 288.7), not salt and pepper."""
    image = np.full((8, 64, 64), 500.0, np.float32)
    noisy = metrics.apply_scenario(name, image, seed=3, value_range=(0.0, 1000.0))
    replaced = noisy[noisy != 500]
    assert replaced.size / image.size == pytest.approx(metrics.SCENARIOS[name][1], rel=0.1)
    assert replaced.min() >= 0 and replaced.max() <= 1000
    assert replaced.mean() == pytest.approx(500, abs=20) and replaced.std() == pytest.approx(288.7, rel=0.06)
    assert np.mean((replaced > 1) & (replaced < 999)) > 0.99  # not the extremes
    assert stats.kstest(replaced, stats.uniform(0, 1000).cdf).pvalue > 0.01


def test_bootstrap_interval_and_overlap():
    low, high = metrics.bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert 1.0 <= low < 3.0 < high <= 5.0
    assert metrics.bootstrap_ci([1.0]) is None and metrics.bootstrap_ci([1.0, None, float("nan")]) is None
    assert metrics.intervals_overlap((1, 2), (2, 3)) and not metrics.intervals_overlap((1, 2), (2.5, 3))


def test_clean_scenario_is_identity_and_unknown_fails(ct_volume):
    np.testing.assert_array_equal(metrics.apply_scenario("GN0", ct_volume, seed=0), ct_volume)
    with pytest.raises(ValueError, match="unknown scenario"):
        metrics.apply_scenario("XX", ct_volume, seed=0)


def test_through_plane_entry_scores_stripes_not_a_global_shift():
    from napari_medtrans.metrics import paired_metrics

    reference = np.full((4, 8, 8), 40.0)
    mask = np.ones(reference.shape, bool)
    stripes = reference + np.array([10.0, -10.0, 10.0, -10.0])[:, None, None]  # each slice its own offset
    result = paired_metrics(stripes, reference, mask)
    assert result.values["through_plane"] == pytest.approx(20.0)
    np.testing.assert_allclose(result.per_slice["through_plane"], [20.0, 20.0, 20.0, np.nan])
    assert paired_metrics(reference + 100.0, reference, mask).values["through_plane"] == pytest.approx(0.0)
