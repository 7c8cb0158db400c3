"""Intensity models: CT window, MR percentiles, inverse mappings, dict round trip."""

import numpy as np
import pytest

from napari_medtrans.intensity import (
    IntensityMapping,
    IntensityModel,
    ct_window,
    default_for,
    foreground_percentiles,
    mr_percentile,
)


def test_ct_window_maps_and_inverts():
    mapping = ct_window().fit(None)
    hu = np.array([-2000, -1024, 988, 3000, 5000], dtype=np.int16)
    net = mapping.to_network(hu)
    assert net.dtype == np.float32
    np.testing.assert_allclose(net, [-1, -1, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(mapping.from_network(net), [-1024, -1024, 988, 3000, 3000], atol=1e-3)
    assert mapping.scale_from_network(np.float32(0.5)) == pytest.approx(1006.0)


def test_percentile_fit_ignores_background():
    rng = np.random.default_rng(0)
    volume = np.zeros((8, 64, 64), np.float32)
    volume[:, 16:48, 16:48] = rng.uniform(100, 200, (8, 32, 32))
    mapping = mr_percentile(0, 100).fit(volume)
    assert 100 <= mapping.lo < 101 and 199 < mapping.hi <= 200
    assert mapping.to_network(volume).min() == -1.0


def test_percentile_fit_subsamples_large_arrays(monkeypatch):
    from napari_medtrans import intensity

    monkeypatch.setattr(intensity, "MAX_SAMPLES", 1000)
    volume = np.linspace(1, 100, 100_000, dtype=np.float32)
    lo, hi = foreground_percentiles(volume, (1, 99))
    assert lo == pytest.approx(6, abs=1) and hi == pytest.approx(99, abs=1)


def test_constant_volume_still_gives_valid_mapping():
    mapping = mr_percentile().fit(np.full((4, 4), 7.0))
    assert mapping.hi > mapping.lo


def test_target_percentile_needs_reference():
    model = mr_percentile()
    with pytest.raises(ValueError, match="reference"):
        model.output_mapping()
    ref = model.with_reference([np.arange(1, 101, dtype=np.float32), np.arange(1, 201, dtype=np.float32)])
    mapping = ref.output_mapping()
    assert 0 < mapping.lo < mapping.hi < 200
    assert IntensityModel.from_dict(ref.to_dict()) == ref


def test_dict_round_trip_and_defaults():
    assert IntensityModel.from_dict(ct_window().to_dict()) == ct_window()
    assert default_for("CT").kind == "window" and default_for("T1").kind == "percentile"
    assert default_for(None) == mr_percentile()
    with pytest.raises(ValueError):
        IntensityModel.from_dict({"kind": "window"})
    with pytest.raises(ValueError):
        IntensityMapping(1.0, 1.0)


def test_median_model_is_unit_free_and_round_trips():
    from napari_medtrans.intensity import mr_median

    rng = np.random.default_rng(1)
    volume = np.zeros((6, 48, 48), np.float32)
    volume[:, 8:40, 8:40] = rng.uniform(300, 900, (6, 32, 32))
    model = mr_median()
    net = model.fit(volume).to_network(volume)
    # a scanner's arbitrary gain does not change the network input
    np.testing.assert_allclose(model.fit(37.5 * volume).to_network(37.5 * volume), net, atol=1e-5)
    assert model.fit(volume).lo == 0.0  # no signal stays at -1
    assert IntensityModel.from_dict(model.to_dict()) == model
    with pytest.raises(ValueError, match="≥ 0"):
        IntensityModel("median", -1.0, 2.0)
