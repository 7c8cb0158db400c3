"""Patient orientation letters (R/L, A/P, S/I) at the edges of the 2-D canvas.

Volumes opened by this plugin are placed in physical space: world axes
(0, 1, 2) are SimpleITK's (z, y, x) in LPS, so +z is superior, +y posterior
and +x the patient's left, whatever the file's direction matrix. The letters
therefore depend only on which world axes are displayed and on the camera's
2-D orientation, and are shown while a volume with physical geometry
(``metadata["medtrans"]``) is in a 3-D viewer shown in 2-D.
"""

from __future__ import annotations

from typing import Any

import napari
from napari.components.overlays import TextOverlay

#: world axis → (letter of the negative end, letter of the positive end), LPS
AXIS_LETTERS = {0: ("I", "S"), 1: ("A", "P"), 2: ("R", "L")}
EDGES = ("top_center", "bottom_center", "middle_left", "middle_right")
KEY = "medtrans_orientation_"


def edge_letters(displayed: tuple[int, int], vertical: str = "down", horizontal: str = "right") -> dict[str, str]:
    """The letter at each canvas edge for displayed world axes (rows, columns).

    Args:
        displayed: The world axes shown vertically and horizontally.
        vertical: Where the vertical axis grows on screen (napari's ``camera.orientation2d[0]``).
        horizontal: Where the horizontal axis grows (``camera.orientation2d[1]``).
    """
    low_v, high_v = AXIS_LETTERS[displayed[0]]
    low_h, high_h = AXIS_LETTERS[displayed[1]]
    top, bottom = (low_v, high_v) if vertical == "down" else (high_v, low_v)
    left, right = (low_h, high_h) if horizontal == "right" else (high_h, low_h)
    return dict(zip(EDGES, (top, bottom, left, right), strict=True))


class OrientationLabels:
    """Keeps the orientation letters of a viewer's canvas up to date.

    Parameters:
        viewer: The viewer to label.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.overlays = {}
        for edge in EDGES:
            overlay = TextOverlay(text="", position=edge, visible=False, font_size=14, color="yellow")
            viewer.canvas.overlays[KEY + edge] = overlay
            self.overlays[edge] = viewer.canvas.overlays[KEY + edge]
        self._connections = [
            (viewer.dims.events.order, self.update),
            (viewer.dims.events.ndisplay, self.update),
            (viewer.camera.events.orientation2d, self.update),
            (viewer.layers.events.inserted, self.update),
            (viewer.layers.events.removed, self.update),
        ]
        for emitter, callback in self._connections:
            emitter.connect(callback)
        self.update()

    def update(self, event: Any = None) -> None:
        """Show the letters of the current view, or hide them (3-D view, no physical volume)."""
        viewer = self.viewer
        physical = any("medtrans" in layer.metadata for layer in viewer.layers)
        show = physical and viewer.dims.ndim == 3 and viewer.dims.ndisplay == 2
        letters = {}
        if show:
            vertical, horizontal = (str(getattr(o, "value", o)) for o in viewer.camera.orientation2d)
            letters = edge_letters(tuple(viewer.dims.displayed), vertical, horizontal)
        for edge, overlay in self.overlays.items():
            overlay.text = letters.get(edge, "")
            overlay.visible = show

    def remove(self) -> None:
        """Disconnect and take the letters off the canvas."""
        for emitter, callback in self._connections:
            emitter.disconnect(callback)
        for edge in EDGES:
            self.viewer.canvas.overlays.pop(KEY + edge, None)
