"""The Translate widget's model card (collapsible) and its input-check warning.

The card is the ``card`` of the chosen translator's metadata
(:mod:`napari_medtrans.model_card`); the warning shows the verdict of
:func:`napari_medtrans.input_check.check_input` on the chosen input, in red,
whenever the input is unlike the translator's training data.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QGroupBox, QLabel, QPlainTextEdit, QSizePolicy, QVBoxLayout

from napari_medtrans.input_check import Verdict
from napari_medtrans.model_card import card_lines

WARNING_STYLE = "QLabel { color: white; background-color: #b3261e; padding: 4px; font-weight: bold; }"
#: Appended to the name of an output layer translated from an out-of-distribution input.
LAYER_WARNING = " [WARNING: input unlike training data]"
CARD_HEIGHT = 180  # px; the card scrolls beyond
SHOWN_REASONS = 3
MIN_WIDTH = 220  # px assumed for the banner's height before the dock is laid out


class CardPanel(QGroupBox):
    """The chosen translator's model card; tick the title to unfold it."""

    def __init__(self) -> None:
        super().__init__("Model card")
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumHeight(CARD_HEIGHT)
        self.text.setMinimumHeight(CARD_HEIGHT // 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        self.setCheckable(True)
        self.toggled.connect(self.text.setVisible)
        self.setChecked(False)

    def show_card(self, card: dict[str, Any]) -> None:
        """Show ``card`` (a translator's ``metadata.card``)."""
        self.text.setPlainText("\n".join(card_lines(card)))


class InputWarning(QLabel):
    """A red banner with the input check's reasons; hidden while the input looks like the training data."""

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)
        self.setStyleSheet(WARNING_STYLE)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self.hide()

    def show_verdict(self, verdict: Verdict | None) -> None:
        """Show the reasons of an out-of-distribution ``verdict``; hide otherwise."""
        if verdict is None or not verdict.ood:
            self.clear()
            self.hide()
            return
        shown = verdict.reasons[:SHOWN_REASONS]
        more = len(verdict.reasons) - len(shown)
        self.setText(
            "Input unlike this translator's training data; the output may be wrong:\n• "
            + "\n• ".join(shown)
            + (f"\n(and {more} more; hover for all)" if more else "")
        )
        self.setToolTip("\n".join(verdict.reasons))
        self._fit_height()
        self.show()

    def resizeEvent(self, event: Any) -> None:
        """Keep every line of the reasons on screen when the dock is narrow."""
        super().resizeEvent(event)
        self._fit_height()

    def _fit_height(self) -> None:
        self.setMinimumHeight(self.heightForWidth(max(self.width(), MIN_WIDTH)) if self.text() else 0)
