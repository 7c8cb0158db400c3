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
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import napari
import numpy as np
import torch
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans import registry
from napari_medtrans.comparison import resample_like
from napari_medtrans.inference import (
    Cancelled,
    Translator,
    load_translator,
    resolve_device,
)
from napari_medtrans.io import Volume, volume_from_layer
from napari_medtrans.onthefly import SliceOutcome, SliceScheduler

from . import overlays
from ._panels import ComparePanel, FieldPanel, UncertaintyPanel
from ._precision import offer_precisions
from ._threads import call_limited, limit_torch_threads

NONE = "(none)"


@dataclass
class Session:
    """A translator applied to one input layer, with the layers it fills."""

    translator: Translator
    prepared: Any
    input_layer: napari.layers.Image
    volume: Volume
    output: napari.layers.Image
    uncertainty: napari.layers.Image | None
    scheduler: SliceScheduler
    complete: bool = False
    uncertainty_fitted: bool = False
    key: tuple = field(default_factory=tuple)

    @property
    def axis(self) -> int:
        """Array axis the translator works along."""
        return self.translator.metadata.slice_axis

    def input_slice(self, index: int) -> np.ndarray:
        """Slice ``index`` of the input along the translator's axis."""
        return np.take(self.volume.array, index, axis=self.axis)

    @property
    def units(self) -> str:
        """Units of the translated image (HU for CT)."""
        return overlays.units_of(self.translator.metadata.target)


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
        self.session: Session | None = None
        self._loading: Any = None
        self._volume_worker: Any = None
        self._volume_session: Session | None = None
        self._cancel = threading.Event()
        self._requested: tuple[int, float] | None = None
        self._reference_cache: dict[tuple, np.ndarray] = {}

        self.input_combo = QComboBox()
        self.reference_combo = QComboBox()
        self.translator_combo = QComboBox()
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
        self.onthefly_check = QCheckBox("Translate while scrolling")
        self.status_label = QLabel("Pick an input layer and a translator.")
        self.status_label.setWordWrap(True)
        self.volume_uncertainty = QComboBox()
        self.volume_button = QPushButton("Translate whole volume")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.uncertainty_panel = UncertaintyPanel(self)
        self.field_panel = FieldPanel(self)
        self.compare_panel = ComparePanel(self)
        self._build_layout()

        self.refresh_translators()
        self._refresh_layer_choices()
        self._show_metadata()
        layers = viewer.layers.events
        self._viewer_connections = [
            (layers.inserted, self._refresh_layer_choices),
            (layers.removed, self._refresh_layer_choices),
            (layers.reordered, self._refresh_layer_choices),
            (viewer.dims.events.current_step, self._on_step),
        ]
        for emitter, callback in self._viewer_connections:
            emitter.connect(callback)
        self.destroyed.connect(partial(TranslateWidget._teardown, self))
        self.translator_combo.currentTextChanged.connect(self._on_choice_changed)
        self.input_combo.currentTextChanged.connect(self._on_choice_changed)
        self.device_combo.currentTextChanged.connect(
            lambda text: offer_precisions(self.precision_combo, str(resolve_device(text))))
        self.device_combo.currentTextChanged.connect(self._on_choice_changed)
        self.reference_combo.currentTextChanged.connect(self._on_reference_changed)
        self.precision_combo.currentTextChanged.connect(self._on_choice_changed)
        self.preview_combo.currentTextChanged.connect(self._on_preview_mode)
        self.window_combo.currentTextChanged.connect(self._apply_window)
        self.onthefly_check.toggled.connect(self._on_onthefly_toggled)
        self.refresh_button.clicked.connect(self.refresh_translators)
        self.volume_button.clicked.connect(self.translate_volume)
        self.cancel_button.clicked.connect(self.cancel_volume)

    # -- layout ----------------------------------------------------------------
    def _build_layout(self) -> None:
        source = QGroupBox("Translator")
        form = QFormLayout(source)
        form.addRow("Input", self.input_combo)
        translator_row = QHBoxLayout()
        translator_row.addWidget(self.translator_combo, 1)
        translator_row.addWidget(self.refresh_button)
        form.addRow("Translator", translator_row)
        form.addRow(self.info_label)
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("Fast preview", self.preview_combo)
        form.addRow("CT window", self.window_combo)
        form.addRow("Reference", self.reference_combo)
        run = QGroupBox("Translate")
        run_layout = QFormLayout(run)
        run_layout.addRow(self.onthefly_check)
        run_layout.addRow("Uncertainty", self.volume_uncertainty)
        buttons = QHBoxLayout()
        buttons.addWidget(self.volume_button)
        buttons.addWidget(self.cancel_button)
        run_layout.addRow(buttons)
        run_layout.addRow(self.progress)
        run_layout.addRow(self.status_label)
        layout = QVBoxLayout(self)
        for box in (source, run, self.uncertainty_panel, self.field_panel, self.compare_panel):
            layout.addWidget(box)
        layout.addStretch()

    # -- choices ---------------------------------------------------------------
    def _refresh_layer_choices(self, event: Any = None) -> None:
        images = [layer.name for layer in self.viewer.layers if _is_volume_image(layer)]
        for combo, extra in ((self.input_combo, []), (self.reference_combo, [NONE])):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(extra + images)
            if current in extra + images:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if self.input_combo.currentText() and self.session is None and self.onthefly_check.isChecked():
            self._on_choice_changed()

    def refresh_translators(self) -> None:
        """List the registry's translators again, keeping the current choice when it still exists."""
        current = self.translator_combo.currentText()
        names = [info.name for info in registry.list_translators()]
        self.translator_combo.blockSignals(True)
        self.translator_combo.clear()
        self.translator_combo.addItems(names)
        if current in names:
            self.translator_combo.setCurrentText(current)
        self.translator_combo.blockSignals(False)
        if self.translator_combo.currentText() != current:
            self._on_choice_changed()

    def select(self, *, input: str | None = None, translator: str | None = None, reference: str | None = None) -> None:
        """Choose the input layer, translator and reference layer by name."""
        for combo, value in ((self.input_combo, input), (self.translator_combo, translator), (self.reference_combo, reference)):
            if value is not None:
                if combo.findText(value) < 0:
                    raise ValueError(f"{value!r} is not among {[combo.itemText(i) for i in range(combo.count())]}")
                combo.setCurrentText(value)

    def input_layer(self) -> napari.layers.Image | None:
        """The chosen input layer."""
        name = self.input_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (LayerList has no get)

    def reference_layer(self) -> napari.layers.Image | None:
        """The chosen reference (real target) layer, if any."""
        name = self.reference_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (LayerList has no get)

    def reference_array(self) -> np.ndarray | None:
        """The reference resampled onto the input grid (cached per layer and geometry)."""
        layer, session = self.reference_layer(), self.session
        if layer is None or session is None:
            return None
        key = (id(layer), id(layer.data), session.key)
        if key not in self._reference_cache:
            self._reference_cache = {key: resample_like(layer_volume(layer), session.volume)}
        return self._reference_cache[key]

    def _show_metadata(self) -> None:
        name = self.translator_combo.currentText()
        infos = {info.name: info for info in registry.list_translators()}
        if name not in infos:
            self.info_label.setText("No translator found (see `medtrans models`).")
            return
        meta = infos[name].metadata
        self.info_label.setText(f"{meta.method}: {meta.source} → {meta.target}, {meta.size}², {'+'.join(meta.outputs)}")
        self.info_label.setToolTip(
            f"method {meta.method}; {meta.source} → {meta.target}; trained on {meta.size}² slices along axis "
            f"{meta.slice_axis}; {meta.context_slices} input slice(s); outputs {', '.join(meta.outputs)}; "
            f"file {infos[name].path}"
        )
        self.volume_uncertainty.clear()
        self.volume_uncertainty.addItems((["scale map"] if "scale" in meta.outputs else []) + ["none", "tta", "mc_dropout"])

    def _on_choice_changed(self, *args: Any) -> None:
        self._show_metadata()
        self.close_session()
        if self.onthefly_check.isChecked():
            self.start_session()

    def _on_reference_changed(self, *args: Any) -> None:
        self.uncertainty_panel.update_correlation()

    def _on_preview_mode(self, mode: str) -> None:
        if self.session is not None:
            self.session.scheduler.preview = mode

    def _apply_window(self, window: str) -> None:
        if self.session is not None and self.session.translator.metadata.target == "CT":
            self.session.output.contrast_limits = overlays.window_limits(window)

    # -- sessions --------------------------------------------------------------
    def start_session(self) -> None:
        """Load the chosen translator and prepare the input, in a worker thread."""
        layer, name = self.input_layer(), self.translator_combo.currentText()
        if layer is None or not name or self._loading is not None:
            return
        volume = layer_volume(layer)
        device = self.device_combo.currentText()
        self.status_label.setText(f"Loading {name} …")
        self._loading = create_worker(_load, name, device, layer, volume, _ignore_errors=True, _start_thread=False)
        self._loading.returned.connect(self._on_loaded)
        self._loading.errored.connect(self._on_worker_error)
        self._loading.finished.connect(self._loading_finished)
        self._loading.start()

    def _loading_finished(self) -> None:
        self._loading = None

    def _on_loaded(self, loaded: tuple[Translator, Any, napari.layers.Image, Volume]) -> None:
        translator, prepared, layer, volume = loaded
        if layer.name not in self.viewer.layers or layer.name != self.input_combo.currentText():
            return  # the choice changed while loading
        meta = translator.metadata
        shape = volume.array.shape
        fill = -1024.0 if meta.target == "CT" else 0.0  # slices not translated yet show as air
        tag = f"{layer.name} → {meta.target} ({meta.name})"
        output = overlays.add_translation_layer(
            self.viewer, tag, np.full(shape, fill, np.float32), volume, meta.target, self.window_combo.currentText()
        )
        uncertainty = None
        if "scale" in meta.outputs:
            units = overlays.units_of(meta.target)
            uncertainty = overlays.add_uncertainty_layer(
                self.viewer, f"{tag} σ ({units})", np.zeros(shape, np.float32), volume, units
            )
        precision = self.precision_combo.currentText()
        scheduler = SliceScheduler(
            lambda index, p: translator.translate_slice(prepared, index, precision=p),
            shape[meta.slice_axis],
            final_precision=precision,
            preview_precision="bf16",
            preview="never" if precision == "bf16" else self.preview_combo.currentText(),
            device=str(translator.device),
        )
        self.session = Session(
            translator, prepared, layer, volume, output, uncertainty, scheduler, key=(layer.name, meta.name, precision)
        )
        self.status_label.setText(f"{meta.name} ready on {translator.device}.")
        self.viewer.layers.selection.active = layer
        if self.onthefly_check.isChecked():
            self._start_onthefly()
        self.uncertainty_panel.bind(self.session)
        self.session_ready.emit()

    def close_session(self) -> None:
        """Stop on-the-fly work and forget the session (its layers stay)."""
        self.cancel_volume()
        if self.session is not None:
            self.session.scheduler.stop()
            self.session = None
        self._reference_cache.clear()

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
        session = self.session
        if session is None:
            return None
        point = session.input_layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(np.round(point[session.axis]), 0, session.scheduler.n_slices - 1))

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
        if session.uncertainty is not None and result.scale is not None:
            session.uncertainty.data[where] = result.scale
        if index != self.current_index():
            return
        exact = precision == session.scheduler.final_precision
        # only the slice changed: skip extent and highlight; thumbnails for exact results
        session.output.refresh(extent=False, highlight=False, thumbnail=exact)
        if session.uncertainty is not None:
            if not session.uncertainty_fitted and result.scale is not None:
                overlays.fit_uncertainty_limits(session.uncertainty, result.scale, session.input_slice(index))
                session.uncertainty_fitted = exact
            session.uncertainty.refresh(extent=False, highlight=False, thumbnail=exact)
        self.uncertainty_panel.update_correlation()
        kind = "exact" if exact else "preview"
        self.status_label.setText(f"Slice {index}: {kind} ({precision}).")
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
            session.volume.array,
            axis=session.axis,
            precision=self.precision_combo.currentText(),
            uncertainty=choice if choice in ("tta", "mc_dropout") else None,
            progress=progress.changed.emit,
            cancel=self._cancel.is_set,
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
            units = session.units
            session.uncertainty = overlays.add_uncertainty_layer(
                self.viewer, f"{session.output.name} σ ({units})", sigma.astype(np.float32, copy=False), session.volume, units
            )
            overlays.fit_uncertainty_limits(session.uncertainty, sigma, session.volume.array)
            self.uncertainty_panel.bind(session)
        self._volume_ended(session, True, f"Whole volume translated ({session.output.name}).")

    def _on_volume_error(self, exc: Exception) -> None:
        session = self._volume_session
        if isinstance(exc, Cancelled):
            self._volume_ended(session, False, "Whole-volume translation cancelled.")
            return
        self._volume_ended(session, False, f"Error: {exc}")
        show_error(f"napari-medtrans: {exc}")

    def _teardown(self) -> None:
        """When the widget is destroyed: leave the viewer's events, stop the workers."""
        for emitter, callback in self._viewer_connections:
            emitter.disconnect(callback)
        self._cancel.set()
        if self.session is not None:
            self.session.scheduler.stop()


def _load(
    name: str, device: str, layer: napari.layers.Image, volume: Volume
) -> tuple[Translator, Any, napari.layers.Image, Volume]:
    translator = load_translator(name, device=device)
    limit_torch_threads(translator)
    return translator, translator.prepare(volume.array, axis=translator.metadata.slice_axis), layer, volume


def _tagged(scheduler: SliceScheduler, translator: Translator) -> Any:
    """Run ``scheduler`` and tag each outcome with it (results of old sessions are dropped)."""
    limit_torch_threads(translator)
    for outcome in scheduler.run():
        yield scheduler, outcome


def layer_volume(layer: napari.layers.Image) -> Volume:
    """The volume of an image layer, with the physical geometry of its transform."""
    return volume_from_layer(
        layer.data, layer.metadata, scale=layer.scale, translate=layer.translate, affine=layer.affine.affine_matrix
    )


def _devices() -> list[str]:
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _is_volume_image(layer: napari.layers.Layer) -> bool:
    return isinstance(layer, napari.layers.Image) and layer.ndim == 3 and not layer.rgb and (
        layer.metadata.get("medtrans_role") is None
    )
