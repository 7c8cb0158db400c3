"""The phantom's floor: the expected CT from the latent factors, and the floor benchmark."""

import math

import numpy as np
import pytest

from benchmarks.phantom_floor import FLOOR, floor_metrics
from napari_medtrans.phantom import expected_ct, generate_subject

SHAPE = (8, 48, 48)


def test_expected_ct_knowing_everything_leaves_only_the_noise():
    subject = generate_subject(1000, shape=SHAPE)
    body = subject.labels > 0
    residual = subject.ct[body] - expected_ct(1000, SHAPE, ("shared", "own", "jitter"))[body]
    # inside the body no voxel is clipped, so the residual is the 15 HU Gaussian noise: MAE 15·sqrt(2/π) = 11.97 HU
    assert residual.std() == pytest.approx(15.0, rel=0.03)
    assert np.abs(residual).mean() == pytest.approx(15.0 * math.sqrt(2 / math.pi), rel=0.03)


def test_unknown_factors_take_their_expected_value():
    labels_only = expected_ct(1000, SHAPE, ())
    air = generate_subject(1000, shape=SHAPE).labels == 0
    # far from the head, air is the population value, -1000 HU, with no texture
    assert labels_only[0, 0, 0] == pytest.approx(-1000.0, abs=1e-3)
    assert air[0, 0, 0]
    with pytest.raises(ValueError, match="unknown latent factors"):
        expected_ct(1000, SHAPE, ("noise",))


def test_the_floor_lies_between_the_noise_and_the_labels_only_oracle():
    results = floor_metrics([1000], SHAPE)
    mae = {name: rows[0]["mae"] for name, rows in results.items()}
    assert mae["every latent factor (noise only)"] < mae[FLOOR] < mae["labels only"]
    # neighbouring slices with independent 15 HU noise: 15·√2·√(2/π) = 16.9 HU of through-plane error
    assert results["every latent factor (noise only)"][0]["through_plane"] == pytest.approx(16.93, rel=0.05)
