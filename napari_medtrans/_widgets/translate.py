"""The Translate dock widget: on-the-fly translation while scrolling, whole volumes.

Inference never runs on the GUI thread. A *session* (translator + prepared input
+ output layers) is loaded in a worker; on-the-fly translation runs
:meth:`napari_medtrans.onthefly.SliceScheduler.run` in a napari worker started
whenever the scheduler has work (at most one at a time); its yielded results
are written into the output layers on the GUI thread. Whole-volume translation
and registration run in their own workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import napari
import numpy as np
import torch
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans import registry
from napari_medtrans.checkpoint import TranslatorMetadata
from napari_medtrans.constants import AIR_HU
from napari_medtrans.inference import Cancelled, PreparedVolume, Translator, load_translator, resolve_device
from napari_medtrans.input_check import Verdict
from napari_medtrans.io import Volume, write_volume
from napari_medtrans.onthefly import SampleBudget, SliceOutcome, SliceScheduler
from napari_medtrans.shipped import shipped_dir

from . import overlays
from ._card_panel import LAYER_WARNING, CardPanel, InputWarning
from ._dicom_action import SaveDicomButton
from ._layout import make_scrollable
from ._panels import ComparePanel, FieldPanel, UncertaintyPanel
from ._precision import offer_precisions
from ._threads import call_limited, limit_torch_threads
from ._translate_state import Session, TranslateState, layer_volume
from .orientation import OrientationLabels

__all__ = ["Session", "TranslateWidget", "layer_volume", "uncertainty_choices"]

NONE = "(none)"
SHORTCUTS = {
    "Alt-1": ("input", "show the input (MR) alone"),
    "Alt-2": ("translation", "show the translation (synthetic CT) alone"),
    "Alt-3": ("reference", "show the reference alone"),
    "Alt-N": ("next", "next translator"),
}
"""Viewer key bindings while the widget is open: key → (action, what it does)."""
SAVE_FILTER = "NIfTI (*.nii.gz *.nii);;MetaImage (*.mha);;NRRD (*.nrrd)"
REGISTRY_POLL_MS = 2000
"""Interval between two looks for translators added or removed (e.g. by a finished run)."""


class _Progress(QObject):
    """Carries progress from a worker thread to the GUI thread."""

    changed = Signal(int, int)


class TranslateWidget(QWidget):
    """Translate an image layer with a translator, slice by slice or as a whole.

    Parameters
    ----------
    viewer
        The napari viewer (injected by napari when created from the manifest).
    """

    #: (slice index, precision, seconds from the slice change to the layer update)
    slice_shown = Signal(int, str, float)
    #: a session is loaded and its output layers exist
    session_ready = Signal()
    #: whole-volume job ended: True when finished, False when cancelled or failed
    volume_finished = Signal(bool)

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.state = TranslateState(viewer)
        self._translators: dict[str, registry.TranslatorInfo] = {}
        self._loading: Any = None
        self._volume_worker: Any = None
        self._volume_session: Session | None = None
        self._cancel = threading.Event()
        self._requested: tuple[int, float] | None = None

        self.input_combo = QComboBox()
        self.reference_combo = QComboBox()
        self.translator_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip(
            "Label map of the input (a Labels layer on its grid): this translator draws from it"
        )
        self.labels_title = QLabel("Labels")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("List translators again (e.g. after a training run finished)")
        self.info_label = QLabel()
        self.device_combo = QComboBox()
        self.device_combo.addItems(_devices())
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(["fp32", "bf16"])
        offer_precisions(self.precision_combo, str(resolve_device(self.device_combo.currentText())))
        self.preview_combo = QComboBox()
        self.preview_combo.addItems(["auto", "always", "never"])
        self.preview_combo.setToolTip("Show a bf16 preview first, replaced by the exact result")
        self.window_combo = QComboBox()
        self.window_combo.addItems(list(overlays.CT_WINDOWS))
        self.window_combo.setCurrentText("soft tissue")
        self.window_combo.setToolTip("HU window applied to every CT layer: translations, references, opened CT volumes")
        self.link_contrast = QCheckBox("Link contrast")
        self.link_contrast.setToolTip("Changing the contrast of one CT layer changes all of them")
        self.contrast_link = overlays.LinkedContrast(viewer)
        self.onthefly_check = QCheckBox("Translate while scrolling")
        self.status_label = QLabel("Pick an input layer and a translator.")
        self.status_label.setWordWrap(True)
        self.volume_uncertainty = QComboBox()
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(1, 64)
        self.samples_spin.setValue(8)
        self.samples_spin.setToolTip(
            "Samples of MC dropout, or of a stochastic translator (SynDiff, UNSB): their mean is the translation, "
            "their spread the uncertainty overlay (on the fly: one sample when they would miss the latency goal)"
        )
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Noise seed of a stochastic translator: the same seed gives the same translation")
        self.volume_button = QPushButton("Translate whole volume")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save translation…")
        self.save_button.setToolTip("Write the translated volume with the input's geometry (NIfTI, MetaImage, NRRD)")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.uncertainty_panel = UncertaintyPanel(self.state)
        self.field_panel = FieldPanel(self.state)
        self.compare_panel = ComparePanel(self.state)
        self.card_panel = CardPanel()
        self.input_warning = InputWarning()
        self.save_dicom_button = SaveDicomButton(self)
        self._build_layout()

        self.refresh_translators()
        self._refresh_layer_choices()
        self._show_metadata()
        self._on_reference_changed()
        self.state.status.connect(self.status_label.setText, check_nargs=False)
        self.state.volume_requested.connect(self.translate_volume)
        self.state.chosen_changed.connect(self._show_panel_of)
        self._show_panel_of(self.state.chosen)
        self.orientation = OrientationLabels(viewer)
        self._registry_seen = registry_fingerprint()
        self.registry_timer = QTimer(self)
        self.registry_timer.setInterval(REGISTRY_POLL_MS)
        self.registry_timer.timeout.connect(self._refresh_if_registry_changed)
        self.registry_timer.start()
        layers = viewer.layers.events
        for layer in viewer.layers:
            self._adopt(layer)
        self._viewer_connections = [
            (layers.inserted, self._on_layer_inserted),
            (layers.removed, self._refresh_layer_choices),
            (layers.reordered, self._refresh_layer_choices),
            (viewer.dims.events.current_step, self._on_step),
        ]
        for emitter, callback in self._viewer_connections:
            emitter.connect(callback)
        self.destroyed.connect(partial(TranslateWidget._teardown, self))
        self.translator_combo.currentTextChanged.connect(self._on_choice_changed)
        self.input_combo.currentTextChanged.connect(self._on_choice_changed)
        self.labels_combo.currentTextChanged.connect(self._on_choice_changed)
        self.device_combo.currentTextChanged.connect(
            lambda text: offer_precisions(self.precision_combo, str(resolve_device(text)))
        )
        self.device_combo.currentTextChanged.connect(self._on_choice_changed)
        self.reference_combo.currentTextChanged.connect(self._on_reference_changed)
        self.precision_combo.currentTextChanged.connect(self._on_choice_changed)
        self.preview_combo.currentTextChanged.connect(self._on_preview_mode)
        self.window_combo.currentTextChanged.connect(self._apply_window)
        self.link_contrast.toggled.connect(self.contrast_link.set_enabled)
        self.onthefly_check.toggled.connect(self._on_onthefly_toggled)
        self.refresh_button.clicked.connect(self.refresh_translators)
        self.volume_button.clicked.connect(self.translate_volume)
        self.cancel_button.clicked.connect(self.cancel_volume)
        self.save_button.clicked.connect(self._choose_save_path)
        self.setToolTip(
            "Shortcuts in the viewer: " + "; ".join(f"{key}: {text}" for key, (_, text) in SHORTCUTS.items())
        )
        for key, (action, _) in SHORTCUTS.items():
            viewer.bind_key(key, _key_binding(self, action), overwrite=True)

    # -- layout ----------------------------------------------------------------
    def _build_layout(self) -> None:
        source = QGroupBox("Translator")
        form = QFormLayout(source)
        form.addRow("Input", self.input_combo)
        form.addRow(self.labels_title, self.labels_combo)  # shown for label-conditioned translators only
        translator_row = QHBoxLayout()
        translator_row.addWidget(self.translator_combo, 1)
        translator_row.addWidget(self.refresh_button)
        form.addRow("Translator", translator_row)
        form.addRow(self.info_label)
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("Fast preview", self.preview_combo)
        window_row = QHBoxLayout()
        window_row.addWidget(self.window_combo, 1)
        window_row.addWidget(self.link_contrast)
        form.addRow("CT window", window_row)
        form.addRow("Reference", self.reference_combo)
        run = QGroupBox("Translate")
        run_layout = QFormLayout(run)
        run_layout.addRow(self.onthefly_check)
        run_layout.addRow("Uncertainty", self.volume_uncertainty)
        samples_row = QHBoxLayout()
        samples_row.addWidget(self.samples_spin)
        samples_row.addWidget(QLabel("Seed"))
        samples_row.addWidget(self.seed_spin)
        run_layout.addRow("Samples", samples_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.volume_button)
        buttons.addWidget(self.cancel_button)
        run_layout.addRow(buttons)
        run_layout.addRow(self.save_button)
        run_layout.addRow(self.save_dicom_button)
        run_layout.addRow(self.progress)
        run_layout.addRow(self.status_label)
        panels = QTabWidget()  # one panel at a time: the dock stays short
        for panel, title in (
            (self.uncertainty_panel, "Uncertainty"),
            (self.field_panel, "Field"),
            (self.compare_panel, "Compare"),
        ):
            panel.setTitle("")
            panel.setFlat(True)
            panels.addTab(panel, title)
        self.panels = panels
        layout = QVBoxLayout(self)
        for widget in (self.input_warning, source, self.card_panel, run, panels):  # the warning first: seen at once
            layout.addWidget(widget)
        layout.addStretch()
        make_scrollable(self, min_height=200)

    # -- choices ---------------------------------------------------------------
    def _on_layer_inserted(self, event: Any) -> None:
        self._adopt(event.value)
        self._refresh_layer_choices()

    def _adopt(self, layer: napari.layers.Layer) -> None:
        """A CT layer gets the chosen HU window and HU in its status readout; contrast links follow it."""
        self.contrast_link.watch(layer)
        if layer in overlays.ct_layers(self.viewer):
            layer.contrast_limits = overlays.window_limits(self.window_combo.currentText())
            overlays.show_value_units(layer, "HU")

    def _refresh_layer_choices(self, event: Any = None) -> None:
        images = [layer.name for layer in self.viewer.layers if _is_volume_image(layer)]
        labels = [
            layer.name for layer in self.viewer.layers if isinstance(layer, napari.layers.Labels) and layer.ndim == 3
        ]
        for combo, extra, names in (
            (self.input_combo, [], images),
            (self.reference_combo, [NONE], images),
            (self.labels_combo, [NONE], labels),
        ):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(extra + names)
            if current in extra + names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if self.input_combo.currentText() and self.session is None and self.onthefly_check.isChecked():
            self._on_choice_changed()

    def refresh_translators(self) -> None:
        """List the registry's translators again, keeping the current choice when it still exists."""
        current = self.translator_combo.currentText()
        self._translators = {info.name: info for info in registry.list_translators()}
        names = list(self._translators)
        self.translator_combo.blockSignals(True)
        self.translator_combo.clear()
        self.translator_combo.addItems(names)
        if current in names:
            self.translator_combo.setCurrentText(current)
        self.translator_combo.blockSignals(False)
        if self.translator_combo.currentText() != current:
            self._on_choice_changed()

    def _refresh_if_registry_changed(self) -> None:
        seen = registry_fingerprint()
        if seen != self._registry_seen:
            self._registry_seen = seen
            self.refresh_translators()

    @property
    def session(self) -> Session | None:
        """The loaded session (translator + prepared input + output layers), if any."""
        return self.state.session

    def select(self, *, input: str | None = None, translator: str | None = None, reference: str | None = None) -> None:
        """Choose the input layer, translator and reference layer by name."""
        for combo, value in (
            (self.input_combo, input),
            (self.translator_combo, translator),
            (self.reference_combo, reference),
        ):
            if value is not None:
                if combo.findText(value) < 0:
                    raise ValueError(f"{value!r} is not among {[combo.itemText(i) for i in range(combo.count())]}")
                combo.setCurrentText(value)

    def input_layer(self) -> napari.layers.Image | None:
        """The chosen input layer."""
        name = self.input_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (LayerList has no get)

    def labels_layer(self) -> napari.layers.Labels | None:
        """The chosen label map of the input (for label-conditioned translators), if any."""
        name = self.labels_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (LayerList has no get)

    def reference_layer(self) -> napari.layers.Image | None:
        """The chosen reference (real target) layer, if any."""
        name = self.reference_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (LayerList has no get)

    def reference_array(self) -> np.ndarray | None:
        """The reference resampled onto the input grid (see :meth:`TranslateState.reference_array`)."""
        return self.state.reference_array()

    def _show_metadata(self) -> None:
        name = self.translator_combo.currentText()
        infos = self._translators
        if name not in infos:
            self.info_label.setText("No translator found (see `medtrans models`).")
            self._show_labels_picker(None)
            self.state.choose(None)
            return
        meta = infos[name].metadata
        self._show_labels_picker(meta)
        self.card_panel.show_card(meta.card)
        self.info_label.setText(f"{meta.method}: {meta.source} → {meta.target}, {meta.size}², {'+'.join(meta.outputs)}")
        self.info_label.setToolTip(
            f"method {meta.method}; {meta.source} → {meta.target}; trained on {meta.size}² slices along axis "
            f"{meta.slice_axis}; {meta.context_slices} input slice(s); outputs {', '.join(meta.outputs)}; "
            f"file {infos[name].path}"
        )
        self.volume_uncertainty.clear()
        self.volume_uncertainty.addItems(uncertainty_choices(meta))
        self.seed_spin.setEnabled(bool(meta.networks["generator"].get("stochastic", False)))
        self.save_button.setText(f"Save synthetic {meta.target}…")
        self.state.choose(meta)

    def _show_labels_picker(self, meta: TranslatorMetadata | None) -> None:
        """The Labels row only for a translator conditioned on the input's label map (SPADE)."""
        needed = meta is not None and meta.label_classes > 0
        self.labels_title.setVisible(needed)
        self.labels_combo.setVisible(needed)
        if needed:
            self.labels_title.setText(f"Labels ({meta.label_classes} classes)")  # type: ignore[union-attr]

    def _on_choice_changed(self, *args: Any) -> None:
        self._show_metadata()
        self.input_warning.show_verdict(None)
        self.close_session()
        if self.onthefly_check.isChecked():
            self.start_session()

    def _show_panel_of(self, meta: TranslatorMetadata | None) -> None:
        """Bring the panel of the chosen translator's extra output (field, uncertainty) to the front."""
        if meta is not None and "field" in meta.outputs:
            self.panels.setCurrentWidget(self.field_panel)
        elif meta is not None and "scale" in meta.outputs:
            self.panels.setCurrentWidget(self.uncertainty_panel)

    def _on_reference_changed(self, *args: Any) -> None:
        self.state.set_reference(self.reference_layer())

    def _on_preview_mode(self, mode: str) -> None:
        if self.session is not None:
            self.session.scheduler.preview = mode

    def _apply_window(self, window: str) -> None:
        """Window every CT layer (translations and references alike) with the named preset."""
        for layer in overlays.ct_layers(self.viewer):
            layer.contrast_limits = overlays.window_limits(window)

    # -- sessions --------------------------------------------------------------
    def start_session(self) -> None:
        """Load the chosen translator and prepare the input, in a worker thread."""
        layer, name = self.input_layer(), self.translator_combo.currentText()
        if layer is None or not name or self._loading is not None:
            return
        labels = None
        if name in self._translators and self._translators[name].metadata.label_classes:
            labels_layer = self.labels_layer()
            if labels_layer is None:
                self.status_label.setText(
                    f"{name} draws the translation from the input's label map: choose a Labels layer "
                    "(on the input's grid) under Labels."
                )
                return
            labels = np.asarray(labels_layer.data)
            if labels.shape != tuple(layer.data.shape):
                self.status_label.setText(
                    f"Labels layer {labels_layer.name!r} has shape {labels.shape}, input {layer.name!r} "
                    f"{tuple(layer.data.shape)}: choose the input's label map."
                )
                return
        volume = layer_volume(layer)
        device = self.device_combo.currentText()
        self.status_label.setText(f"Loading {name} …")
        self._loading = create_worker(
            _load, name, device, layer, volume, labels, _ignore_errors=True, _start_thread=False
        )
        self._loading.returned.connect(self._on_loaded)
        self._loading.errored.connect(self._on_worker_error)
        self._loading.finished.connect(self._loading_finished)
        self._loading.start()

    def _loading_finished(self) -> None:
        self._loading = None

    def _on_loaded(self, loaded: tuple[Translator, PreparedVolume, napari.layers.Image, Volume, Verdict]) -> None:
        translator, prepared, layer, volume, verdict = loaded
        if layer.name not in self.viewer.layers or layer.name != self.input_combo.currentText():
            return  # the choice changed while loading
        meta = translator.metadata
        shape = volume.array.shape
        fill = AIR_HU if meta.target == "CT" else 0.0  # slices not translated yet show as air
        owner = {"source": layer.name, "translator": meta.name}
        overlays.remove_other_translators(self.viewer, **owner)
        output = overlays.add_translation_layer(
            self.viewer,
            np.full(shape, fill, np.float32),
            volume,
            **owner,
            target=meta.target,
            window=self.window_combo.currentText(),
        )
        if verdict.ood:
            output.name = output.name + LAYER_WARNING
        uncertainty = None
        if "scale" in meta.outputs or translator.stochastic:
            uncertainty = overlays.add_uncertainty_layer(
                self.viewer, np.zeros(shape, np.float32), volume, **owner, units=overlays.units_of(meta.target)
            )
        precision = self.precision_combo.currentText()
        budget = SampleBudget(self.samples_spin.value()) if translator.stochastic else None
        scheduler = SliceScheduler(
            partial(_translate_slice, translator, prepared, budget, self.seed_spin.value()),
            shape[meta.slice_axis],
            final_precision=precision,
            preview_precision="bf16",
            preview="never" if precision == "bf16" else self.preview_combo.currentText(),
            device=str(translator.device),
        )
        session = Session(
            translator,
            prepared,
            layer,
            volume,
            output,
            uncertainty,
            scheduler,
            key=(layer.name, meta.name, precision),
            budget=budget,
        )
        grid = "" if prepared.resampling is None else f"; {prepared.resampling.describe()}"
        self.status_label.setText(f"{meta.name} ready on {translator.device}{grid}.")
        self.input_warning.show_verdict(verdict)
        self.viewer.layers.selection.active = layer
        self.state.set_session(session)
        if self.onthefly_check.isChecked():
            self._start_onthefly()
        self.session_ready.emit()

    def close_session(self) -> None:
        """Stop on-the-fly work and forget the session (its layers stay)."""
        self.cancel_volume()
        if self.session is not None:
            self.session.scheduler.stop()
            self.state.set_session(None)
        self.progress.reset()

    def _on_worker_error(self, exc: Exception) -> None:
        self.status_label.setText(f"Error: {exc}")
        show_error(f"napari-medtrans: {exc}")

    # -- on the fly ------------------------------------------------------------
    def _on_onthefly_toggled(self, on: bool) -> None:
        if not on:
            if self.session is not None:
                self.session.scheduler.set_paused(True)
            return
        if self.session is None:
            self.start_session()
        else:
            self._start_onthefly()

    def _start_onthefly(self) -> None:
        self.session.scheduler.set_paused(False)
        self._on_step()

    def _kick(self, session: Session) -> None:
        """Start a worker for the scheduler if it has work and none is running."""
        if not session.scheduler.claim():
            return
        worker = create_worker(_tagged, session.scheduler, session.translator, _ignore_errors=True, _start_thread=False)
        worker.yielded.connect(self._on_outcome)
        worker.errored.connect(self._on_worker_error)
        worker.start()

    def current_index(self) -> int | None:
        """Slice index of the session's input shown in the viewer now."""
        return self.state.current_index()

    def _on_step(self, event: Any = None) -> None:
        session = self.session
        if session is None or session.complete or not self.onthefly_check.isChecked():
            return
        index = self.current_index()
        self._requested = (index, time.perf_counter())
        cached = session.scheduler.request(index)
        if cached is not None:
            self._show(session, index, cached, session.scheduler.final_precision)
        self._kick(session)

    def _on_outcome(self, tagged: tuple[SliceScheduler, SliceOutcome]) -> None:
        scheduler, outcome = tagged
        session = self.session
        if session is None or session.scheduler is not scheduler or session.complete:
            return
        self._show(session, outcome.job.index, outcome.result, outcome.job.precision)

    def _show(self, session: Session, index: int, result: Any, precision: str) -> None:
        where = [slice(None)] * 3
        where[session.axis] = index
        where = tuple(where)
        session.output.data[where] = result.image
        sigma = result.scale if result.scale is not None else result.uncertainty
        if session.uncertainty is not None and sigma is not None:
            session.uncertainty.data[where] = sigma
        if index != self.current_index():
            return
        exact = precision == session.scheduler.final_precision
        # only the slice changed: skip extent and highlight; thumbnails for exact results
        session.output.refresh(extent=False, highlight=False, thumbnail=exact)
        if session.uncertainty is not None:
            if not session.uncertainty_fitted and sigma is not None:
                overlays.fit_uncertainty_limits(session.uncertainty, sigma, session.input_slice(index))
                session.uncertainty_fitted = exact
            session.uncertainty.refresh(extent=False, highlight=False, thumbnail=exact)
        self.state.slice_shown.emit(index)
        kind = "exact" if exact else "preview"
        note = session.budget.note if session.budget is not None else None
        self.status_label.setText(f"Slice {index}: {kind} ({precision})." + (f" Note: {note}." if note else ""))
        if self._requested is not None and self._requested[0] == index:
            self.slice_shown.emit(index, precision, time.perf_counter() - self._requested[1])

    # -- whole volume ----------------------------------------------------------
    def translate_volume(self) -> None:
        """Translate the whole input in a worker; progress bar and Cancel stay live."""
        if self.session is None:
            self.session_ready.connect(self._translate_loaded_volume)
            self.start_session()
            return
        self._translate_loaded_volume()

    def _translate_loaded_volume(self) -> None:
        try:
            self.session_ready.disconnect(self._translate_loaded_volume)
        except (TypeError, RuntimeError):
            pass
        session = self.session
        if session is None or self._volume_worker is not None:
            return
        session.scheduler.set_paused(True)
        choice = self.volume_uncertainty.currentText()
        progress = _Progress(self)
        progress.changed.connect(self._on_progress)
        self._cancel = threading.Event()
        self._volume_worker = create_worker(
            call_limited,
            session.translator,
            "translate_volume",
            session.volume,
            axis=session.axis,
            precision=self.precision_combo.currentText(),
            uncertainty=choice if choice in ("tta", "mc_dropout", "samples") else None,
            mc_samples=self.samples_spin.value(),
            seed=self.seed_spin.value(),
            progress=progress.changed.emit,
            cancel=self._cancel.is_set,
            labels=session.prepared.input_labels,
            _ignore_errors=True,
            _start_thread=False,
        )
        self._volume_session = session
        self._volume_worker.returned.connect(self._on_volume_done)
        self._volume_worker.errored.connect(self._on_volume_error)
        self.volume_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status_label.setText("Translating the whole volume …")
        self._volume_worker.start()

    def cancel_volume(self) -> None:
        """Ask the running whole-volume job to stop between batches."""
        self._cancel.set()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _volume_ended(self, session: Session, finished: bool, message: str) -> None:
        self._volume_worker = None
        self.volume_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status_label.setText(message)
        if not finished and session is self.session and self.onthefly_check.isChecked():
            self._start_onthefly()
        self.volume_finished.emit(finished)
        self.state.volume_finished.emit(finished)

    def _on_volume_done(self, result: Any) -> None:
        session = self._volume_session
        if session is not self.session:
            self._volume_ended(session, False, "Input or translator changed; result dropped.")
            return
        session.complete = True
        session.scheduler.stop()
        session.output.data = result.image.astype(np.float32, copy=False)
        sigma = result.uncertainty if result.uncertainty is not None else result.scale
        if sigma is not None:
            session.uncertainty = overlays.add_uncertainty_layer(
                self.viewer, sigma.astype(np.float32, copy=False), session.volume, **session.owner, units=session.units
            )
            overlays.fit_uncertainty_limits(session.uncertainty, sigma, session.volume.array)
            self.state.set_session(session)  # the panels pick up the new σ layer
        self._volume_ended(session, True, f"Whole volume translated ({session.output.name}).")

    def _on_volume_error(self, exc: Exception) -> None:
        session = self._volume_session
        if isinstance(exc, Cancelled):
            self._volume_ended(session, False, "Whole-volume translation cancelled.")
            return
        self._volume_ended(session, False, f"Error: {exc}")
        show_error(f"napari-medtrans: {exc}")

    # -- shortcuts and saving ----------------------------------------------------
    def show_alone(self, role: str) -> None:
        """Show only the ``input``, ``translation`` or ``reference`` layer of the three."""
        layers = {"input": self.input_layer(), "reference": self.reference_layer()}
        source = layers["input"]
        layers["translation"] = overlays.role_layer(self.viewer, "translation", source.name) if source else None
        if layers[role] is None:
            self.status_label.setText(f"No {role} layer to show.")
            return
        for name, layer in layers.items():
            if layer is not None:
                layer.visible = name == role

    def next_translator(self) -> None:
        """Choose the next translator of the list (wrapping around)."""
        count = self.translator_combo.count()
        if count:
            self.translator_combo.setCurrentIndex((self.translator_combo.currentIndex() + 1) % count)

    def _choose_save_path(self) -> None:
        target = self.state.chosen.target if self.state.chosen else "translation"
        path, _ = QFileDialog.getSaveFileName(
            self, f"Save synthetic {target}", f"synthetic_{target.lower()}.nii.gz", SAVE_FILTER
        )
        if path:  # the dialog has asked before choosing an existing file
            self.save_translation(path, overwrite=True)

    def save_translation(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Write the whole translated volume (input geometry, target modality) to ``path``.

        Returns:
            The path written, or None (said in the status line) when the volume is not translated yet or
            cannot be written.
        """
        session = self.session
        if session is None or not session.complete:
            self.status_label.setText("Translate the whole volume first, then save it.")
            return None
        volume = session.volume.with_array(np.asarray(session.output.data), modality=session.translator.metadata.target)
        try:
            written = write_volume(volume, path, overwrite=overwrite)
        except (OSError, ValueError) as exc:
            self.status_label.setText(f"Not saved: {exc}")
            return None
        self.status_label.setText(f"Saved {written}.")
        return written

    def _teardown(self) -> None:
        """When the widget is destroyed: leave the viewer's events and keys, stop the workers."""
        for emitter, callback in self._viewer_connections:
            emitter.disconnect(callback)
        for key in SHORTCUTS:
            self.viewer.bind_key(key, None, overwrite=True)
        self.orientation.remove()
        self._cancel.set()
        self.registry_timer.stop()
        if self.session is not None:
            self.session.scheduler.stop()


def _key_binding(widget: TranslateWidget, action: str) -> Callable[[napari.viewer.Viewer], None]:
    """The viewer key binding for an action of :data:`SHORTCUTS`."""

    def on_key(viewer: napari.viewer.Viewer) -> None:
        if action == "next":
            widget.next_translator()
        else:
            widget.show_alone(action)

    on_key.__name__ = f"medtrans_{action}"  # napari lists bindings by function name
    return on_key


def registry_fingerprint() -> tuple[int | None, ...]:
    """Modification times of the places the registry lists translators from.

    A translator file added, replaced or removed in the user folder, or a run
    registered, changes it.
    """
    user = registry.user_dir()
    places = (user, user / registry.REGISTERED_FILE, shipped_dir() / "models")
    return tuple(_mtime(place) for place in places)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _load(
    name: str, device: str, layer: napari.layers.Image, volume: Volume, labels: np.ndarray | None = None
) -> tuple[Translator, PreparedVolume, napari.layers.Image, Volume, Verdict]:
    translator = load_translator(name, device=device)
    limit_torch_threads(translator)
    prepared = translator.prepare(
        volume.array, axis=translator.metadata.slice_axis, labels=labels, spacing=tuple(volume.spacing)
    )
    return translator, prepared, layer, volume, translator.check_input(volume)


def uncertainty_choices(meta: TranslatorMetadata) -> list[str]:
    """The whole-volume uncertainty choices a translator supports, its own scale map first.

    ``mc_dropout`` needs dropout layers in the generator (its network spec's ``dropout`` > 0);
    ``samples`` (the spread of a stochastic translator's samples) a stochastic generator.
    """
    choices = ["scale map"] if "scale" in meta.outputs else []
    choices += ["samples"] if meta.networks["generator"].get("stochastic", False) else []
    choices += ["none", "tta"]
    if float(meta.networks["generator"].get("dropout", 0.0)) > 0:
        choices.append("mc_dropout")
    return choices


def _translate_slice(
    translator: Translator, prepared: PreparedVolume, budget: SampleBudget | None, seed: int, index: int, precision: str
) -> Any:
    """One on-the-fly slice; a stochastic translator draws as many samples as ``budget`` affords."""
    if budget is None:
        return translator.translate_slice(prepared, index, precision=precision)  # type: ignore[arg-type]
    samples = budget.samples()
    start = time.perf_counter()
    result = translator.translate_slice(
        prepared,
        index,
        precision=precision,  # type: ignore[arg-type]
        uncertainty="samples" if samples > 1 else None,
        mc_samples=samples,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    if seconds > 1e-3:  # not a cached result
        budget.record(seconds, samples)
    return result


def _tagged(scheduler: SliceScheduler, translator: Translator) -> Any:
    """Run ``scheduler`` and tag each outcome with it (results of old sessions are dropped)."""
    limit_torch_threads(translator)
    for outcome in scheduler.run():
        yield scheduler, outcome


def _devices() -> list[str]:
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _is_volume_image(layer: napari.layers.Layer) -> bool:
    return (
        isinstance(layer, napari.layers.Image)
        and layer.ndim == 3
        and not layer.rgb
        and (layer.metadata.get("medtrans_role") is None)
    )
