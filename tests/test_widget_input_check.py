"""The Translate widget warns, in a real window, when the input is unlike the training data (Xvfb)."""

from __future__ import annotations

import pytest

from napari_medtrans.io import layer_geometry

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def subject():
    """A held-out phantom on the training grid of the shipped translators (32 × 128 × 128)."""
    from napari_medtrans.phantom import generate_subject

    return generate_subject(4242)


@pytest.fixture
def open_translate(make_napari_viewer, qtbot, subject):
    """A shown viewer with the subject's ``kind`` image and the Translate widget on t1-ct-resnet."""

    def make(kind: str):
        viewer = make_napari_viewer(show=True)
        volume = subject.volume(kind)
        viewer.add_image(volume.array, name=f"input {kind}", **layer_geometry(volume))
        _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
        widget.device_combo.setCurrentText("cpu")
        widget.select(input=f"input {kind}", translator="t1-ct-resnet")
        widget.onthefly_check.setChecked(True)
        qtbot.waitUntil(lambda: widget.session is not None, timeout=60000)
        return viewer, widget

    return make


def test_ct_given_to_an_mr_to_ct_translator_shows_a_warning(open_translate):
    from napari_medtrans._widgets._card_panel import LAYER_WARNING

    viewer, widget = open_translate("ct")
    assert widget.input_warning.isVisible()
    assert widget.input_warning.visibleRegion().boundingRect().height() > 0  # on screen, not just flagged
    assert "• header says CT; this translator expects T1" in widget.input_warning.text()
    assert widget.input_warning.height() >= widget.input_warning.heightForWidth(widget.input_warning.width())
    assert widget.session.output.name == f"CT (HU) · t1-ct-resnet{LAYER_WARNING}"
    assert widget.session.output.name in viewer.layers


def test_t1_shows_no_warning_and_the_card_unfolds(open_translate):
    _viewer, widget = open_translate("t1")
    assert not widget.input_warning.isVisible()
    assert widget.session.output.name == "CT (HU) · t1-ct-resnet"
    assert not widget.card_panel.text.isVisible()  # folded by default
    widget.card_panel.setChecked(True)
    assert widget.card_panel.text.isVisible()
    assert "Limits: research use only; trained on a procedural phantom" in widget.card_panel.text.toPlainText()


def test_save_as_dicom_joins_the_input_series_study(make_napari_viewer, qtbot, subject, tmp_path, monkeypatch):
    import numpy as np
    import pydicom
    from _volumes import write_dicom_series

    from napari_medtrans._widgets import _dicom_action
    from napari_medtrans.io import read_volume

    t1 = subject.volume("t1")
    t1.modality = "MR"
    write_dicom_series(
        tmp_path / "mr",
        t1.with_array(np.rint(t1.array).astype(np.int16)),
        description="t1",
        uid="1.2.826.0.1.3680043.2.1125.9.1",
    )
    mr = read_volume(tmp_path / "mr")
    viewer = make_napari_viewer(show=True)
    viewer.add_image(mr.array, name="mr", **layer_geometry(mr))
    _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
    widget.device_combo.setCurrentText("cpu")
    widget.select(input="mr", translator="t1-ct-resnet")
    assert widget.save_dicom_button.save() is None  # nothing translated yet
    assert widget.status_label.text() == "Translate the whole volume to CT first, then save it as DICOM."
    with qtbot.waitSignal(widget.volume_finished, timeout=120000):
        widget.translate_volume()
    monkeypatch.setattr(_dicom_action, "ask_folder", lambda parent, suggestion: tmp_path / suggestion.name)
    assert widget.save_dicom_button.save() == tmp_path / "mr_sCT_dicom"
    header = pydicom.dcmread(min((tmp_path / "mr_sCT_dicom").iterdir()))
    assert header.PatientID == "PHANTOM" and header.StudyInstanceUID == "1.2.826.0.1.3680043.2.1125.1"
    assert header.SeriesDescription == "synthetic CT (t1-ct-resnet)"
    back = read_volume(tmp_path / "mr_sCT_dicom")
    assert np.array_equal(back.array, np.rint(widget.session.output.data))
    assert np.allclose(back.origin, mr.origin, atol=1e-4) and np.allclose(back.spacing, mr.spacing, atol=1e-4)
