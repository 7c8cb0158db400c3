"""The Translate widget's model card (collapsible) and its input-check warning.

The card is the ``card`` of the chosen translator's metadata
(:mod:`napari_medtrans.model_card`); the warning shows the verdict of
:func:`napari_medtrans.input_check.check_input` on the chosen input, in red,
whenever the input is unlike the translator's training data.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout

from napari_medtrans.input_check import Verdict
from napari_medtrans.model_card import card_lines

WARNING_STYLE = "QLabel { color: white; background-color: #b3261e; padding: 4px; font-weight: bold; }"
#: Appended to the name of an output layer translated from an out-of-distribution input.
LAYER_WARNING = " [WARNING: input unlike training data]"


class CardPanel(QGroupBox):
    """The chosen translator's model card; tick the title to unfold it."""

    def __init__(self) -> None:
        super().__init__("Model card")
        self.text = QLabel()
        self.text.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        self.setCheckable(True)
        self.toggled.connect(self.text.setVisible)
        self.setChecked(False)

    def show_card(self, card: dict[str, Any]) -> None:
        """Show ``card`` (a translator's ``metadata.card``)."""
        self.text.setText("\n".join(card_lines(card)))


class InputWarning(QLabel):
    """A red banner with the input check's reasons; hidden while the input looks like the training data."""

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)
        self.setStyleSheet(WARNING_STYLE)
        self.hide()

    def show_verdict(self, verdict: Verdict | None) -> None:
        """Show the reasons of an out-of-distribution ``verdict``; hide otherwise."""
        if verdict is None or not verdict.ood:
            self.clear()
            self.hide()
            return
        self.setText("Input unlike this translator's training data; the output may be wrong:\n• "
                     + "\n• ".join(verdict.reasons))
        self.show()
