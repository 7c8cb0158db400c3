"""The windowed ``medtrans demo``: a phantom head with on-the-fly translation."""

from __future__ import annotations

import napari

from napari_medtrans.io import layer_geometry
from napari_medtrans.phantom import PhantomSubject, generate_subject

from .translate import TranslateWidget

INPUT_NAME = "phantom T1"
REFERENCE_NAME = "phantom CT (reference)"


def add_phantom(viewer: napari.Viewer, subject: PhantomSubject, reference: PhantomSubject | None = None) -> None:
    """Add the subject's T1 and (hidden) the CT of ``reference`` (default: the subject)."""
    t1 = subject.volume("t1")
    viewer.add_image(t1.array, name=INPUT_NAME, colormap="gray", **layer_geometry(t1))
    ct = (reference or subject).volume("ct")
    viewer.add_image(
        ct.array, name=REFERENCE_NAME, colormap="gray", contrast_limits=(-160, 240), visible=False, **layer_geometry(ct)
    )


def open_demo(
    viewer: napari.Viewer,
    model: str,
    *,
    subject: PhantomSubject | None = None,
    device: str = "auto",
    reference: PhantomSubject | None = None,
) -> TranslateWidget:
    """Set up ``viewer`` as the demo: phantom, Translate widget, on-the-fly on.

    ``subject`` defaults to the phantom of seed 0; ``reference`` is the subject
    whose CT is the reference layer (e.g. a misaligned copy), default ``subject``.
    """
    subject = subject or generate_subject(0)
    add_phantom(viewer, subject, reference)
    _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
    widget.device_combo.setCurrentText(device)
    widget.select(input=INPUT_NAME, translator=model, reference=REFERENCE_NAME)
    viewer.dims.set_current_step(0, subject.shape[0] // 2)
    widget.onthefly_check.setChecked(True)
    viewer.layers.selection.active = viewer.layers[INPUT_NAME]
    return widget


def run_viewer(model: str, *, seed: int = 0, device: str = "auto") -> int:
    """Open napari with the demo and run the event loop until the window closes."""
    viewer = napari.Viewer(title="napari-medtrans demo")
    open_demo(viewer, model, subject=generate_subject(seed), device=device)
    napari.run()
    return 0
