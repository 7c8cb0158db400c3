"""All four MedTrans docks fit a 1600×1000 window (run under Xvfb with a real window)."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QApplication

from napari_medtrans._widgets._layout import breakable

pytestmark = pytest.mark.gui

DOCKS = ("Translate", "Train", "Evaluate", "Review pseudo labels")


def _settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


@pytest.fixture
def four_docks(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(tmp_path))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 1000)
    docks = {name: viewer.window.add_plugin_dock_widget("napari-medtrans", name) for name in DOCKS}
    # the Train form asks the trainer for its methods in a worker: let it answer before teardown
    qtbot.waitUntil(lambda: bool(docks["Train"][1].form.methods), timeout=120000)
    _settle()
    return viewer, docks


def test_all_four_docks_fit_a_1600_by_1000_window(four_docks):
    viewer, docks = four_docks
    window = viewer.window._qt_window
    assert window.width() <= 1600 and window.height() <= 1000
    for name, (dock, widget) in docks.items():
        assert widget.minimumSizeHint().height() <= 200, name
        assert dock.height() >= 160, name  # each shows a few rows and scrolls the rest
        assert dock.width() >= widget.minimumSizeHint().width(), name  # no horizontal clipping


def test_a_long_train_status_wraps_instead_of_widening_the_dock(four_docks):
    viewer, docks = four_docks
    dock, train = docks["Train"]
    width = dock.width()
    train.view.show_status({"state": "stopping", "message": "stop requested: the trainer saves a checkpoint " * 6})
    train._say(breakable("finished: /a/very/long/path/" + "to/a/run/folder/" * 12 + "translator.safetensors is listed"))
    _settle()
    assert train.view.state_label.wordWrap() and train.message.wordWrap()
    assert dock.width() == width
    assert viewer.window._qt_window.width() <= 1600
