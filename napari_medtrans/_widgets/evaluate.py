"""The Evaluate dock widget: metrics of a translated layer against a reference layer.

Pick the translated and reference image layers (and, for Dice, a labels layer
with the source labels); *Compute* fills a table (every paired metric of
:data:`napari_medtrans.metrics.METRICS`: MAE, PSNR, SSIM, NMAE inside the body mask and,
for CT, the error and hot voxels in the air outside it; Dice per tissue of the shipped
segmenter of the reference's modality, next to its ceiling: the same segmenter's Dice on the
reference image) and a per-slice curve of the chosen metric.
Clicking the curve moves the viewer to that slice.

"Translated" defaults to the newest layer the Translate widget tagged as a translation
(``metadata["medtrans_role"]``); derived maps (σ, difference, field magnitude) are never offered.
A warning shows when the two layers are tagged with different modalities. The pickers are
magicgui layer-typed widgets whose value is the layer itself, so renaming a layer keeps the choice.
Titles carry the units of :data:`~napari_medtrans.metrics.METRICS` (HU for CT, a.u. for MR).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
import pyqtgraph as pg
from magicgui.widgets import ComboBox, create_widget
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans.constants import MODALITIES
from napari_medtrans.evaluation import VolumeComparison, compare_volume
from napari_medtrans.metrics import METRIC_BY_KEY, SLICE_METRICS, MetricUnavailable
from napari_medtrans.segmenter import Segmenter, load_segmenter, shipped_segmenter

from ._layout import make_scrollable
from .overlays import modality_of, units_of

if TYPE_CHECKING:
    import napari.viewer


def _title(key: str, modality: str | None) -> str:
    """A metric's title and unit from the metric table, e.g. ``MAE (HU)``; HU reads a.u. for MR."""
    spec = METRIC_BY_KEY[key]
    unit = units_of(modality) if spec.unit == "HU" else spec.unit
    return f"{spec.title} ({unit})" if unit else spec.title


def layer_picker(kind: type, layers: Callable[[], list[Any]], *, nullable: bool = False) -> ComboBox:
    """magicgui's picker for a layer of type ``kind`` offering ``layers()`` (nullable: a "none" choice too)."""
    choices = {"choices": lambda _widget: [(layer.name, layer) for layer in layers()], "nullable": nullable}
    return create_widget(annotation=kind, options=choices)


NOT_TRANSLATIONS = frozenset({"uncertainty", "difference", "magnitude", "grid"})
"""Roles (``metadata["medtrans_role"]``) of derived maps that are never offered as a translation."""


def _mean(values: dict[str, float | None]) -> float | None:
    """Mean of the defined values, ``None`` when there are none."""
    defined = [v for v in values.values() if v is not None]
    return float(np.mean(defined)) if defined else None


def role_of(layer: Any) -> str | None:
    """The role the Translate widget tagged ``layer`` with (``"translation"``, ``"uncertainty"``, ...)."""
    return layer.metadata.get("medtrans_role")


class EvaluateWidget(QWidget):
    """Dock widget: paired metrics, Dice and a clickable per-slice metric curve."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.comparison: VolumeComparison | None = None
        self._segmenters: dict[str, Segmenter | None] = {}

        self.translated_picker = layer_picker(
            napari.layers.Image,
            lambda: [x for x in self._of(napari.layers.Image) if role_of(x) not in NOT_TRANSLATIONS],
        )
        self.reference_picker = layer_picker(napari.layers.Image, lambda: self._of(napari.layers.Image))
        self.labels_picker = layer_picker(napari.layers.Labels, lambda: self._of(napari.layers.Labels), nullable=True)
        self.modality_combo = QComboBox()
        self.modality_combo.addItems(MODALITIES)
        self.modality_combo.setCurrentText("CT")
        self.reference_picker.changed.connect(self._guess_modality)
        self.modality_warning = QLabel()
        self.modality_warning.setWordWrap(True)
        self.modality_warning.setStyleSheet("color: orange")
        self.modality_warning.hide()
        for picker in (self.translated_picker, self.reference_picker):
            picker.changed.connect(lambda _: self._check_modalities())
        self.metric_combo = QComboBox()
        for key in SLICE_METRICS:
            self.metric_combo.addItem(_title(key, "CT"), key)
        self.modality_combo.currentTextChanged.connect(self._retitle_curves)
        self.metric_combo.currentTextChanged.connect(lambda _: self._plot())
        self.compute_button = QPushButton("Compute")
        self.compute_button.clicked.connect(self.compute)
        self.message = QLabel("Pick a translated and a reference layer.")
        self.message.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["metric", "value", "ceiling"])
        self.table.horizontalHeaderItem(2).setToolTip(
            "Dice of the same segmenter on the reference image: the best a translation can reach"
        )
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "slice")
        self.plot.setMinimumHeight(160)
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)

        form = QFormLayout()
        form.addRow("Translated", self.translated_picker.native)
        form.addRow("Reference", self.reference_picker.native)
        form.addRow("Labels (Dice)", self.labels_picker.native)
        form.addRow("Modality", self.modality_combo)
        form.addRow("Curve", self.metric_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.modality_warning)
        layout.addWidget(self.compute_button)
        layout.addWidget(self.message)
        layout.addWidget(self.table)
        layout.addWidget(self.plot)
        make_scrollable(self)

        layer_events = self.viewer.layers.events
        for event in (layer_events.inserted, layer_events.removed, layer_events.renamed, layer_events.reordered):
            event.connect(lambda _: self.refresh_layers())
        self.refresh_layers(defaults=True)

    # ----------------------------------------------------------------- layers
    def _of(self, kind: type) -> list[Any]:
        return [layer for layer in self.viewer.layers if isinstance(layer, kind)]

    def refresh_layers(self, *, defaults: bool = False) -> None:
        """Refill the layer pickers, keeping the current choices where they still exist.

        "Translated" defaults (with ``defaults``, or when its layer is gone) to the newest translation,
        "Reference" to another layer (an untagged one that is not the translation's input first).
        """
        translated, reference = self.translated_picker, self.reference_picker
        kept = translated.value
        for picker in (translated, reference, self.labels_picker):
            chosen = picker.value
            picker.reset_choices()
            if chosen in picker.choices:  # magicgui matches by name: a renamed layer would lose its place
                picker.value = chosen
        translations = [layer for layer in translated.choices if role_of(layer) == "translation"]
        if (defaults or kept not in translated.choices) and translations:
            translated.value = translations[-1]
        if defaults or (reference.value is not None and reference.value is translated.value):
            default = self._default_reference()
            if default is not None:
                reference.value = default
        self._guess_modality(reference.value)
        self._check_modalities()

    def _default_reference(self) -> Any:
        """Another image than the translated one, preferring untagged layers that are not its input."""
        translated = self.translated_picker.value
        source = translated.metadata.get("medtrans_source") if translated is not None else None
        others = [layer for layer in self.reference_picker.choices if layer is not translated]
        ranked = sorted(others, key=lambda layer: (layer.name == source, role_of(layer) is not None))
        return ranked[0] if ranked else None

    def _check_modalities(self) -> None:
        """Show a warning when the translated and reference layers are tagged with different modalities."""
        chosen = self.translated_picker.value, self.reference_picker.value
        tags = [modality_of(layer) if layer is not None else None for layer in chosen]
        differ = all(tags) and tags[0] != tags[1]
        self.modality_warning.setText(
            f"Modalities differ: translated is {tags[0]}, reference is {tags[1]}; the metrics compare unlike images."
            if differ
            else ""
        )
        self.modality_warning.setVisible(bool(differ))

    def _guess_modality(self, layer: Any) -> None:
        modality = modality_of(layer) if layer is not None else None
        if modality and self.modality_combo.findText(modality) >= 0:
            self.modality_combo.setCurrentText(modality)

    def _retitle_curves(self, modality: str) -> None:
        for index in range(self.metric_combo.count()):
            self.metric_combo.setItemText(index, _title(self.metric_combo.itemData(index), modality))

    def _segmenter(self, modality: str) -> Segmenter | None:
        if modality not in self._segmenters:
            path = shipped_segmenter(modality)
            self._segmenters[modality] = load_segmenter(path) if path else None
        return self._segmenters[modality]

    # ----------------------------------------------------------------- compute
    def compute(self) -> VolumeComparison | None:
        """Compute the metrics of the chosen layers and show them."""
        chosen = self.translated_picker.value, self.reference_picker.value
        if chosen[0] is None or chosen[1] is None or chosen[0] is chosen[1]:
            self.message.setText("Pick two different image layers: translated and reference.")
            return None
        translated, reference = (np.asarray(layer.data, np.float32) for layer in chosen)
        labels_layer = self.labels_picker.value
        labels = None if labels_layer is None else np.asarray(labels_layer.data)
        shapes = {translated.shape, reference.shape} | ({labels.shape} if labels is not None else set())
        if len(shapes) != 1:
            self.message.setText(f"Layers differ in shape: {sorted(shapes)}; resample them first.")
            return None
        modality = self.modality_combo.currentText()
        try:
            segmenter = self._segmenter(modality) if labels is not None else None
            self.comparison = compare_volume(
                translated, reference, modality=modality, labels=labels, segmenter=segmenter
            )
        except MetricUnavailable as exc:
            self.message.setText(f"Cannot compute: {exc}")
            return None
        self.message.setText("; ".join(f"{k}: {v}" for k, v in self.comparison.reasons.items()) or "Done.")
        self._fill_table()
        self._plot()
        return self.comparison

    def _fill_table(self) -> None:
        assert self.comparison is not None
        rows: list[tuple[str, float | None, float | str | None]] = [
            (_title(k, self.modality_combo.currentText()), v, "") for k, v in self.comparison.paired.as_dict().items()
        ]
        dice, ceiling = self.comparison.dice, self.comparison.ceiling or {}
        if dice is not None:
            rows.append(("Dice (mean)", _mean(dice), _mean(ceiling)))
            rows += [(f"Dice {tissue}", value, ceiling.get(tissue)) for tissue, value in dice.items()]
        self.table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for column, cell in enumerate(cells):
                text = cell if isinstance(cell, str) else "n/a" if cell is None else f"{cell:.4g}"
                self.table.setItem(row, column, QTableWidgetItem(text))

    def _plot(self) -> None:
        self.plot.clear()
        if self.comparison is None:
            return
        metric = self.metric_combo.currentData()
        values = self.comparison.paired.per_slice.get(metric)
        self.plot.setLabel("left", self.metric_combo.currentText())
        if values is None:
            return
        keep = np.isfinite(values)
        self.plot.plot(np.flatnonzero(keep), values[keep], pen="y", symbol="o", symbolSize=5)

    # ----------------------------------------------------------------- navigation
    def _on_plot_click(self, event: Any) -> None:
        if self.comparison is None:
            return
        x = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos()).x()
        self.go_to_slice(int(round(x)))

    def go_to_slice(self, index: int) -> None:
        """Show slice ``index`` (array axis 0) of the translated layer in the viewer."""
        layer = self.translated_picker.value
        if layer is None or layer not in self.viewer.layers:
            return
        index = int(np.clip(index, 0, layer.data.shape[0] - 1))
        world = layer.data_to_world([index] + [0] * (layer.ndim - 1))[0]
        axis = self.viewer.dims.ndim - layer.ndim
        start, _, step = self.viewer.dims.range[axis]
        self.viewer.dims.set_current_step(axis, int(round((world - start) / step)))
