"""The Evaluate widget: layer pickers, metric table, per-slice curve, click-to-slice."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPointF

from napari_medtrans.io import layer_geometry

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer, small_subject):
    from napari_medtrans._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    geometry = layer_geometry(small_subject.volume("ct"))
    translated = small_subject.ct.copy()
    translated[5] += 200  # one bad slice
    viewer.add_image(small_subject.ct, name="ct", **geometry)
    viewer.add_image(translated, name="synthetic ct", **geometry)
    viewer.add_labels(small_subject.labels, name="labels", **{k: geometry[k] for k in ("scale", "translate")})
    w = EvaluateWidget(viewer)
    w.translated_picker.value = viewer.layers["synthetic ct"]
    w.reference_picker.value = viewer.layers["ct"]
    return w


def _names(picker) -> list[str | None]:
    return [getattr(choice, "name", None) for choice in picker.choices]


def _table(w) -> dict[str, str]:
    return {w.table.item(r, 0).text(): w.table.item(r, 1).text() for r in range(w.table.rowCount())}


def test_pickers_follow_layers_and_modality(widget):
    assert widget.labels_picker.value is None and set(_names(widget.labels_picker)) == {None, "labels"}
    assert widget.modality_combo.currentText() == "CT"
    widget.viewer.add_image(np.zeros((2, 4, 4)), name="extra")
    assert "extra" in _names(widget.translated_picker) and widget.translated_picker.value.name == "synthetic ct"
    synthetic = widget.viewer.layers["synthetic ct"]
    synthetic.name = "sCT v2"  # a renamed layer stays chosen, under its new name (magicgui layer pickers)
    assert widget.translated_picker.value is synthetic and widget.translated_picker.native.currentText() == "sCT v2"
    assert widget.compute() is not None
    widget.viewer.layers.remove(synthetic)
    assert "sCT v2" not in _names(widget.translated_picker) and widget.translated_picker.value is not synthetic


def test_translated_defaults_to_a_translation_and_never_offers_sigma(make_napari_viewer, small_subject):
    from napari_medtrans._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    viewer.add_image(small_subject.ct, name="ct")
    sigma = viewer.add_image(np.ones_like(small_subject.ct), name="σ (HU) · m")
    sigma.metadata.update(medtrans_role="uncertainty", medtrans_source="mr", medtrans_translator="m")
    synthetic = viewer.add_image(small_subject.ct + 1, name="CT (HU) · m")
    synthetic.metadata.update(medtrans_role="translation", medtrans_source="mr", medtrans_translator="m")
    w = EvaluateWidget(viewer)
    assert _names(w.translated_picker) == ["ct", "CT (HU) · m"]
    assert w.translated_picker.value is synthetic and w.reference_picker.value.name == "ct"
    assert "σ (HU) · m" in _names(w.reference_picker)  # a σ map may still be a reference-side layer


def test_reference_defaults_to_another_image_than_the_input(make_napari_viewer, small_subject):
    from napari_medtrans._widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    viewer.add_image(small_subject.t1, name="mr")  # the translation's input, first in the list
    viewer.add_image(small_subject.ct, name="ct")
    synthetic = viewer.add_image(small_subject.ct + 1, name="CT (HU) · m")
    synthetic.metadata.update(medtrans_role="translation", medtrans_source="mr", medtrans_translator="m")
    w = EvaluateWidget(viewer)
    assert w.translated_picker.value is synthetic and w.reference_picker.value.name == "ct"


def test_warns_when_modalities_differ(widget):
    layers = widget.viewer.layers
    layers["ct"].metadata["medtrans"] = {"modality": "CT"}
    layers["synthetic ct"].metadata["medtrans"] = {"modality": "T1"}
    widget.refresh_layers()
    assert widget.modality_warning.isVisibleTo(widget)
    assert "translated is T1, reference is CT" in widget.modality_warning.text()
    layers["synthetic ct"].metadata["medtrans"] = {"modality": "CT"}
    widget.refresh_layers()
    assert not widget.modality_warning.isVisibleTo(widget) and widget.modality_warning.text() == ""


def test_table_and_curve_show_the_bad_slice(widget):
    comparison = widget.compute()
    assert comparison is not None
    mae = comparison.paired.per_slice["mae"]
    assert np.nanargmax(mae) == 5 and mae[0] == pytest.approx(0)
    table = _table(widget)
    assert float(table["MAE (HU)"]) == pytest.approx(comparison.paired.values["mae"], rel=1e-3)
    # slice 5 is +200 HU everywhere, air included: error outside the body
    assert float(table["MAE out (HU)"]) == pytest.approx(comparison.paired.values["mae_outside"], rel=1e-3)
    assert comparison.paired.values["mae_outside"] > 0
    assert float(table["hot air (voxels)"]) == comparison.paired.values["hot_voxels_outside"]
    assert float(table["P99 air (HU)"]) >= 199
    titles = [widget.metric_combo.itemText(i) for i in range(widget.metric_combo.count())]
    assert titles[:3] == ["MAE (HU)", "PSNR (dB)", "SSIM"] and "P99 air (HU)" in titles
    assert "Dice (mean)" not in table and "labels layer" in widget.message.text()
    x, y = widget.plot.getPlotItem().listDataItems()[0].getData()
    assert list(x) == list(np.flatnonzero(np.isfinite(mae))) and y[list(x).index(5)] == pytest.approx(mae[5])
    widget.metric_combo.setCurrentText("SSIM")
    assert widget.plot.getPlotItem().listDataItems()[0].getData()[1].max() == pytest.approx(1.0)


def test_units_follow_the_modality(widget):
    widget.compute()
    assert {"MAE (HU)", "P99 air (HU)", "PSNR (dB)", "SSIM"} <= set(_table(widget))
    widget.modality_combo.setCurrentText("T1")
    widget.compute()
    table = _table(widget)
    assert "MAE (a.u.)" in table and "MAE (HU)" not in table
    titles = [widget.metric_combo.itemText(i) for i in range(widget.metric_combo.count())]
    assert titles[:2] == ["MAE (a.u.)", "PSNR (dB)"]


def test_dice_with_labels_layer(widget, monkeypatch):
    from napari_medtrans._widgets import evaluate

    class Perfect:  # a stand-in segmenter that returns the true labels
        metadata = type("M", (), {"labels": {1: "fat", 2: "bone"}})()

        def segment(self, image):  # perfect on the reference, bone lost on the +200 HU translation
            labels = widget.viewer.layers["labels"].data.copy()
            if image[5].mean() != widget.viewer.layers["ct"].data[5].mean():
                labels[labels == 2] = 0
            return type("R", (), {"labels": labels})()

    monkeypatch.setattr(widget, "_segmenter", lambda modality: Perfect())
    widget.labels_picker.value = widget.viewer.layers["labels"]
    widget.compute()
    table = _table(widget)
    ceiling = {widget.table.item(r, 0).text(): widget.table.item(r, 2).text() for r in range(widget.table.rowCount())}
    assert table["Dice bone"] == "0" and table["Dice fat"] == "1" and table["Dice (mean)"] == "0.5"
    assert ceiling["Dice bone"] == "1" and ceiling["Dice (mean)"] == "1" and ceiling["MAE (HU)"] == ""
    assert widget.table.horizontalHeaderItem(2).text() == "ceiling"
    assert evaluate.modality_of(widget.viewer.layers["ct"]) in ("CT", None)


def test_click_on_curve_jumps_to_slice(widget, qtbot):
    widget.compute()
    widget.go_to_slice(7)
    assert widget.viewer.dims.current_step[0] == 7
    view_box = widget.plot.getPlotItem().vb
    scene_pos = view_box.mapViewToScene(QPointF(3.0, 10.0))
    event = type("Click", (), {"scenePos": lambda self: scene_pos})()
    widget._on_plot_click(event)
    assert widget.viewer.dims.current_step[0] == 3


def test_refuses_same_layer_and_shape_mismatch(widget):
    widget.reference_picker.value = widget.viewer.layers["synthetic ct"]
    assert widget.compute() is None and "two different" in widget.message.text()
    widget.viewer.add_image(np.zeros((3, 8, 8)), name="small")
    widget.reference_picker.value = widget.viewer.layers["small"]
    assert widget.compute() is None and "differ in shape" in widget.message.text()
