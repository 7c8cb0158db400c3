"""Scanner-robust MR normalisation (``data.source_intensity=median``): training and inference map a volume
the same way, the model travels in the translator's metadata, and a real T1 in its own units lands in the
range the phantom training data occupies."""

import numpy as np
import pytest
from _training_helpers import tiny_config

from napari_medtrans.intensity import mr_median
from napari_medtrans.phantom import generate_subject


def test_training_and_inference_normalise_alike(tmp_path):
    from napari_medtrans.inference import load_translator
    from training.data import load_cohort
    from training.loop import train

    cfg = tiny_config("regression", tmp_path / "run", iterations=2, extra=["--set", "data.source_intensity=median"])
    cohort = load_cohort(cfg.data, cfg.seed)
    assert cohort.source_intensity == mr_median()
    assert train(cfg) == 0
    translator = load_translator(tmp_path / "run" / "translator.safetensors", device="cpu")
    assert translator.source_model == cohort.source_intensity  # the metadata round trip
    subject = generate_subject(7, shape=(6, 32, 32))
    prepared = translator.prepare(subject.t1)
    assert prepared.mapping == cohort.source_intensity.fit(subject.t1)
    assert translator.translate_volume(subject.t1).image.shape == subject.t1.shape


def test_real_t1_in_its_own_units_maps_into_the_training_range():
    nilearn = pytest.importorskip("nilearn.datasets")
    template = np.asarray(nilearn.load_mni152_template().dataobj, np.float32)  # units 0–1, skull-stripped
    brain = np.asarray(nilearn.load_mni152_brain_mask().dataobj) > 0
    model = mr_median()
    phantom = generate_subject(11)
    net = model.fit(phantom.t1).to_network(phantom.t1)
    csf, wm = (float(np.median(net[phantom.labels == k])) for k in (6, 5))
    for units in (1.0, 4095.0):  # the template as shipped, and in a 12-bit scanner's units
        real = model.fit(units * template).to_network(units * template)[brain]
        low, median, high = np.percentile(real, [5, 50, 95])
        # the brain's tissues fall between the phantom's CSF and white matter, not onto fat or bone
        assert csf - 0.1 < low and high < wm + 0.1 and csf < median < wm
