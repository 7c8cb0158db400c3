"""The Translate dock widget in a real napari window (run under Xvfb).

Tiny random-weight translators (a UAPI-style U-Net with a scale head and a
RegGAN-style generator + registration network) are written to a temporary
models folder that the registry reads through ``$MEDTRANS_MODELS_DIR``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _tiny_translators import DROPOUT, FIELD_BIAS, REGGAN, UAPI, make_tiny_translators
from qtpy.QtCore import Qt

from napari_medtrans.io import Volume, layer_geometry
from napari_medtrans.phantom import misalign

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_tiny_translators(tmp_path_factory.mktemp("models"))


@pytest.fixture
def demo(make_napari_viewer, qtbot, models_dir, monkeypatch, small_subject):
    """Open the demo set-up (phantom T1 + CT reference + Translate widget) for a model."""
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models_dir))
    from napari_medtrans._widgets.demo import open_demo

    def make(model: str, reference=None, onthefly: bool = True):
        viewer = make_napari_viewer(show=True)
        widget = open_demo(viewer, model, subject=small_subject, device="cpu", reference=reference)
        if not onthefly:
            widget.onthefly_check.setChecked(False)
        qtbot.waitUntil(lambda: widget.session is not None, timeout=30000)
        return viewer, widget

    return make


def _slice(layer, index: int) -> np.ndarray:
    return np.asarray(layer.data[index])


def test_widget_comes_from_the_manifest(make_napari_viewer, models_dir, monkeypatch):
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models_dir))
    from napari_medtrans._widgets.translate import TranslateWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
    assert isinstance(widget, TranslateWidget)
    names = [widget.translator_combo.itemText(i) for i in range(widget.translator_combo.count())]
    assert {UAPI, REGGAN} <= set(names)
    widget.select(translator=UAPI)
    assert "uapi: T1 → CT" in widget.info_label.text()


def test_refresh_lists_a_translator_written_after_the_widget_opened(
    make_napari_viewer, qtbot, models_dir, monkeypatch, tmp_path
):
    import shutil

    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(tmp_path))
    shutil.copy(models_dir / f"{UAPI}.safetensors", tmp_path)
    from napari_medtrans._widgets.translate import TranslateWidget

    widget = TranslateWidget(make_napari_viewer())
    widget.select(translator=UAPI)
    names = [widget.translator_combo.itemText(i) for i in range(widget.translator_combo.count())]
    assert REGGAN not in names
    shutil.copy(models_dir / f"{REGGAN}.safetensors", tmp_path)  # e.g. a training run just finished
    qtbot.mouseClick(widget.refresh_button, Qt.LeftButton)
    names = [widget.translator_combo.itemText(i) for i in range(widget.translator_combo.count())]
    assert REGGAN in names
    assert widget.translator_combo.currentText() == UAPI  # the choice is kept


def test_current_slice_is_translated_after_a_dims_change(demo, qtbot):
    viewer, widget = demo(UAPI)
    session = widget.session
    fill = _slice(session.output, 2).copy()
    shown = []
    widget.slice_shown.connect(lambda index, precision, seconds: shown.append((index, precision, seconds)))
    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: (2, "fp32") in [s[:2] for s in shown], timeout=20000)
    exact = session.translator.translate_slice(session.prepared, 2, precision="fp32")
    np.testing.assert_allclose(_slice(session.output, 2), exact.image, atol=1e-3)
    np.testing.assert_allclose(_slice(session.uncertainty, 2), exact.scale, atol=1e-3)
    assert not np.array_equal(_slice(session.output, 2), fill)
    # prefetch: the neighbours get translated without being asked for
    qtbot.waitUntil(
        lambda: session.scheduler.cached(3) is not None and session.scheduler.cached(1) is not None, timeout=20000
    )
    assert session.output.name == f"CT (HU) · {UAPI}" and session.uncertainty.name == f"σ (HU) · {UAPI}"
    assert session.uncertainty.colormap.name == "inferno (fading)" and session.uncertainty.colorbar.visible
    assert session.uncertainty.colormap.colors[0, 3] == 0 and session.uncertainty.colormap.colors[-1, 3] == 1
    assert (
        "HU" in widget.uncertainty_panel.legend.text()
        and "r(σ, |error|) in the head" in widget.uncertainty_panel.legend.text()
    )


def test_whole_volume_can_be_cancelled_then_completes(demo, qtbot, monkeypatch):
    _, widget = demo(UAPI, onthefly=False)
    translator = widget.session.translator
    original = translator.translate_volume

    def after_cancel(*args, cancel, **kwargs):  # the tiny model would finish before Cancel is pressed
        deadline = time.monotonic() + 10
        while not cancel() and time.monotonic() < deadline:
            time.sleep(0.01)
        return original(*args, cancel=cancel, **kwargs)

    monkeypatch.setattr(translator, "translate_volume", after_cancel)
    with qtbot.waitSignal(widget.volume_finished, timeout=30000) as blocker:
        widget.volume_button.click()
        widget.cancel_button.click()
    monkeypatch.setattr(translator, "translate_volume", original)
    assert blocker.args == [False]
    assert "cancelled" in widget.status_label.text()
    assert not widget.session.complete and widget.volume_button.isEnabled()
    with qtbot.waitSignal(widget.volume_finished, timeout=60000) as blocker:
        widget.volume_button.click()
    assert blocker.args == [True]
    session = widget.session
    assert session.complete and widget.progress.value() == widget.progress.maximum()
    assert np.isfinite(session.output.data).all() and session.output.data.std() > 0
    assert session.uncertainty.data.max() > 0


def _oblique(volume: Volume) -> Volume:
    """The same voxels with a rotated direction and a shifted origin."""
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Volume(volume.array, volume.spacing, (-40.0, 25.0, 12.5), tuple(rotation.ravel()), volume.modality)


def test_layers_agree_in_world_coordinates(make_napari_viewer, qtbot, models_dir, monkeypatch, small_subject):
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models_dir))
    viewer = make_napari_viewer(show=True)
    t1 = _oblique(small_subject.volume("t1"))
    ct = _oblique(misalign(small_subject, 2, seed=1).volume("ct"))
    viewer.add_image(t1.array, name="T1", **layer_geometry(t1))
    viewer.add_image(ct.array, name="CT", **layer_geometry(ct))
    _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
    widget.select(input="T1", translator=REGGAN, reference="CT")
    widget.start_session()
    qtbot.waitUntil(lambda: widget.session is not None, timeout=30000)
    widget.field_panel.register()
    qtbot.waitUntil(lambda: "vectors" in widget.field_panel.layers, timeout=60000)
    layers = widget.field_panel.layers
    landmark = np.array([5.0, 20.0, 40.0])  # a voxel index (z, y, x)
    world = viewer.layers["T1"].data_to_world(landmark)
    expected = np.asarray(t1.to_sitk().TransformContinuousIndexToPhysicalPoint(landmark[::-1].tolist()))[::-1]
    np.testing.assert_allclose(world, expected, atol=1e-6)
    for layer in (widget.session.output, layers["magnitude"], layers["grid"], layers["warped"], layers["vectors"]):
        np.testing.assert_allclose(layer.data_to_world(landmark), world, atol=1e-6)
        np.testing.assert_allclose(layer.world_to_data(world), landmark, atol=1e-6)
    # a vector's length in the world is its displacement in mm
    vectors = layers["vectors"]
    k = int(np.argmax(vectors.features["magnitude_mm"]))
    start, projection = vectors.data[k]
    length = np.linalg.norm(np.subtract(vectors.data_to_world(start + projection), vectors.data_to_world(start)))
    assert length == pytest.approx(vectors.features["magnitude_mm"][k], rel=1e-4)
    expected_mm = np.hypot(FIELD_BIAS[0] * t1.spacing[1], FIELD_BIAS[1] * t1.spacing[0])  # the tiny network's bias
    assert np.median(vectors.features["magnitude_mm"]) == pytest.approx(expected_mm, rel=0.05)
    widget.field_panel.step.setValue(4)
    assert len(vectors.data) == t1.array.shape[0] * (64 // 4) ** 2


def test_uncertainty_layer_shares_the_input_geometry(demo, qtbot):
    viewer, widget = demo(UAPI)
    landmark = np.array([8.0, 10.0, 50.0])
    world = viewer.layers["phantom T1"].data_to_world(landmark)
    for layer in (widget.session.output, widget.session.uncertainty):
        np.testing.assert_allclose(layer.world_to_data(world), landmark, atol=1e-6)


def test_comparison_layers(demo, qtbot):
    viewer, widget = demo(UAPI, onthefly=False)
    with qtbot.waitSignal(widget.volume_finished, timeout=60000):
        widget.volume_button.click()
    panel = widget.compare_panel
    panel.show_difference()
    difference = viewer.layers[f"Δ reference (HU) · {UAPI}"]
    np.testing.assert_allclose(
        difference.data, widget.session.output.data - viewer.layers["phantom CT (reference)"].data, atol=1e-3
    )
    panel.show_composite()
    name = panel.composite_name(widget.session)
    assert viewer.layers[name].data.shape == widget.session.output.data.shape
    panel.mode.setCurrentText("curtain")
    panel.position.setValue(25)
    board = viewer.layers[name].data
    np.testing.assert_allclose(board[:, :, :16], widget.session.output.data[:, :, :16])
    panel.side_by_side.setChecked(True)
    assert viewer.grid.enabled


def test_event_loop_never_stalls_during_translation(demo, qtbot, monkeypatch):
    """Gaps between 10 ms timer ticks while inference runs in workers.

    Each slice costs 2.5 s of real slice translations here, so inference dominates.
    Measured while a requested slice translates (from after napari redrew the
    other layers for the slider move until the result is shown) and during a
    whole-volume translation with test-time augmentation. The gaps holding a
    display update (a slice shown, the progress bar moved) are drawing, not
    inference, and are left out: under Xvfb's software OpenGL on a loaded
    machine one redraw alone can take longer than 100 ms.
    """
    from qtpy.QtCore import QTimer

    viewer, widget = demo(UAPI)
    widget.preview_combo.setCurrentText("never")
    widget.session.scheduler.prefetch = 0
    translator = widget.session.translator
    uncached = translator.prepare(widget.session.volume.array, cache_size=0)
    original = translator.translate_slice

    def heavy(prepared, index, **kwargs):  # real translations, again and again, for 2.5 s
        end = time.perf_counter() + 2.5
        while time.perf_counter() < end:
            original(uncached, index, **kwargs)
        return original(prepared, index, **kwargs)

    monkeypatch.setattr(translator, "translate_slice", heavy)
    gaps: list[tuple[float, str]] = []
    state = {"last": time.perf_counter(), "phase": None}

    def tick() -> None:
        now = time.perf_counter()
        if state["phase"] is not None and not state.pop("drawn", False):
            gaps.append((now - state["last"], state["phase"]))
        state["last"] = now

    def measure(phase: str | None) -> None:
        state["phase"], state["last"] = phase, time.perf_counter()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    shown = []

    def on_shown(index: int, precision: str, seconds: float) -> None:
        shown.append(index)
        state["drawn"] = True  # the gap that holds the layer update is display, not inference

    widget.slice_shown.connect(on_shown)
    n = widget.session.scheduler.n_slices
    for index in (0, n - 1, n // 3):
        viewer.dims.set_current_step(0, index)
        qtbot.wait(1000)
        assert index not in shown  # still translating: what follows runs during inference
        measure(f"slice {index}")
        qtbot.waitUntil(lambda index=index: index in shown, timeout=60000)
        measure(None)
        qtbot.wait(200)
    widget.volume_uncertainty.setCurrentText("tta")
    widget.progress.valueChanged.connect(lambda value: state.update(drawn=True))
    widget.volume_finished.connect(lambda finished: measure(None))
    with qtbot.waitSignal(widget.volume_finished, timeout=120000):
        widget.volume_button.click()
        measure("volume")
    timer.stop()
    worst = sorted(gaps, reverse=True)[:5]
    print(f"longest event-loop stalls during inference (s, phase): {worst} over {len(gaps)} ticks")
    assert len(gaps) > 20 and worst[0][0] < 0.1, worst


def _items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_a_translator_written_later_is_listed_without_refresh(
    make_napari_viewer, qtbot, models_dir, monkeypatch, tmp_path
):
    import shutil

    from napari_medtrans._widgets.translate import REGISTRY_POLL_MS, TranslateWidget

    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(tmp_path))
    shutil.copy(models_dir / f"{UAPI}.safetensors", tmp_path)
    widget = TranslateWidget(make_napari_viewer())
    assert REGGAN not in _items(widget.translator_combo)
    shutil.copy(models_dir / f"{REGGAN}.safetensors", tmp_path)  # a training run just finished
    qtbot.waitUntil(lambda: REGGAN in _items(widget.translator_combo), timeout=3 * REGISTRY_POLL_MS)
    (tmp_path / f"{REGGAN}.safetensors").unlink()
    qtbot.waitUntil(lambda: REGGAN not in _items(widget.translator_combo), timeout=3 * REGISTRY_POLL_MS)
    assert widget.translator_combo.currentText() == UAPI


def test_uncertainty_choices_are_those_the_translator_supports(make_napari_viewer, models_dir, monkeypatch):
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models_dir))
    from napari_medtrans._widgets.translate import TranslateWidget

    widget = TranslateWidget(make_napari_viewer())
    expected = {UAPI: ["scale map", "none", "tta"], REGGAN: ["none", "tta"], DROPOUT: ["none", "tta", "mc_dropout"]}
    for name, choices in expected.items():
        widget.select(translator=name)
        assert _items(widget.volume_uncertainty) == choices, name


def test_switching_translator_clears_the_previous_legend_overlay_and_progress(demo, qtbot):
    from napari_medtrans._widgets._panels import NO_UNCERTAINTY

    viewer, widget = demo(UAPI)
    qtbot.waitUntil(lambda: "r(σ, |error|)" in widget.uncertainty_panel.legend.text(), timeout=20000)
    assert viewer.text_overlay.visible and "r(σ, |error|)" in viewer.text_overlay.text
    with qtbot.waitSignal(widget.volume_finished, timeout=60000):
        widget.volume_button.click()
    assert widget.progress.value() == widget.progress.maximum() > 0
    widget.select(translator=REGGAN)
    assert widget.uncertainty_panel.legend.text() == NO_UNCERTAINTY
    assert not viewer.text_overlay.visible and viewer.text_overlay.text == ""
    assert widget.progress.value() == widget.progress.minimum() - 1  # reset: no percentage shown


def test_register_loads_a_chosen_registration_translator(
    make_napari_viewer, qtbot, models_dir, monkeypatch, small_subject
):
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models_dir))
    from napari_medtrans._widgets.demo import INPUT_NAME, REFERENCE_NAME, add_phantom
    from napari_medtrans._widgets.translate import TranslateWidget

    viewer = make_napari_viewer(show=True)
    add_phantom(viewer, small_subject)
    widget = TranslateWidget(viewer)
    panel = widget.field_panel
    widget.select(input=INPUT_NAME, translator=UAPI, reference=REFERENCE_NAME)
    assert not panel.button.isEnabled() and "no registration network" in panel.label.text()
    widget.select(translator=REGGAN)
    assert widget.session is None and panel.button.isEnabled()
    assert panel.label.text().startswith("Loads the translator")
    widget.select(reference="(none)")
    assert not panel.button.isEnabled() and "Choose a reference layer" in panel.label.text()
    widget.select(reference=REFERENCE_NAME)
    qtbot.mouseClick(panel.button, Qt.LeftButton)
    qtbot.waitUntil(lambda: "vectors" in panel.layers, timeout=60000)
    assert widget.session.complete and panel.label.text().startswith("|field|: median")


def test_one_short_named_layer_per_role_and_ct_windows_everywhere(demo, qtbot):
    from napari_medtrans._widgets.overlays import window_limits

    viewer, widget = demo(UAPI)
    reference = viewer.layers["phantom CT (reference)"]
    output = widget.session.output
    assert reference.contrast_limits == list(window_limits("soft tissue"))  # the reference is windowed too
    widget.window_combo.setCurrentText("bone")
    assert output.contrast_limits == reference.contrast_limits == list(window_limits("bone")) == [-800, 2000]
    # HU in the status bar readout of translation, σ and reference
    reference.visible = True
    for layer in (output, widget.session.uncertainty, reference):
        assert layer.get_status((8, 32, 32), world=False)["value"].endswith(" HU"), layer.name
    # linked contrast: one CT layer's contrast moves the others
    widget.link_contrast.setChecked(True)
    reference.contrast_limits = (0, 100)
    assert output.contrast_limits == [0, 100]
    widget.link_contrast.setChecked(False)
    reference.contrast_limits = (0, 50)
    assert output.contrast_limits == [0, 100]
    # another translator reuses the translation layer and drops the σ of the previous one
    widget.select(translator=REGGAN)
    qtbot.waitUntil(
        lambda: widget.session is not None and widget.session.translator.metadata.name == REGGAN, timeout=30000
    )
    assert widget.session.output.name == output.name == f"CT (HU) · {REGGAN}"  # the same layer, renamed
    assert [layer.name for layer in viewer.layers] == ["phantom T1", "phantom CT (reference)", output.name]


def test_shortcuts_flip_layers_and_translators(demo, qtbot):
    from napari_medtrans._widgets.translate import SHORTCUTS

    viewer, widget = demo(UAPI)
    assert all(key in widget.toolTip() for key in SHORTCUTS)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    names = ["phantom T1", f"CT (HU) · {UAPI}", "phantom CT (reference)"]

    def visible() -> list[bool]:
        return [viewer.layers[name].visible for name in names]

    for key, expected in (
        (Qt.Key_3, [False, False, True]),
        (Qt.Key_2, [False, True, False]),
        (Qt.Key_1, [True, False, False]),
    ):
        qtbot.keyClick(canvas, key, Qt.AltModifier)
        assert visible() == expected
    before = widget.translator_combo.currentIndex()
    qtbot.keyClick(canvas, Qt.Key_N, Qt.AltModifier)
    assert widget.translator_combo.currentIndex() == (before + 1) % widget.translator_combo.count()


def test_save_the_synthetic_ct(demo, qtbot, tmp_path):
    from napari_medtrans.io import read_volume

    _, widget = demo(UAPI, onthefly=False)
    assert widget.save_button.text() == "Save synthetic CT…"
    assert widget.save_translation(tmp_path / "early.nii.gz") is None  # not translated as a whole yet
    assert "whole volume first" in widget.status_label.text() and not (tmp_path / "early.nii.gz").exists()
    with qtbot.waitSignal(widget.volume_finished, timeout=60000):
        widget.volume_button.click()
    for name in ("sct.nii.gz", "sct.mha", "sct.nrrd"):
        written = widget.save_translation(tmp_path / name)
        back = read_volume(written)
        np.testing.assert_allclose(back.array, widget.session.output.data, atol=1e-4)
        assert back.modality == "CT"
        np.testing.assert_allclose(back.spacing, widget.session.volume.spacing, rtol=1e-6)
        np.testing.assert_allclose(back.origin, widget.session.volume.origin, atol=1e-4)
    assert widget.save_translation(tmp_path / "sct.mha") is None and "already exists" in widget.status_label.text()


def test_orientation_letters_follow_the_displayed_axes(demo, qtbot):
    from napari_medtrans._widgets.orientation import edge_letters

    assert edge_letters((1, 2)) == {"top_center": "A", "bottom_center": "P", "middle_left": "R", "middle_right": "L"}
    assert edge_letters((0, 2), vertical="up") == {
        "top_center": "S",
        "bottom_center": "I",
        "middle_left": "R",
        "middle_right": "L",
    }
    viewer, widget = demo(UAPI)

    def letters() -> list[str]:
        return [overlay.text for overlay in widget.orientation.overlays.values()]

    assert letters() == ["A", "P", "R", "L"] and all(o.visible for o in widget.orientation.overlays.values())
    viewer.dims.order = (1, 0, 2)  # coronal: z down the screen
    assert letters() == ["I", "S", "R", "L"]
    viewer.dims.ndisplay = 3
    assert not any(o.visible for o in widget.orientation.overlays.values())
