"""The phantom generator: anatomy, intensity relations, determinism, misalignment, cohorts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medtrans.phantom import (
    MAX_LEVEL,
    TISSUES,
    PhantomSubject,
    generate_cohort,
    generate_subject,
    misalign,
)
from napari_medtrans.phantom.anatomy import AIR, BONE, CSF, EYE, FAT, GM, MARROW, SINUS, SOFT, WM


@pytest.fixture(scope="module")
def subject() -> PhantomSubject:
    """A subject at the default shape (intensity relations need full resolution)."""
    return generate_subject(3)


def _medians(subject: PhantomSubject, image: str) -> dict[int, float]:
    array = getattr(subject, image)
    return {label: float(np.median(array[subject.labels == label])) for label in TISSUES}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the tissues present in ``a`` (air excluded)."""
    scores = [2 * np.sum((a == k) & (b == k)) / (np.sum(a == k) + np.sum(b == k)) for k in np.unique(a) if k]
    return float(np.mean(scores))


def test_shapes_dtypes_and_geometry(subject: PhantomSubject) -> None:
    assert subject.shape == (32, 128, 128)
    assert subject.labels.dtype == np.uint8
    assert {subject.t1.dtype, subject.t2.dtype, subject.ct.dtype} == {np.dtype(np.float32)}
    assert all(getattr(subject, k).shape == subject.shape for k in ("t1", "t2", "ct"))
    assert subject.spacing == pytest.approx((1.2, 1.2, 4.0))
    assert subject.origin == pytest.approx((-76.2, -76.2, -62.0))  # centred field of view
    assert subject.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    volume = subject.volume("ct")
    assert volume.modality == "CT" and volume.spacing == subject.spacing and volume.array is subject.ct
    assert subject.volume("labels").modality is None
    with pytest.raises(ValueError, match="unknown phantom image"):
        subject.volume("pet")


def test_other_shapes_keep_the_field_of_view(small_subject: PhantomSubject) -> None:
    assert small_subject.shape == (16, 64, 64)
    assert small_subject.spacing == pytest.approx((2.4, 2.4, 8.0))
    with pytest.raises(ValueError, match="shape"):
        generate_subject(0, shape=(2, 64, 64))
    with pytest.raises(ValueError, match="non-negative integer"):
        generate_subject(-1)
    odd = generate_subject(2, shape=(5, 33, 47))
    assert odd.t1.shape == odd.labels.shape == (5, 33, 47)
    assert odd.spacing == pytest.approx((153.6 / 47, 153.6 / 33, 128 / 5))


def test_every_tissue_present_and_head_inside_field_of_view(subject: PhantomSubject) -> None:
    counts = np.bincount(subject.labels.ravel(), minlength=len(TISSUES))
    assert len(counts) == len(TISSUES) and (counts > 0).all()
    labels = subject.labels
    in_plane_border = np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()])
    assert np.mean(in_plane_border != AIR) < 0.02
    assert np.all(labels[-1] == AIR)  # the top of the head is inside the volume


def test_ct_hounsfield_units(subject: PhantomSubject) -> None:
    hu = _medians(subject, "ct")
    assert hu[AIR] == pytest.approx(-1000, abs=30)
    assert hu[SINUS] < -700
    assert -150 < hu[FAT] < -50
    assert 1000 < hu[BONE] < 1800
    assert 300 < hu[MARROW] < 700
    assert all(-20 < hu[k] < 80 for k in (GM, WM, CSF, EYE, SOFT))
    assert hu[GM] > hu[WM]
    assert subject.ct.min() >= -1024 and subject.ct.max() <= 3071


def test_t1_contrast(subject: PhantomSubject) -> None:
    t1 = _medians(subject, "t1")
    assert t1[FAT] > t1[WM] > t1[GM] > t1[CSF]
    assert t1[MARROW] > t1[GM]  # fatty marrow
    assert t1[BONE] < 0.35 * t1[WM]
    assert t1[AIR] < 0.05 * t1[WM]


def test_t2_contrast(subject: PhantomSubject) -> None:
    t2 = _medians(subject, "t2")
    assert t2[CSF] > t2[GM] > t2[WM]  # reversed grey/white contrast
    assert t2[EYE] > t2[GM]
    assert t2[BONE] < 0.35 * t2[WM]


def test_texture_is_more_than_a_lookup(subject: PhantomSubject) -> None:
    marrow = subject.labels == MARROW
    # the shared latent property (fat fraction) brightens T1 and lowers HU
    assert np.corrcoef(subject.t1[marrow], subject.ct[marrow])[0, 1] < -0.3
    # within-tissue spread well above the noise alone
    assert np.std(subject.ct[subject.labels == BONE]) > 100


def test_mr_rician_background_and_bias(subject: PhantomSubject) -> None:
    for image in (subject.t1, subject.t2):
        assert image.min() >= 0
        background = image[subject.labels == AIR]
        assert 0 < background.mean() < 0.1 * image.max()
    wm = subject.labels == WM
    left, right = wm.copy(), wm.copy()
    left[..., 64:], right[..., :64] = False, False
    assert subject.t1[left].mean() != pytest.approx(subject.t1[right].mean(), rel=1e-3)


def test_deterministic_per_seed(small_subject: PhantomSubject) -> None:
    again = generate_subject(0, shape=(16, 64, 64))
    for image in ("labels", "t1", "t2", "ct"):
        np.testing.assert_array_equal(getattr(again, image), getattr(small_subject, image))
    other = generate_subject(1, shape=(16, 64, 64))
    assert not np.array_equal(other.labels, small_subject.labels)
    assert not np.array_equal(other.ct, small_subject.ct)
    assert np.sum(other.labels != AIR) != np.sum(small_subject.labels != AIR)  # different head size


def test_misalign_level_zero_is_identity(small_subject: PhantomSubject) -> None:
    moved = misalign(small_subject, 0, seed=7)
    for image in ("labels", "t1", "t2", "ct"):
        np.testing.assert_array_equal(getattr(moved, image), getattr(small_subject, image))
    assert moved.misalignment["level"] == 0


def test_misalignment_grows_with_level(small_subject: PhantomSubject) -> None:
    dice = [
        np.mean([_dice(small_subject.labels, misalign(small_subject, level, seed).labels) for seed in range(3)])
        for level in (0, 1, 3, 5)
    ]
    assert dice[0] == 1.0
    assert dice[0] > dice[1] > dice[2] > dice[3]
    assert dice[3] < 0.8


def test_misalignment_parameters_within_documented_ranges(small_subject: PhantomSubject) -> None:
    params = misalign(small_subject, 5, seed=3).misalignment
    assert params["level"] == 5 and params["seed"] == 3
    assert all(abs(a) <= b for a, b in zip(params["rotation_deg"], (2, 2, 10)))
    assert all(abs(t) <= b for t, b in zip(params["translation_mm"], (10, 10, 2)))
    assert abs(params["scale"]) <= 0.1
    assert params["elastic_mm"] == pytest.approx([4.0, 4.0, 1.0])
    again = misalign(small_subject, 5, seed=3)
    np.testing.assert_array_equal(again.ct, misalign(small_subject, 5, seed=3).ct)
    for level in (-1, MAX_LEVEL + 1, 2.5):
        with pytest.raises(ValueError, match="level"):
            misalign(small_subject, level, seed=0)


def test_cohort_regimes(small_cohort) -> None:
    assert len(small_cohort) == 4
    assert all(p.target is p.source and p.aligned_target is p.source for p in small_cohort)
    assert len({p.source.name for p in small_cohort}) == 4

    unpaired = generate_cohort(2, "unpaired", seed=0, shape=(8, 32, 32))
    sources, targets = {p.source.name for p in unpaired}, {p.target.name for p in unpaired}
    assert not sources & targets and all(p.aligned_target is None for p in unpaired)

    misaligned = generate_cohort(1, "misaligned", seed=0, level=4, shape=(8, 32, 32))[0]
    assert misaligned.target.misalignment["level"] == 4
    assert misaligned.aligned_target is misaligned.source
    assert not np.array_equal(misaligned.target.ct, misaligned.source.ct)
    # the same seed gives the same cohort
    np.testing.assert_array_equal(
        small_cohort[0].source.ct, generate_cohort(1, "paired", shape=(16, 64, 64))[0].source.ct
    )

    with pytest.raises(ValueError, match="regime"):
        generate_cohort(1, "semi-paired")
    with pytest.raises(ValueError, match="at least 1"):
        generate_cohort(0, "paired")
