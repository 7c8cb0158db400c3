"""Take the README/docs screenshots of the Translate widget and its overlays.

Rerunnable; needs a display, e.g.::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Writes ``docs/screenshot_<view>.png`` for: the on-the-fly demo window, the
uncertainty overlay, the deformation field (vectors + warped grid, and the
magnitude), the checkerboard and curtain comparisons, the difference in HU,
the side-by-side grid, and all four MedTrans docks in a 1600×1000 window.
Uses the shipped demo translators.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import napari

from napari_medtrans._widgets._wait import wait, wait_until
from napari_medtrans._widgets.demo import INPUT_NAME, REFERENCE_NAME, open_demo
from napari_medtrans._widgets.translate import TranslateWidget
from napari_medtrans.phantom import generate_subject, misalign

ROOT = Path(__file__).resolve().parents[1]
SLICE = 16


def _only(viewer: napari.Viewer, *names: str) -> None:
    for layer in viewer.layers:
        layer.visible = layer.name in names


def _save(viewer: napari.Viewer, out: Path, view: str, *, canvas_only: bool = True) -> None:
    wait(0.5)
    path = out / f"screenshot_{view}.png"
    viewer.screenshot(str(path), canvas_only=canvas_only, flash=False)
    print(f"screenshots: wrote {path}")


def _demo(viewer: napari.Viewer, model: str, reference=None) -> TranslateWidget:
    widget = open_demo(viewer, model, subject=generate_subject(0), device="cpu", reference=reference)
    wait_until(lambda: widget.session is not None, what="the translator to load")
    viewer.dims.set_current_step(0, SLICE)
    wait_until(lambda: widget.session.scheduler.cached(SLICE) is not None, what=f"slice {SLICE}")
    wait(0.3)
    return widget


def uapi_views(out: Path, model: str) -> None:
    """On-the-fly window, uncertainty overlay and the comparison tools."""
    viewer = napari.Viewer(title="napari-medtrans", show=True)
    viewer.window.resize(1500, 950)
    widget = _demo(viewer, model)
    output, sigma = widget.session.output.name, widget.session.uncertainty.name
    _save(viewer, out, "onthefly", canvas_only=False)
    _only(viewer, output, sigma)
    widget.uncertainty_panel.update_correlation()
    _save(viewer, out, "uncertainty")

    finished: list[bool] = []
    widget.volume_finished.connect(finished.append)
    widget.volume_button.click()
    wait_until(lambda: bool(finished), timeout=300, what="the whole volume")
    panel = widget.compare_panel
    panel.show_composite()
    composite = panel.composite_name(widget.session)
    _only(viewer, composite)
    _save(viewer, out, "checkerboard")
    panel.mode.setCurrentText("curtain")
    _save(viewer, out, "curtain")
    panel.show_difference()
    difference = next(layer.name for layer in viewer.layers if layer.metadata.get("medtrans_role") == "difference")
    _only(viewer, difference)
    _save(viewer, out, "difference")
    _only(viewer, INPUT_NAME, output, REFERENCE_NAME)
    panel.side_by_side.setChecked(True)
    _save(viewer, out, "side_by_side")
    viewer.close()


def field_views(out: Path, model: str) -> None:
    """Deformation field between the translation and a misaligned real CT."""
    viewer = napari.Viewer(title="napari-medtrans", show=True)
    viewer.window.resize(1500, 950)
    reference = misalign(generate_subject(0), level=4, seed=7)
    widget = _demo(viewer, model, reference=reference)
    widget.field_panel.step.setValue(6)
    widget.field_panel.register()
    wait_until(lambda: "vectors" in widget.field_panel.layers, timeout=300, what="the field")
    layers = widget.field_panel.layers
    _only(viewer, REFERENCE_NAME, layers["grid"].name, layers["vectors"].name)
    viewer.camera.zoom *= 1.6  # the demo model's field is about a millimetre: look closer
    _save(viewer, out, "field")
    viewer.reset_view()
    _only(viewer, REFERENCE_NAME, layers["magnitude"].name)
    layers["magnitude"].opacity = 0.7
    _save(viewer, out, "field_magnitude")
    _save(viewer, out, "field_window", canvas_only=False)
    viewer.close()


def docks_view(out: Path, model: str) -> None:
    """The demo with Translate, Train, Evaluate and Review docked in a 1600×1000 window."""
    viewer = napari.Viewer(title="napari-medtrans", show=True)
    viewer.window.resize(1600, 1000)
    _demo(viewer, model)
    for name in ("Train", "Evaluate", "Review pseudo labels"):
        viewer.window.add_plugin_dock_widget("napari-medtrans", name)
    wait(2.0)  # the Train form asks the trainer for its methods
    _save(viewer, out, "docks", canvas_only=False)
    viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--uapi", default="t1-ct-uapi-supervised", help="translator with a scale map")
    parser.add_argument("--reggan", default="t1-ct-reggan", help="translator with a registration network")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # no notification banners over the canvas (an environment override: not saved to the user's settings)
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    uapi_views(args.out, args.uapi)
    field_views(args.out, args.reggan)
    docks_view(args.out, args.uapi)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
