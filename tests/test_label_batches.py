"""Phantom batches carry label maps cut with the same windows and flips as the images."""

from __future__ import annotations

import numpy as np
from _training_helpers import tiny_config

from training.data import SliceSampler, load_cohort


def test_phantom_batches_carry_matching_label_maps(tmp_path):
    cfg = tiny_config("shape-cyclegan", tmp_path / "run", regime="paired")
    cohort = load_cohort(cfg.data, seed=0)
    batch = SliceSampler(cohort, cfg.data, seed=0).sample(4)
    labels = batch["source_labels"]
    assert labels.shape == (4, 32, 32) and labels.dtype == np.int64 and labels.max() <= 9
    assert np.array_equal(labels, batch["target_labels"])  # paired: one anatomy
    image = batch["source"][:, 0]
    assert (image[labels == 0] < -0.9).mean() > 0.9  # air (label 0) is dark wherever the window sits
    assert (image[labels != 0] > -0.9).mean() > 0.8
