"""Source-side training augmentations (:mod:`training.augment`) and fine-tuning from a translator (``--init``)."""

import dataclasses

import numpy as np
import pytest
from _training_helpers import tiny_config

from napari_medtrans.contract import DataConfig
from napari_medtrans.intensity import mr_median
from napari_medtrans.phantom import generate_subject
from napari_medtrans.phantom.anatomy import BONE, CSF, GM, SINUS, WM
from training.augment import (
    BRAIN_LABELS,
    DARK_POOL_GAIN,
    POOL_DEPTH,
    POOL_GAP,
    TISSUE_GAINS,
    Pool,
    SourceAugmentation,
    View,
    pool_share,
    tissue_statistics,
)
from training.config import ConfigError
from training.data import SliceSampler, check_context, load_cohort

SHAPE = (12, 64, 64)


def _config(**augment: float) -> DataConfig:
    return DataConfig(
        phantom="paired",
        phantom_subjects=3,
        phantom_depth=SHAPE[0],
        size=SHAPE[1],
        context_slices=3,
        min_foreground=0.2,
        source_intensity="median",
        val_fraction=0,
        **{f"augment_{name}": p for name, p in augment.items()},
    )


@pytest.fixture(scope="module")
def cohort():
    return load_cohort(_config(), seed=0)


def _sampler(cohort, seed=0, **augment):
    cfg = _config(**augment)
    return SliceSampler(dataclasses.replace(cohort, train=cohort.train), cfg, seed)


def _augmentation(**augment):
    return SourceAugmentation(_config(**augment), mr_median(), aligned=True, labelled=True)


def test_probability_zero_is_the_identity_and_draws_nothing():
    subject = generate_subject(3, shape=SHAPE)
    volume = mr_median().fit(subject.t1).to_network(subject.t1)
    augmentation = _augmentation()
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    view = augmentation.draw(rng, volume, 6)
    assert view == View() and rng.bit_generator.state == before  # the sampler's stream is untouched
    stack = augmentation.source(view, 0, volume, subject.labels, 6, 3)
    assert np.array_equal(stack, volume[5:8])
    assert augmentation.change_intensity(view, stack) is stack


def test_zero_probabilities_leave_the_batches_of_a_plain_sampler(cohort):
    plain = _sampler(cohort, seed=4).sample(3)
    zero = _sampler(cohort, seed=4, skull_strip=0, fov_crop=0, intensity=0).sample(3)
    augmented = _sampler(cohort, seed=4, intensity=1).sample(3)
    assert all(np.array_equal(plain[k], zero[k]) for k in plain)
    assert not np.array_equal(plain["source"], augmented["source"])


def test_context_strides_space_the_context_slices_of_each_window():
    subject = generate_subject(3, shape=SHAPE)
    volume = mr_median().fit(subject.t1).to_network(subject.t1)
    spaced = SourceAugmentation(
        dataclasses.replace(_config(), context_strides=(1, 4)), mr_median(), aligned=True, labelled=True
    )
    rng = np.random.default_rng(0)
    strides = [spaced.draw(rng, volume, 6).stride for _ in range(200)]
    assert set(strides) == {1, 4} and 70 < strides.count(4) < 130
    stack = spaced.source(View(stride=4), 0, volume, subject.labels, 6, 3)
    assert np.array_equal(stack, volume[[2, 6, 10]])
    clamped = spaced.source(View(strip=True, stride=4), 0, volume, subject.labels, 1, 3)
    assert np.array_equal(clamped[0] == -1, ~np.isin(subject.labels[0], BRAIN_LABELS))  # slice 1 - 4 → slice 0
    for strides_, slices, message in (((0, 1), 3, "at least one slice"), ((1, 4), 1, "context_slices > 1")):
        with pytest.raises(ConfigError, match=message):
            check_context(dataclasses.replace(_config(), context_strides=strides_, context_slices=slices))


def test_skull_strip_is_what_inference_sees_of_a_skull_stripped_t1():
    subject = generate_subject(3, shape=SHAPE)
    model = mr_median()
    volume = model.fit(subject.t1).to_network(subject.t1)
    brain = np.isin(subject.labels, BRAIN_LABELS)
    stripped_t1 = np.where(brain, subject.t1, 0)
    expected = model.fit(stripped_t1).to_network(stripped_t1)
    got = _augmentation(skull_strip=1).source(View(strip=True), 0, volume, subject.labels, 6, 3)
    assert got.shape == (3, *SHAPE[1:])
    assert np.all(got[~brain[5:8]] == -1)
    np.testing.assert_allclose(got, expected[5:8], atol=1e-4)


def test_fov_crop_is_what_inference_sees_of_a_scan_of_the_box():
    subject = generate_subject(3, shape=SHAPE)
    model = mr_median()
    volume = model.fit(subject.t1).to_network(subject.t1)
    box = (2, 10, 20, 50, 15, 45)
    z0, z1, r0, r1, c0, c1 = box
    crop = subject.t1[z0:z1, r0:r1, c0:c1]
    expected = model.fit(crop).to_network(crop)
    got = _augmentation(fov_crop=1).source(View(box=box), 0, volume, subject.labels, 6, 3)
    unclipped = volume[5:8, r0:r1, c0:c1] < 1  # the whole head's normalisation clipped the brightest fat
    # (which also moves the foreground threshold a little: the median can differ by ~1e-4)
    np.testing.assert_allclose(got[:, r0:r1, c0:c1][unclipped], expected[3:6][unclipped], atol=1e-3)
    outside = np.ones(SHAPE[1:], bool)
    outside[r0:r1, c0:c1] = False
    assert np.all(got[:, outside] == -1)
    # a context slice outside the box's slab is background
    edge = _augmentation(fov_crop=1).source(View(box=box), 0, volume, subject.labels, 2, 3)
    assert np.all(edge[0] == -1) and np.any(edge[1] > -1)


def test_fov_box_lies_in_the_head_and_around_the_slice():
    subject = generate_subject(3, shape=SHAPE)
    volume = mr_median().fit(subject.t1).to_network(subject.t1)
    rng = np.random.default_rng(0)
    head = volume[6] > -0.9
    rows, cols = np.flatnonzero(head.any(1)), np.flatnonzero(head.any(0))
    for _ in range(50):
        z0, z1, r0, r1, c0, c1 = _augmentation(fov_crop=1).draw(rng, volume, 6).box
        assert z0 <= 6 < z1 and rows[0] <= r0 < r1 <= rows[-1] + 1 and cols[0] <= c0 < c1 <= cols[-1] + 1


@pytest.mark.parametrize("augment", [{"skull_strip": 1.0}, {"fov_crop": 1.0}, {"skull_strip": 0.5, "fov_crop": 0.5}])
def test_source_target_and_labels_stay_consistent(cohort, augment):
    batch = _sampler(cohort, seed=1, **augment).sample(8)
    assert batch["source"].shape == (8, 3, *SHAPE[1:]) and batch["target"].shape == (8, 1, *SHAPE[1:])
    source, target, labels = batch["source"][:, 1], batch["target"][:, 0], batch["target_labels"]
    assert np.array_equal(batch["source_labels"], labels)  # paired: one anatomy, one mask
    masked = source == -1  # exactly -1 only where masked or padded (MR noise keeps air above it)
    assert masked.mean() > 0.3
    assert np.all(target[masked] == -1) and np.all(labels[masked] == 0)
    assert np.all(target[(labels > 0) & (labels != SINUS)] > -0.95)  # kept tissue keeps its CT
    if augment.get("skull_strip") == 1.0:
        assert set(np.unique(labels).tolist()) <= {0, *BRAIN_LABELS}


def test_intensity_keeps_background_and_geometry():
    window = np.full((3, 32, 32), -1, np.float32)
    window[:, 8:24, 8:24] = np.linspace(-0.5, 0.5, 16, dtype=np.float32)
    view = View(gamma=1.3, contrast=0.9, bias=(0.1, -0.1, 0.05))
    out = _augmentation(intensity=1).change_intensity(view, window)
    assert out.shape == window.shape and out.dtype == np.float32
    assert np.all(out[window == -1] == -1) and np.all(np.abs(out) <= 1)
    assert not np.allclose(out[window > -1], window[window > -1])
    # order kept along a row (the bias field is smooth and gamma monotone)
    assert np.all(np.diff(out[1, 16, 8:24]) > 0)


def test_tissue_contrast_scales_each_brain_tissue_and_bone_and_nothing_else():
    subject = generate_subject(3, shape=SHAPE)
    volume = mr_median().fit(subject.t1).to_network(subject.t1)
    augmentation = _augmentation(tissue_contrast=1)
    view = augmentation.draw(np.random.default_rng(2), volume, 6)
    assert view.tissue_gain is not None and len(view.tissue_gain) == len(TISSUE_GAINS)
    assert all(lo <= g <= hi for g, (lo, hi) in zip(view.tissue_gain, TISSUE_GAINS.values()))
    gains = (0.9, 1.1, 1.05, 0.3)  # in TISSUE_GAINS' order
    assert list(TISSUE_GAINS) == [GM, WM, CSF, BONE]
    stack = augmentation.source(View(tissue_gain=gains), 0, volume, subject.labels, 6, 3)
    before, labels = volume[5:8], subject.labels[5:8]
    assert (labels == BONE).any()
    for label, gain in zip(TISSUE_GAINS, gains):
        inside = labels == label
        expected = np.clip((before[inside] + 1) / 2 * gain, 0, 1) * 2 - 1
        np.testing.assert_allclose(stack[inside], expected, atol=1e-6)
    others = ~np.isin(labels, list(TISSUE_GAINS))
    assert np.array_equal(stack[others], before[others])
    ratio = stack[labels == GM].mean() + 1, stack[labels == WM].mean() + 1
    assert ratio[0] / ratio[1] == pytest.approx(
        (before[labels == GM].mean() + 1) / (before[labels == WM].mean() + 1) * 0.9 / 1.1, rel=0.02
    )


def test_tissue_contrast_leaves_the_target_alone(cohort):
    def first(seed, **augment):  # no flips: both samplers pick and place the first slice alike
        cfg = dataclasses.replace(_config(**augment), flip=False)
        return SliceSampler(dataclasses.replace(cohort, train=cohort.train), cfg, seed).sample(1)

    changed = 0
    for seed in range(4):
        plain, contrast = first(seed), first(seed, tissue_contrast=1)
        assert np.array_equal(plain["target"], contrast["target"])
        assert np.array_equal(plain["source_labels"], contrast["source_labels"])
        changed += not np.array_equal(plain["source"], contrast["source"])
    assert changed


def test_csf_pools_turn_deep_brain_into_the_subjects_csf_in_source_target_and_labels(cohort):
    augmentation = _augmentation(csf_pools=1)
    subject = cohort.train[0]
    labels = subject.source_labels
    z = int(np.argmax([np.isin(labels[i], BRAIN_LABELS).sum() for i in range(SHAPE[0])]))
    view = augmentation.draw(np.random.default_rng(3), subject.source, z, labels)
    assert 1 <= len(view.pools) <= 3
    assert all(pool.centre[0] == z for pool in view.pools)
    source, target = subject.source.copy(), subject.target.copy()
    pooled = augmentation.with_pools(view, 0, subject)
    assert np.array_equal(subject.source, source) and np.array_equal(subject.target, target)  # copies
    new = pooled.source_labels != labels
    assert new.any() and np.all(pooled.source_labels[new] == CSF) and np.all(np.isin(labels[new], BRAIN_LABELS))
    assert pooled.target_labels is pooled.source_labels
    box, share = pool_share(view.pools, labels)
    assert share.max() <= 1 and np.all((share >= 0.5) <= (pooled.source_labels[box] == CSF))
    for image, before in ((pooled.source, subject.source), (pooled.target, subject.target)):
        changed = image != before
        assert np.all(changed[box][share >= 0.5]) and not changed[box][share == 0].any()
        changed[box] = False
        assert not changed.any()  # nothing outside the pools' box
    for image, before in ((pooled.source, subject.source), (pooled.target, subject.target)):
        value, spread = tissue_statistics(before, labels)
        assert abs(np.median(image[new]) - value) < max(3 * spread, 0.02)
    value, _ = tissue_statistics(subject.source, labels)  # in T1 the pools were brighter brain (in CT a few HU apart)
    assert np.median(subject.source[new]) - value > 5 * abs(np.median(pooled.source[new]) - value)
    assert augmentation.with_pools(View(), 0, subject) is subject


def test_dark_pools_darken_the_source_pools_alone(cohort):
    subject = cohort.train[0]
    labels = subject.source_labels
    z = int(np.argmax([np.isin(labels[i], BRAIN_LABELS).sum() for i in range(SHAPE[0])]))
    gains = [
        _augmentation(csf_pools=1, dark_pools=1).draw(np.random.default_rng(s), subject.source, z, labels).pool_gain
        for s in range(8)
    ]
    assert all(DARK_POOL_GAIN[0] <= g <= DARK_POOL_GAIN[1] for g in gains) and len(set(gains)) == len(gains)
    view = _augmentation(csf_pools=1).draw(np.random.default_rng(3), subject.source, z, labels)
    assert view.pool_gain == 1.0
    plain = _augmentation(csf_pools=1).with_pools(view, 0, subject)
    dark = _augmentation(csf_pools=1).with_pools(dataclasses.replace(view, pool_gain=0.4), 0, subject)
    assert np.array_equal(dark.target, plain.target) and np.array_equal(dark.source_labels, plain.source_labels)
    box, share = pool_share(view.pools, labels)
    pool = np.zeros(labels.shape, np.float32)
    pool[box] = share
    np.testing.assert_allclose(dark.source[pool == 1] + 1, 0.4 * (plain.source[pool == 1] + 1), rtol=1e-5)
    assert np.array_equal(dark.source[pool == 0], subject.source[pool == 0])
    with pytest.raises(ConfigError, match="augment_csf_pools"):
        _augmentation(dark_pools=0.5)


def test_csf_pools_lie_deep_in_the_brain_alone_or_as_mirrored_pairs_and_need_paired_labels(cohort):
    from scipy import ndimage

    augmentation = _augmentation(csf_pools=1)
    subject, z = cohort.train[1], 6
    depth = ndimage.distance_transform_edt(np.isin(subject.source_labels[z], BRAIN_LABELS))
    deep_cols = np.nonzero(depth >= POOL_DEPTH)[1]
    midline = (deep_cols.min() + deep_cols.max()) / 2
    singles = pairs = 0
    for seed in range(12):
        pools = list(augmentation.draw(np.random.default_rng(seed), subject.source, z, subject.source_labels).pools)
        while pools:
            pool = pools.pop()
            twin = pool.mirrored(midline)
            if twin in pools:  # a pair: the twin was drawn first; a wall of POOL_GAP between them
                pools.remove(twin)
                wall = 2 * (abs(pool.centre[2] - midline) - pool.reach[2])
                assert POOL_GAP[0] - 1e-9 <= wall <= POOL_GAP[1] + 1e-9
                pairs += 1
            else:
                assert depth[int(pool.centre[1]), int(pool.centre[2])] >= POOL_DEPTH
                singles += 1
    assert singles and pairs
    moved = dataclasses.replace(subject, target_labels=np.roll(subject.source_labels, 3, axis=2))
    view = View(pools=(Pool((6.0, 32.0, 32.0), (1.0, 4.0, 4.0)),))
    with pytest.raises(ConfigError, match="paired"):
        augmentation.with_pools(view, 1, moved)


def test_pool_septum_puts_the_subjects_white_matter_between_the_pools_of_a_pair(cohort):
    subject = cohort.train[1]
    labels, z = subject.source_labels, 6
    drawn = [
        (
            _augmentation(csf_pools=1).draw(np.random.default_rng(seed), subject.source, z, labels),
            _augmentation(csf_pools=1, pool_septum=1).draw(np.random.default_rng(seed), subject.source, z, labels),
        )
        for seed in range(12)
    ]
    assert all(plain.pools == walled.pools and not plain.septa for plain, walled in drawn)  # same pools drawn
    plain, view = next((plain, walled) for plain, walled in drawn if len(walled.septa) == 1 and len(walled.pools) == 2)
    septum, (left, right) = view.septa[0], sorted(view.pools, key=lambda pool: pool.centre[2])
    assert septum.centre[2] == pytest.approx((left.centre[2] + right.centre[2]) / 2)  # on the midline
    assert septum.semi_axes[2] == pytest.approx((right.centre[2] - left.centre[2]) / 2)  # to both centres
    augmentation = _augmentation(csf_pools=1, pool_septum=1)
    walled, pooled = augmentation.with_pools(view, 1, subject), augmentation.with_pools(plain, 1, subject)
    row = int(round(septum.centre[1]))
    wall = np.arange(int(np.ceil(left.centre[2] + left.reach[2])) + 1, int(right.centre[2] - right.reach[2]))
    if wall.size:  # the wall's columns on the pair's centre row are white matter now, in source, target and labels
        assert np.all(walled.source_labels[z, row, wall] == WM)
        for image, before in ((walled.source, subject.source), (walled.target, subject.target)):
            value, spread = tissue_statistics(before, labels, WM)
            assert abs(np.median(image[z, row, wall]) - value) < max(4 * spread, 0.05)
    box, share = pool_share(view.pools, labels)
    assert np.all(walled.source_labels[box][share >= 0.5] == CSF)  # the pools painted over their septum
    assert np.all((walled.source_labels == CSF) <= (pooled.source_labels == CSF))  # the midline's cleft is gone
    grown = walled.source_labels != pooled.source_labels
    assert grown.any() and np.all(walled.source_labels[grown] == WM) and np.all(np.isin(labels[grown], BRAIN_LABELS))
    with pytest.raises(ConfigError, match="augment_csf_pools"):
        _augmentation(pool_septum=0.5)
    grey = augmentation.with_pools(dataclasses.replace(view, septum_tissue=GM), 1, subject)
    assert np.all(grey.source_labels[grown] == GM) and np.array_equal(
        grey.target_labels == CSF, walled.target_labels == CSF
    )
    tissues = {
        _augmentation(csf_pools=1, pool_septum=1, grey_septum=0.5)
        .draw(np.random.default_rng(seed), subject.source, z, labels)
        .septum_tissue
        for seed in range(12)
    }
    assert tissues == {GM, WM}
    with pytest.raises(ConfigError, match="augment_pool_septum"):
        _augmentation(csf_pools=1, grey_septum=0.5)


def test_pool_shape_turns_and_mirrors():
    grid = np.ogrid[0:3, 0:40, 0:41]
    upright = Pool((1.0, 20.0, 14.0), (1.5, 9.3, 3.3))
    turned = Pool((1.0, 20.0, 14.0), (1.5, 3.3, 9.3), np.pi / 2)
    assert np.array_equal(upright.inside(grid), turned.inside(grid))
    assert upright.reach == pytest.approx((1.5, 9.3, 3.3)) and turned.reach == pytest.approx((1.5, 9.3, 3.3))
    oblique = Pool((1.0, 20.0, 14.0), (1.5, 9.0, 3.0), 0.4)
    assert np.array_equal(oblique.mirrored(20.0).inside(grid), oblique.inside(grid)[..., ::-1])
    assert oblique.mirrored(20.0).mirrored(20.0) == oblique
    rows, cols = np.nonzero(oblique.inside(grid)[1])
    reach = oblique.reach
    assert np.abs(rows - 20).max() <= reach[1] and np.abs(cols - 14).max() <= reach[2]
    assert np.abs(rows - 20).max() > reach[1] - 1.5 and np.abs(cols - 14).max() > reach[2] - 1.5


def test_csf_pools_in_batches(cohort):
    batch = _sampler(cohort, seed=2, csf_pools=1).sample(6)
    assert np.array_equal(batch["source_labels"], batch["target_labels"])
    plain = _sampler(cohort, seed=2).sample(6)
    assert (batch["target_labels"] == CSF).mean() > (plain["target_labels"] == CSF).mean()


def test_augmented_sampling_is_reproducible(cohort):
    augment = {
        "skull_strip": 0.5,
        "fov_crop": 0.5,
        "intensity": 0.5,
        "tissue_contrast": 0.5,
        "csf_pools": 0.5,
        "dark_pools": 0.5,
        "pool_septum": 0.5,
        "grey_septum": 0.5,
    }
    first, second = _sampler(cohort, seed=7, **augment), _sampler(cohort, seed=7, **augment)
    a, b = first.sample(4), second.sample(4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    state = first.state()
    after = first.sample(4)
    second.set_state(state)
    again = second.sample(4)
    assert all(np.array_equal(after[k], again[k]) for k in after)
    other = _sampler(cohort, seed=8, **augment).sample(4)
    assert not np.array_equal(a["source"], other["source"])


def test_options_are_checked(cohort):
    with pytest.raises(ConfigError, match="probability"):
        _augmentation(intensity=1.5)
    with pytest.raises(ConfigError, match="label maps"):
        SourceAugmentation(_config(skull_strip=0.5), mr_median(), aligned=True, labelled=False)
    with pytest.raises(ConfigError, match="label maps"):
        SourceAugmentation(_config(tissue_contrast=0.5), mr_median(), aligned=False, labelled=False)
    with pytest.raises(ConfigError, match="probability"):
        _augmentation(tissue_contrast=-0.1)
    with pytest.raises(ConfigError, match="paired"):
        SourceAugmentation(_config(fov_crop=0.5), mr_median(), aligned=False, labelled=True)


def test_augmentation_travels_in_the_translator_metadata(tmp_path):
    from napari_medtrans.checkpoint import read_metadata
    from training.loop import train

    extra = ["--set", "data.augment_skull_strip=0.3", "--set", "data.augment_fov_crop=0.2"]
    cfg = tiny_config("regression", tmp_path / "run", iterations=2, extra=extra)
    assert (cfg.data.augment_skull_strip, cfg.data.augment_fov_crop, cfg.data.augment_intensity) == (0.3, 0.2, 0.0)
    assert train(cfg) == 0
    metadata = read_metadata(tmp_path / "run" / "translator.safetensors")
    recorded = {"skull_strip": 0.3, "fov_crop": 0.2}
    assert metadata.provenance["augmentation"] == recorded and metadata.deviations["augmentation"] == recorded
    assert metadata.provenance["config"]["data"]["augment_skull_strip"] == 0.3
    plain = tiny_config("regression", tmp_path / "plain", iterations=1)
    assert train(plain) == 0
    plain_metadata = read_metadata(tmp_path / "plain" / "translator.safetensors")
    assert "augmentation" not in plain_metadata.provenance and "augmentation" not in plain_metadata.deviations


def test_init_starts_from_a_translator_and_refuses_another_architecture(tmp_path):
    import torch

    from napari_medtrans.checkpoint import load_modules
    from training.loop import Trainer, train

    first = tiny_config("regression", tmp_path / "first", iterations=2)
    assert train(first) == 0
    source = tmp_path / "first" / "translator.safetensors"
    trainer = Trainer(tiny_config("regression", tmp_path / "second", iterations=1, extra=["--init", str(source)]))
    trainer._setup()
    saved, _ = load_modules(source)
    for name, tensor in saved["generator"].state_dict().items():
        assert torch.equal(trainer.method.generator.state_dict()[name].cpu(), tensor), name
    wider = tiny_config(
        "regression", tmp_path / "third", iterations=1, extra=["--init", str(source), "--set", "model.depth=2"]
    )
    with pytest.raises(ConfigError, match="this run builds"):
        Trainer(wider)._setup()
    other_norm = ["--init", str(source), "--set", "data.source_intensity=median"]
    with pytest.raises(ConfigError, match="normalises its source"):
        Trainer(tiny_config("regression", tmp_path / "fourth", iterations=1, extra=other_norm))._setup()
    missing = tiny_config(
        "regression", tmp_path / "fifth", iterations=1, extra=["--init", str(tmp_path / "no.safetensors")]
    )
    with pytest.raises(ConfigError, match="no.safetensors"):
        Trainer(missing)._setup()


def test_a_fine_tuned_translator_counts_the_iterations_of_both_runs(tmp_path):
    from napari_medtrans.checkpoint import read_metadata
    from napari_medtrans.model_card import card_lines
    from training.loop import train

    assert train(tiny_config("regression", tmp_path / "first", iterations=2)) == 0
    source = tmp_path / "first" / "translator.safetensors"
    assert train(tiny_config("regression", tmp_path / "second", iterations=3, extra=["--init", str(source)])) == 0
    metadata = read_metadata(tmp_path / "second" / "translator.safetensors")
    assert metadata.provenance["iterations"] == 3 and metadata.provenance["total_iterations"] == 5
    assert metadata.provenance["init"]["total_iterations"] == 2
    assert "iterations: 5 (the last 3 fine-tuning an earlier translator)" in "\n".join(card_lines(metadata.card))
