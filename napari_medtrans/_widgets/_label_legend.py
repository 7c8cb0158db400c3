"""A legend of a Labels layer: each tissue's colour swatch and name, as the layer draws it.

The names come from the labels file's ``.names.json`` sidecar
(:mod:`napari_medtrans.label_names`); without one the legend lists the label values
present. The swatches follow the layer's colormap (redrawn when it changes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QGridLayout, QLabel, QWidget

LEGEND_COLUMNS = 2
"""Tissues per legend row (keeps the Review widget short)."""
SWATCH_PX = 14
"""Side of a colour swatch (pixels)."""


def _hex(rgba: Any) -> str:
    red, green, blue = (int(round(255 * float(c))) for c in np.asarray(rgba)[:3])
    return f"#{red:02x}{green:02x}{blue:02x}"


class LabelLegend(QWidget):
    """Swatch and name of every non-zero label of a Labels layer."""

    def __init__(self) -> None:
        super().__init__()
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self._layer: Any = None
        self._names: dict[int, str] = {}
        self._entries: list[tuple[int, str, str]] = []

    def entries(self) -> list[tuple[int, str, str]]:
        """(label value, name, swatch colour ``#rrggbb``) in the order shown."""
        return list(self._entries)

    def show_layer(self, layer: Any, names: dict[int, str]) -> None:
        """Show ``layer``'s tissues named by ``names`` (the values present when empty); follow its colormap."""
        if self._layer is not None:
            self._layer.events.colormap.disconnect(self._redraw)
        self._layer, self._names = layer, dict(names)
        layer.events.colormap.connect(self._redraw)
        self._redraw()

    def clear_layer(self) -> None:
        """Forget the layer (it was removed) and empty the legend."""
        if self._layer is not None:
            self._layer.events.colormap.disconnect(self._redraw)
        self._layer, self._names = None, {}
        self._redraw()

    def _redraw(self, _event: object = None) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            old = item.widget() if item is not None else None
            if old is not None:
                old.setParent(None)  # gone now, not at the next event loop turn
                old.deleteLater()
        self._entries = []
        if self._layer is None:
            return
        values = sorted(self._names) or [int(v) for v in np.unique(np.asarray(self._layer.data))]
        for value in (v for v in values if v != 0):
            name = self._names.get(value, f"label {value}")
            colour = _hex(self._layer.get_color(value))
            self._entries.append((value, name, colour))
            swatch = QLabel()
            swatch.setFixedSize(SWATCH_PX, SWATCH_PX)
            swatch.setStyleSheet(f"background-color: {colour}; border: 1px solid #808080;")
            text = QLabel(f"{value} {name}")
            text.setToolTip(f"label value {value}: {name}")
            row, column = divmod(len(self._entries) - 1, LEGEND_COLUMNS)
            self.grid.addWidget(swatch, row, 2 * column)
            self.grid.addWidget(text, row, 2 * column + 1)
        self.setVisible(bool(self._entries))
