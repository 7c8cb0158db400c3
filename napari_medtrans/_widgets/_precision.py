"""Precision choices that only offer what the device computes natively (issue 23)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox

from napari_medtrans import cpu_features

#: The reduced precisions a combo box may offer; others ("auto", "fp32") are always enabled.
REDUCED = ("bf16", "fp16")


def offer_precisions(combo: QComboBox, device: str) -> None:
    """Disable the reduced precisions of ``combo`` that ``device`` only emulates; the reason is the tooltip.

    ``device`` "cpu" (and "auto" or empty, which the Train form runs on the
    CPU unless CUDA is chosen) is checked here without importing torch; an
    accelerator ("cuda:1", "mps") leaves every choice enabled: the engine and
    the trainer check it on the device itself. When the current choice gets
    disabled, the combo falls back to fp32.
    """
    on_cpu = (device or "auto").split(":")[0] in ("auto", "cpu")
    for row in range(combo.count()):
        name = combo.itemText(row)
        if name not in REDUCED:
            continue
        support = cpu_features.precision_support(name, "cpu") if on_cpu else None
        native = support is None or support.native
        combo.model().item(row).setEnabled(native)  # type: ignore[union-attr]  # a QComboBox model is a QStandardItemModel
        combo.setItemData(row, None if support is None else support.reason, Qt.ItemDataRole.ToolTipRole)
        if not native and combo.currentIndex() == row:
            combo.setCurrentText("fp32")
