"""Train a tiny RegGAN from the Train widget and save docs/screenshot_train.png.

Rerunnable (each run trains into a fresh temporary folder)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_train.py

The picture shows the widget after the run finished: loss curves, progress, and
the preview layers (input, translation with the registration field, target,
misaligned target) in the viewer.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_train.png"
SETTINGS = {"ngf": 16, "n_blocks": 2, "ndf": 16}


def main() -> int:
    import napari
    import napari._qt.qt_main_window as qt_main_window
    from qtpy.QtWidgets import QApplication

    qt_main_window.SHOW_QT_WARNING = False  # no PyQt5-deprecation toast over the picture

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDTRANS_MODELS_DIR"] = str(Path(tmp) / "models")  # keep the user's registry clean
        viewer = napari.Viewer(title="napari-medtrans: training from the GUI")
        viewer.window._qt_window.resize(1600, 1000)
        _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Train")
        app = QApplication.instance()

        def wait(condition, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise TimeoutError(widget.message.text() or widget.view.problem.toPlainText())
                app.processEvents()
                time.sleep(0.02)

        wait(lambda: widget.form.methods, 180)
        form = widget.form
        form.select_method("reggan")
        form.select_data("misaligned")
        form.subjects.setValue(4)
        form.iterations.setValue(240)
        form.crop_size.setValue(64)
        form.log_every.setValue(4)
        form.preview_every.setValue(40)
        form.device.setCurrentText("cpu")
        form.threads.setValue(1)
        form.runs_folder.setText(str(Path(tmp) / "runs"))
        form.run_name.setText("reggan-demo")
        for option in form.option_box("reggan").fields:
            if option.spec.name in SETTINGS:
                option.widget.setValue(SETTINGS[option.spec.name])
        widget.start_button.click()
        wait(lambda: widget.run is not None and widget.run.ended, 600)
        if widget.run.watcher.state != "finished":
            print(widget.view.problem.toPlainText(), file=sys.stderr)
            return 1
        viewer.reset_view()
        for _ in range(20):
            app.processEvents()
            time.sleep(0.05)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        viewer.window._qt_window.grab().save(str(OUT))
        viewer.close()
    print(f"saved {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
