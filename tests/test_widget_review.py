"""Review widget under Xvfb: queue order, key presses, edits, autosave, resume, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel

from napari_medtrans.io import read_volume
from napari_medtrans.review import sidecar_paths
from tests.test_review import make_case, two_volume_summary

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """A fresh config folder; the reviewer-name question answers "dana"."""
    from qtpy.QtWidgets import QInputDialog

    folder = tmp_path / "config"
    monkeypatch.setenv("MEDTRANS_CONFIG_DIR", str(folder))
    monkeypatch.setattr(QInputDialog, "getText", lambda *_args, **_kwargs: ("dana", True))
    return folder


@pytest.fixture
def case(tmp_path):
    paths = make_case(tmp_path)
    summary = {
        "cases": [
            {
                "name": "case",
                "image": paths["image"].name,
                "labels": paths["labels"].name,
                "confidence": paths["confidence"].name,
                "mean_confidence": 0.5,
            }
        ]
    }
    paths["summary"] = tmp_path / "summary.json"
    paths["summary"].write_text(json.dumps(summary))
    return paths


def open_widget(make_napari_viewer, case):
    from napari_medtrans._widgets.review import ReviewWidget

    viewer = make_napari_viewer(show=True)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reviewer.setText("carol")
    widget.open_summary(case["summary"])
    return viewer, widget


def press(qtbot, viewer, key, modifier=Qt.NoModifier):
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, key, modifier)


def current_slice(viewer, widget):
    layer = widget.layers["labels"]
    return round(float(layer.world_to_data(viewer.dims.point)[0]))


def test_layers_queue_and_overlay(make_napari_viewer, case):
    viewer, widget = open_widget(make_napari_viewer, case)
    assert widget.session.queue == [3, 1, 4, 2, 5, 0]
    assert widget.queue_list.count() == 6 and "slice    3" in widget.queue_list.item(0).text()
    assert current_slice(viewer, widget) == 3
    labels = widget.layers["labels"]
    assert labels.editable and viewer.layers.selection.active is labels
    image = read_volume(case["image"])
    np.testing.assert_allclose(labels.scale, image.spacing[::-1])
    # legible by default: labels as outlines, the uncertainty optional, faint when shown
    uncertainty = widget.layers["uncertainty"]
    assert labels.contour == 1 and not uncertainty.visible and uncertainty.opacity <= 0.3
    widget.show_uncertainty.setChecked(True)
    assert uncertainty.visible
    widget.show_uncertainty.setChecked(False)
    assert not uncertainty.visible
    widget.label_outlines.setChecked(False)
    assert labels.contour == 0
    widget.label_outlines.setChecked(True)
    assert labels.contour == 1


def test_key_presses_edit_autosave_resume_export(make_napari_viewer, case, qtbot, tmp_path):
    viewer, widget = open_widget(make_napari_viewer, case)
    state_path, _ = sidecar_paths(case["labels"])
    labels = widget.layers["labels"]

    labels.paint((3, 1, 1), 2, refresh=True)  # edit the current slice
    qtbot.waitUntil(lambda: state_path.exists() and json.loads(state_path.read_text())["slices"][3]["edited"])
    assert "(edited)" in widget.queue_list.item(0).text()

    press(qtbot, viewer, Qt.Key_A)
    saved = json.loads(state_path.read_text())
    assert saved["slices"][3]["status"] == "accepted" and saved["slices"][3]["reviewer"] == "carol"
    assert current_slice(viewer, widget) == 1

    press(qtbot, viewer, Qt.Key_R)
    assert json.loads(state_path.read_text())["slices"][1]["status"] == "rejected"
    assert current_slice(viewer, widget) == 4

    press(qtbot, viewer, Qt.Key_N)
    assert json.loads(state_path.read_text())["position"] == 3
    press(qtbot, viewer, Qt.Key_N, Qt.ShiftModifier)
    assert json.loads(state_path.read_text())["position"] == 2
    assert current_slice(viewer, widget) == 4

    # re-open in a fresh widget: state and edits come back
    from napari_medtrans._widgets.review import ReviewWidget

    viewer.window.remove_dock_widget(widget)
    viewer.layers.clear()
    widget2 = ReviewWidget(viewer)
    widget2.open_summary(case["summary"])
    assert widget2.session.current == 4
    assert widget2.session.state(3).status == "accepted" and widget2.session.state(3).edited
    assert widget2.layers["labels"].data[3, 1, 1] == 2
    assert "accepted" in widget2.queue_list.item(0).text()

    paths = widget2.export(tmp_path / "out")["case"]
    exported = read_volume(paths["labels"])
    image = read_volume(case["image"])
    for attr in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(exported, attr), getattr(image, attr))
    assert exported.array[3, 1, 1] == 2 and not exported.array[1].any()
    assert widget2.export(tmp_path / "out") is None and "exists" in widget2.message.text()


def test_queue_walks_across_volumes(make_napari_viewer, qtbot, tmp_path):
    from napari_medtrans._widgets.review import ReviewWidget

    summary, _, _ = two_volume_summary(tmp_path)
    viewer = make_napari_viewer(show=True)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_summary(summary)
    assert widget.queue_list.count() == 12
    assert widget.queue_list.item(0).text().startswith("second   slice    5")
    assert widget.volume.text() == "second" and current_slice(viewer, widget) == 5
    assert [layer.name for layer in viewer.layers] == ["second image", "second uncertainty", "second pseudo labels"]
    press(qtbot, viewer, Qt.Key_A)  # accept: the next slice is in the other volume
    assert widget.volume.text() == "first" and current_slice(viewer, widget) == 3
    assert [layer.name for layer in viewer.layers] == ["first image", "first uncertainty", "first pseudo labels"]
    assert "accepted" in widget.queue_list.item(0).text()
    press(qtbot, viewer, Qt.Key_N)
    assert widget.volume.text() == "second" and current_slice(viewer, widget) == 0
    written = widget.export(tmp_path / "out")
    assert sorted(written) == ["first", "second"]
    assert read_volume(written["second"]["labels"]).array[5].any()


@pytest.mark.parametrize("bad", ["summary", "sidecar"])
def test_bad_files_are_reported_not_raised(make_napari_viewer, case, bad):
    from napari_medtrans._widgets.review import ReviewWidget

    if bad == "summary":
        case["summary"].write_text(json.dumps({"cases": [{"name": "x", "image": "/etc/hostname", "labels": "l"}]}))
        expected = "absolute paths and '..' are refused"
    else:
        sidecar_paths(case["labels"])[0].write_text('{"slices": [')
        expected = "not valid JSON"
    viewer = make_napari_viewer()
    widget = ReviewWidget(viewer)
    widget.open_summary(case["summary"])
    assert widget.review is None and expected in widget.message.text() and len(viewer.layers) == 0


@pytest.mark.parametrize("confirm", [True, False])
def test_re_export_asks_before_replacing(make_napari_viewer, case, tmp_path, monkeypatch, confirm):
    from qtpy.QtWidgets import QMessageBox

    _viewer, widget = open_widget(make_napari_viewer, case)
    out = tmp_path / "out"
    assert widget.export_asking(out) is not None  # first export: nothing to replace, no question
    widget.layers["labels"].paint((3, 1, 1), 2, refresh=True)
    widget.accept()
    questions = []

    def answer(_parent, title, text, *_args):
        questions.append(text)
        return QMessageBox.Yes if confirm else QMessageBox.No

    monkeypatch.setattr(QMessageBox, "question", answer)
    written = widget.export_asking(out)
    assert len(questions) == 1 and "earlier export" in questions[0] and "overwrite" not in questions[0]
    exported = read_volume(out / "case_labels_reviewed.nii.gz").array
    if confirm:
        assert written["case"]["labels"].exists() and exported[3, 1, 1] == 2
        assert "Exported" in widget.message.text()
    else:
        assert written is None and exported[3, 1, 1] == 0 and "kept" in widget.message.text()


def test_reopened_dock_reuses_its_layers(make_napari_viewer, case, qtbot):
    from napari_medtrans._widgets.review import ReviewWidget

    viewer, widget = open_widget(make_napari_viewer, case)
    state_path, _ = sidecar_paths(case["labels"])
    viewer.window.remove_dock_widget(widget)  # closing the dock leaves the layers
    widget2 = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget2)
    widget2.open_summary(case["summary"])
    assert [layer.name for layer in viewer.layers] == ["case image", "case uncertainty", "case pseudo labels"]
    widget2.layers["labels"].paint((3, 1, 1), 2, refresh=True)  # an edit in the reused layer is saved
    qtbot.waitUntil(lambda: state_path.exists() and json.loads(state_path.read_text())["slices"][3]["edited"])
    assert widget2.session.labels[3, 1, 1] == 2


def test_undo_clears_edited(make_napari_viewer, case, qtbot):
    viewer, widget = open_widget(make_napari_viewer, case)
    state_path, _ = sidecar_paths(case["labels"])
    labels = widget.layers["labels"]
    labels.paint((3, 1, 1), 2, refresh=True)
    qtbot.waitUntil(lambda: state_path.exists() and json.loads(state_path.read_text())["slices"][3]["edited"])
    assert "(edited)" in widget.queue_list.item(0).text() and "edited" in widget.info.text()
    press(qtbot, viewer, Qt.Key_Z, Qt.ControlModifier)
    qtbot.waitUntil(lambda: not json.loads(state_path.read_text())["slices"][3]["edited"])
    assert labels.data[3, 1, 1] == 0
    assert "(edited)" not in widget.queue_list.item(0).text() and "edited" not in widget.info.text()


def test_reviewer_name_asked_once_and_remembered(make_napari_viewer, case, config_dir, monkeypatch):
    from qtpy.QtWidgets import QInputDialog

    from napari_medtrans._widgets.review import ReviewWidget

    viewer = make_napari_viewer()
    widget = ReviewWidget(viewer)
    assert widget.reviewer.text() == ""  # not the login name
    widget.open_summary(case["summary"])  # asks: "dana"
    assert widget.reviewer.text() == "dana" and widget.review.reviewer == "dana"
    assert json.loads((config_dir / "reviewer.json").read_text()) == {"reviewer": "dana"}

    def no_question(*_args, **_kwargs):
        raise AssertionError("asked again")

    monkeypatch.setattr(QInputDialog, "getText", no_question)
    widget2 = ReviewWidget(viewer)
    assert widget2.reviewer.text() == "dana"
    widget2.open_summary(case["summary"])
    widget2.reviewer.setText("erin")
    widget2.reviewer.editingFinished.emit()
    assert json.loads((config_dir / "reviewer.json").read_text()) == {"reviewer": "erin"}


def test_tissue_legend_follows_the_layer_colours(make_napari_viewer, case, tmp_path):
    from napari_medtrans.label_names import read_label_names, write_label_names

    _, widget = open_widget(make_napari_viewer, case)  # no .names.json: the values present
    labels = widget.layers["labels"]
    assert [(v, n) for v, n, _ in widget.legend.entries()] == [(1, "label 1"), (2, "label 2")]
    write_label_names(case["labels"], {0: "background", 1: "soft tissue", 2: "bone"})
    widget.open_summary(case["summary"])
    labels = widget.layers["labels"]
    entries = widget.legend.entries()
    assert [(v, n) for v, n, _ in entries] == [(1, "soft tissue"), (2, "bone")] and not widget.legend.isHidden()
    for value, _, colour in entries:  # each swatch is the colour the layer paints that value in
        assert colour == "#" + "".join(f"{round(255 * c):02x}" for c in labels.get_color(value)[:3])
    assert list(labels.features["tissue"]) == ["background", "soft tissue", "bone"]  # shown under the cursor
    texts = [w.text() for w in widget.legend.findChildren(QLabel) if w.text()]
    assert texts == ["1 soft tissue", "2 bone"]
    labels.new_colormap(seed=123)  # napari's "shuffle colours": the legend follows
    assert [c for _, _, c in widget.legend.entries()] != [c for _, _, c in entries]
    assert widget.legend.entries()[0][2] == "#" + "".join(f"{round(255 * c):02x}" for c in labels.get_color(1)[:3])
    paths = widget.export(tmp_path / "export")["case"]  # the reviewed labels keep the names
    assert read_label_names(paths["labels"])[2] == "bone"
