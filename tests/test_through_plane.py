"""The through-plane error: stripes between slices count, a shift of the whole volume does not."""

import numpy as np
import pytest

from napari_medtrans import metrics


def test_slice_offsets_give_the_stripe_amplitude():
    reference = np.zeros((4, 5, 6))
    stripes = reference + np.array([0.0, 10.0, 0.0, 10.0])[:, None, None]  # slice-wise offsets
    # neighbouring-slice differences 10, −10, 10 against 0: MAE 10
    assert metrics.through_plane_error(stripes, reference) == pytest.approx(10.0)
    assert metrics.through_plane_error(reference + 25.0, reference) == pytest.approx(0.0)  # a global shift


def test_mask_keeps_only_pairs_of_voxels_inside():
    reference = np.zeros((3, 2, 2))
    prediction = reference.copy()
    prediction[2] = 40.0  # a jump between slices 1 and 2
    mask = np.ones(reference.shape, bool)
    assert metrics.through_plane_error(prediction, reference, mask) == pytest.approx(20.0)  # 4 of 8 pairs err by 40
    mask[2, 0, :] = False  # two of those pairs leave the mask
    assert metrics.through_plane_error(prediction, reference, mask) == pytest.approx(40 * 2 / 6)


def test_values_are_clipped_to_the_range_and_bad_inputs_are_named():
    reference = np.full((2, 2, 2), 3000.0)
    prediction = reference.copy()
    prediction[1] = 5000.0  # clipped to 3000: no error
    assert metrics.through_plane_error(prediction, reference) == 0.0
    with pytest.raises(metrics.MetricUnavailable, match="at least 2 slices"):
        metrics.through_plane_error(reference[:1], reference[:1])
    mask = np.zeros(reference.shape, bool)
    mask[0] = True
    with pytest.raises(metrics.MetricUnavailable, match="two neighbouring slices"):
        metrics.through_plane_error(reference, reference, mask)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.through_plane_error(reference, reference[:, :1])
