"""Array maths of the viewer's overlays: checkerboard, curtain, Pearson r, fields."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medtrans import comparison


def test_checkerboard_and_curtain_take_tiles_from_both():
    a, b = np.zeros((2, 8, 8)), np.ones((2, 8, 8))
    board = comparison.checkerboard(a, b, 4)
    assert board[0, 0, 0] == 0 and board[0, 0, 4] == 1 and board[1, 4, 4] == 0
    assert board.mean() == pytest.approx(0.5)
    cut = comparison.curtain(a, b, 0.25)
    assert (cut[..., :2] == 0).all() and (cut[..., 2:] == 1).all()
    with pytest.raises(ValueError, match="shapes differ"):
        comparison.checkerboard(a, np.ones((2, 8, 9)), 2)


def test_slice_pearson_per_slice_with_mask_and_constant_slice():
    rng = np.random.default_rng(0)
    sigma = rng.random((3, 16, 16))
    error = sigma.copy()
    error[1] = -sigma[1]
    error[2] = 1.0
    r = comparison.slice_pearson(sigma, error)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0) and np.isnan(r[2])
    mask = np.zeros(sigma.shape, bool)
    mask[:, :4] = True
    assert comparison.slice_pearson(sigma, error, mask)[0] == pytest.approx(1.0)


def test_body_mask_separates_head_from_air():
    image = np.zeros((1, 8, 8))
    image[0, 2:6, 2:6] = 100.0
    assert comparison.body_mask(image).sum() == 16
    assert comparison.body_mask(image - 1000.0).sum() == 16  # CT: air at -1000 HU


def test_field_vectors_lengths_in_mm_and_grid_step():
    field = np.zeros((2, 2, 8, 8), np.float32)
    field[:, 0] = 3.0  # 3 mm along rows
    field[:, 1] = 4.0  # 4 mm along columns
    data, magnitude = comparison.field_vectors(field, (2.0, 0.5, 2.0), step=4)
    assert data.shape == (2 * 2 * 2, 2, 3)
    assert np.allclose(magnitude, 5.0)
    assert np.allclose(data[:, 1], [0.0, 6.0, 2.0])  # pixels = mm / spacing
    assert set(data[:, 0, 1]) == {2.0, 6.0}
    assert np.allclose(comparison.field_magnitude(field), 5.0)


def test_warped_grid_moves_lines_by_the_field():
    field = np.zeros((1, 2, 16, 16), np.float32)
    still = comparison.warped_grid(field, (1.0, 1.0, 1.0), period=8)
    assert still[0, 0, 3] == 1 and still[0, 3, 3] == 0
    field[:, 1] = 2.0  # sample two columns to the right (2 mm at 1 mm spacing)
    moved = comparison.warped_grid(field, (1.0, 1.0, 1.0), period=8)
    assert moved[0, 3, 6] == pytest.approx(1.0) and moved[0, 3, 8] == pytest.approx(0.0)


def test_resample_like_uses_physical_space():
    from napari_medtrans.io import Volume

    array = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    reference = Volume(array, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    assert np.array_equal(comparison.resample_like(reference, reference), array)
    shifted = Volume(array, spacing=(1.0, 1.0, 2.0), origin=(2.0, 0.0, 0.0))  # 2 mm along x
    moved = comparison.resample_like(shifted, reference)
    assert np.allclose(moved[:, :, 2:], array[:, :, :-2])
