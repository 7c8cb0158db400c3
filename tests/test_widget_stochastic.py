"""The Translate widget with a stochastic translator (SynDiff): the sample spread as the
uncertainty overlay, and one sample on the fly when N would miss the latency goal."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from _tiny_translators import SYNDIFF, make_stochastic_translators

from napari_medtrans.onthefly import SampleBudget


def test_sample_budget_falls_back_to_one_sample_with_a_note():
    budget = SampleBudget(8, goal_s=0.25)
    assert budget.samples() == 1 and budget.note is None  # the first slice measures one sample
    budget.record(0.02, 1)  # 8 × 20 ms = 160 ms: within the goal
    assert budget.samples() == 8 and budget.note is None
    slow = SampleBudget(8, goal_s=0.25)
    slow.record(0.1, 1)  # 8 × 100 ms = 800 ms
    assert slow.samples() == 1 and "1 sample" in slow.note and "800 ms" in slow.note
    with pytest.raises(ValueError):
        SampleBudget(0)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_stochastic_translators(tmp_path_factory.mktemp("models"))


def _open(make_napari_viewer, qtbot, models_dir, monkeypatch, subject, goal_s):
    import napari_medtrans._widgets.translate as translate_module
    from napari_medtrans._widgets.demo import open_demo

    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models_dir))
    monkeypatch.setattr(translate_module, "SampleBudget", partial(SampleBudget, goal_s=goal_s))
    viewer = make_napari_viewer(show=True)
    widget = open_demo(viewer, SYNDIFF, subject=subject, device="cpu")
    qtbot.waitUntil(lambda: widget.session is not None, timeout=30000)
    return viewer, widget


@pytest.mark.gui
def test_on_the_fly_falls_back_to_one_sample_with_a_note(
    make_napari_viewer, qtbot, models_dir, monkeypatch, small_subject
):
    viewer, widget = _open(make_napari_viewer, qtbot, models_dir, monkeypatch, small_subject, goal_s=0.0)
    assert widget.volume_uncertainty.itemText(0) == "samples"
    session = widget.session
    assert session.budget is not None and session.uncertainty is not None
    shown = []
    widget.slice_shown.connect(lambda index, precision, seconds: shown.append(index))
    viewer.dims.set_current_step(0, 3)
    qtbot.waitUntil(lambda: 3 in shown, timeout=30000)
    viewer.dims.set_current_step(0, 5)
    qtbot.waitUntil(lambda: session.scheduler.cached(5) is not None, timeout=30000)
    qtbot.waitUntil(lambda: "1 sample" in widget.status_label.text(), timeout=30000)
    precision = session.scheduler.final_precision
    exact = session.translator.translate_slice(session.prepared, 5, precision=precision, seed=0)  # one sample
    np.testing.assert_allclose(session.scheduler.cached(5).image, exact.image, atol=1e-3)
    assert session.scheduler.cached(5).uncertainty is None


@pytest.mark.gui
def test_samples_give_mean_and_spread_overlay(make_napari_viewer, qtbot, models_dir, monkeypatch, small_subject):
    _, widget = _open(make_napari_viewer, qtbot, models_dir, monkeypatch, small_subject, goal_s=1e9)
    widget.samples_spin.setValue(3)
    widget.seed_spin.setValue(2)
    widget.volume_uncertainty.setCurrentText("samples")
    with qtbot.waitSignal(widget.volume_finished, timeout=120000) as blocker:
        widget.volume_button.click()
    assert blocker.args == [True]
    session = widget.session
    expected = session.translator.translate_volume(session.volume, uncertainty="samples", mc_samples=3, seed=2)
    np.testing.assert_allclose(np.asarray(session.output.data), expected.image, atol=1e-3)
    np.testing.assert_allclose(np.asarray(session.uncertainty.data), expected.uncertainty, atol=1e-3)
    assert expected.uncertainty.max() > 0
