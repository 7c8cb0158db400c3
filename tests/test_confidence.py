"""Confidence scores and the measures of how well they find wrong labels (hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medtrans.confidence import (
    boundary_factor,
    expected_dice,
    slice_dice,
    slice_spearman,
    volume_impact,
    voxel_auroc,
    voxel_confidence,
)


def test_expected_dice_per_slice():
    # slice 0: tissue 1 labelled at voxel a (p = 0.8), not at b (p = 0.4): 2·0.8 / (1.2 + 1) = 0.727…
    # slice 1: nothing labelled, tissue mass 0.2 < 0.5: no tissue counts, score 1
    p1 = np.array([[[0.8, 0.4]], [[0.1, 0.1]]])
    probabilities = np.stack([1 - p1, p1])
    labels = np.array([[[1, 0]], [[0, 0]]], np.uint8)
    np.testing.assert_allclose(expected_dice(probabilities, labels), [1.6 / 2.2, 1.0], rtol=1e-6)


def test_voxel_confidence_margin_flip_and_smoothing():
    probabilities = np.stack([np.full((1, 1, 2), 0.1), np.full((1, 1, 2), 0.2), np.full((1, 1, 2), 0.7)])
    # margin 0.7 − 0.2 = 0.5; × (1 − flip disagreement) → (0.5, 0.25); 3×3 mean, edges repeated:
    # voxel 0 sees (0.5, 0.5, 0.25), voxel 1 (0.5, 0.25, 0.25)
    confidence = voxel_confidence(probabilities, flip_disagreement=np.array([[[0.0, 0.5]]]))
    np.testing.assert_allclose(confidence, [[[1.25 / 3, 1.0 / 3]]], rtol=1e-6)


def test_boundary_factor_is_zero_on_borders_and_grows_inside():
    labels = np.array([[[1, 1, 1, 2]], [[3, 3, 3, 3]]], np.uint8)
    # slice 0: columns 2 and 3 touch the border, columns 1 and 0 lie 1 and 2 voxels from it; slice 1 has none
    expected = [[1 - np.exp(-2 / 3), 1 - np.exp(-1 / 3), 0, 0]], [[1, 1, 1, 1]]
    np.testing.assert_allclose(boundary_factor(labels, scale=3.0), expected, rtol=1e-6)
    probabilities = np.stack([labels == 1, labels == 2, labels == 3]).astype(np.float32) * 0.6 + 0.1
    probabilities = np.concatenate([np.full((1, 2, 1, 4), 0.1), probabilities])  # class 0 unused
    assert np.allclose(voxel_confidence(probabilities), 0.6)  # no boundary factor unless asked for
    confidence = voxel_confidence(probabilities, boundary_scale=3.0)
    assert confidence[0, 0, 0] > confidence[0, 0, 3] == 0 and np.allclose(confidence[1], 0.6)  # margin 0.7 − 0.1


def test_voxel_auroc_hand_computed():
    labels, truth = np.array([1, 1, 1, 1]), np.array([1, 0, 1, 0])
    assert voxel_auroc(np.array([0.9, 0.2, 0.6, 0.4]), labels, truth) == 1.0  # every wrong voxel less confident
    # the wrong voxel (0.5) against the right ones (0.1, 0.5, 0.9): one win, one tie, one loss → 1.5 / 3
    assert voxel_auroc(np.array([0.1, 0.5, 0.5, 0.9]), labels, np.array([1, 0, 1, 1])) == 0.5
    assert voxel_auroc(np.ones(4), labels, labels) is None  # nothing wrong


def test_slice_spearman_skips_slices_without_dice():
    assert slice_spearman(np.array([0.1, 0.5, 0.2, 0.9]), [0.2, None, 0.3, 0.8]) == pytest.approx(1.0)
    assert slice_spearman(np.array([0.3, 0.2, 0.1]), [0.1, 0.2, 0.3]) == pytest.approx(-1.0)
    assert slice_spearman(np.array([0.1, 0.2]), [0.1, 0.2]) is None
    labels = np.array([[[1, 1]], [[0, 0]]])
    truth = np.array([[[1, 0]], [[0, 0]]])
    assert slice_dice(labels, truth, {1: "t"}) == [pytest.approx(2 / 3), None]


def test_volume_impact_weighs_doubt_by_tissue_size():
    # tissue 1 has 3 voxels; slice 0 holds 0.5 of expected error → 1 − 0.5 / 3; slice 1 none → 1
    confidence = np.array([[[0.5, 1.0]], [[1.0, 1.0]]])
    labels = np.array([[[1, 1]], [[1, 0]]])
    np.testing.assert_allclose(volume_impact(confidence, labels), [1 - 0.5 / 3, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(volume_impact(confidence, labels * 0), [1.0, 1.0])
