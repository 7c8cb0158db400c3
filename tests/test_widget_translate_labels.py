"""The Translate widget's Labels picker for label-conditioned translators (SPADE), in a real napari window."""

from __future__ import annotations

import numpy as np
import pytest
from test_inference import make_translator
from test_label_conditioned import SPADE_SPEC

pytestmark = pytest.mark.gui


def test_labels_picker_only_for_label_conditioned_translators(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, small_subject
):
    folder = tmp_path / "models"
    folder.mkdir()
    make_translator(folder / "tiny-spade.safetensors", generator=SPADE_SPEC)
    make_translator(folder / "tiny-plain.safetensors")
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(folder))
    from napari_medtrans._widgets.translate import TranslateWidget

    viewer = make_napari_viewer(show=True)
    viewer.add_image(small_subject.t1, name="t1")
    widget = TranslateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.select(input="t1", translator="tiny-plain")
    assert widget.labels_combo.isHidden() and widget.labels_title.isHidden()

    widget.select(translator="tiny-spade")
    assert not widget.labels_combo.isHidden() and "10 classes" in widget.labels_title.text()
    widget.start_session()  # no Labels layer chosen: a message, no session
    assert widget.session is None and "choose a Labels layer" in widget.status_label.text()

    viewer.add_labels(small_subject.labels[:, :32], name="cropped")
    widget.labels_combo.setCurrentText("cropped")
    widget.start_session()
    assert widget.session is None and "'cropped' has shape" in widget.status_label.text()

    viewer.add_labels(small_subject.labels, name="tissues")
    widget.labels_combo.setCurrentText("tissues")
    widget.start_session()
    qtbot.waitUntil(lambda: widget.session is not None, timeout=30000)
    with qtbot.waitSignal(widget.volume_finished, timeout=60000) as blocker:
        widget.volume_button.click()
    assert blocker.args == [True]
    output = widget.session.output.data
    assert output.shape == small_subject.t1.shape and np.isfinite(output).all() and output.std() > 0
