"""Screenshot of the input-check warning and the model card → docs/screenshot_input_check.png.

Run (with a display, or under ``xvfb-run``)::

    python scripts/screenshot_input_check.py [--translator NAME] [--out PNG]

A phantom CT (its header says CT) is given to a T1→CT translator: the
Translate widget shows the red warning with the input check's reasons, the
output layer's name carries the warning, and the model card is unfolded.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--translator", default="t1-ct-resnet")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot_input_check.png")
    args = parser.parse_args()
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_medtrans.io import layer_geometry
    from napari_medtrans.phantom import generate_subject

    ct = generate_subject(4242).volume("ct")
    viewer = napari.Viewer(title="napari-medtrans: input check")
    viewer.window._qt_window.resize(1500, 1250)
    viewer.add_image(ct.array, name="a CT", colormap="gray", contrast_limits=(-160, 240), **layer_geometry(ct))
    _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
    widget.device_combo.setCurrentText("cpu")
    widget.select(input="a CT", translator=args.translator)
    viewer.dims.set_current_step(0, ct.array.shape[0] // 2)
    widget.onthefly_check.setChecked(True)
    while widget.session is None or widget.status_label.text().startswith(("Loading", args.translator)):
        QApplication.processEvents()
    widget.card_panel.setChecked(True)
    for _ in range(20):
        QApplication.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    viewer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
