"""Layout helpers that keep the dock widgets usable in a small window.

All four MedTrans docks (Translate, Train, Evaluate, Review) must fit a
1600×1000 window side by side in napari's right dock area. Each dock therefore
puts its content in a scroll area (:func:`make_scrollable`) so its minimum
height is a few rows, not the height of everything it holds, and long paths in
labels wrap (:func:`breakable`) instead of widening the dock.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

MIN_DOCK_HEIGHT = 160
"""Smallest height (px) a scrollable dock may be squeezed to: four docks and their
title bars fit the ~950 px below napari's menu bar."""

ZERO_WIDTH_SPACE = "\u200b"


class VerticalScrollArea(QScrollArea):
    """A scroll area as wide as its content needs (now, not when it was built), scrolling vertically."""

    def __init__(self, min_height: int) -> None:
        super().__init__()
        self._min_height = min_height

    def setWidget(self, widget: QWidget | None) -> None:
        """Show ``widget``; its later layout changes (e.g. combos filled) update this area's size hint."""
        super().setWidget(widget)
        if widget is not None:
            widget.installEventFilter(self)

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        """Pass the content's layout requests on to the dock."""
        if watched is self.widget() and event is not None and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)

    def minimumSizeHint(self) -> QSize:
        """The content's minimum width plus the scroll bar; :attr:`_min_height` high."""
        content = self.widget()
        width = content.minimumSizeHint().width() if content is not None else 0
        bar = self.verticalScrollBar()
        return QSize(width + (bar.sizeHint().width() if bar is not None else 0), self._min_height)


def make_scrollable(widget: QWidget, min_height: int = MIN_DOCK_HEIGHT) -> QScrollArea:
    """Move ``widget``'s layout into a vertical scroll area that fills ``widget``.

    Call at the end of the widget's ``__init__``, after its layout is built. The
    dock keeps the content's minimum width and scrolls vertically.

    Returns:
        The scroll area (its ``widget()`` holds the original layout).
    """
    content = QWidget()
    content.setLayout(widget.layout())  # reparents the layout and the widgets it manages
    area = VerticalScrollArea(min_height)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setWidget(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return area


def breakable(text: str) -> str:
    """``text`` with a zero-width space after each path separator, so a word-wrapped label can break long paths."""
    return text.replace("/", "/" + ZERO_WIDTH_SPACE).replace("\\", "\\" + ZERO_WIDTH_SPACE)
