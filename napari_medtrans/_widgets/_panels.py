"""Sub-panels of the Translate widget: uncertainty, deformation field, comparison.

Each panel is given the widget's :class:`~._translate_state.TranslateState`, not
the widget: it reads the session and the reference from it, subscribes to its
events, and asks for work or reports messages through it. Computations that
take long run in napari workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
)

from napari_medtrans import comparison

from . import overlays
from ._threads import call_limited

if TYPE_CHECKING:
    from ._translate_state import Session, TranslateState

DIFFERENCE_LIMIT_HU = 250.0
NO_UNCERTAINTY = "No uncertainty yet."


def _slider(value: int) -> QSlider:
    slider = QSlider(Qt.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(value)
    return slider


class UncertaintyPanel(QGroupBox):
    """Display controls of the σ overlay and its agreement with the real error."""

    def __init__(self, state: TranslateState) -> None:
        super().__init__("Uncertainty overlay")
        self.state = state
        self.opacity = _slider(80)
        self.blending = QComboBox()
        self.blending.addItems(["translucent", "additive"])
        self.colormap = QComboBox()
        self.colormap.addItems(list(overlays.UNCERTAINTY_COLORMAPS))
        self.legend = QLabel(NO_UNCERTAINTY)
        self.legend.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Opacity", self.opacity)
        form.addRow("Blending", self.blending)
        form.addRow("Colormap", self.colormap)
        form.addRow(self.legend)
        self.opacity.valueChanged.connect(lambda v: self._style(opacity=v / 100))
        self.blending.currentTextChanged.connect(lambda v: self._style(blending=v))
        self.colormap.currentTextChanged.connect(lambda v: self._style(colormap=overlays.fading_colormap(v)))
        state.session_changed.connect(self.bind)
        state.slice_shown.connect(self.update_correlation)
        state.reference_changed.connect(self.update_correlation)

    def bind(self, session: Session | None) -> None:
        """Apply the panel's settings to the session's σ layer; reset when there is none."""
        if session is None or session.uncertainty is None:
            self.reset()
            return
        if session.uncertainty is not None:
            self._style(
                opacity=self.opacity.value() / 100,
                blending=self.blending.currentText(),
                colormap=overlays.fading_colormap(self.colormap.currentText()),
            )
            session.uncertainty.events.visible.connect(self.update_correlation)
        self.update_correlation()

    def reset(self) -> None:
        """Forget the previous session's legend and hide its text on the canvas."""
        self.legend.setText(NO_UNCERTAINTY)
        overlay = self.state.viewer.text_overlay
        overlay.text, overlay.visible = "", False

    def _style(self, **style: Any) -> None:
        session = self.state.session
        if session is not None and session.uncertainty is not None:
            for name, value in style.items():
                setattr(session.uncertainty, name, value)

    def correlation(self) -> float | None:
        """Pearson r of σ vs |translation − reference| in the head on the current slice."""
        session, reference = self.state.session, self.state.reference_array()
        index = self.state.current_index()
        if session is None or session.uncertainty is None or reference is None or index is None:
            return None
        where = [slice(None)] * 3
        where[session.axis] = slice(index, index + 1)
        where = tuple(where)
        sigma, output, source = (
            np.moveaxis(a[where], session.axis, 0)
            for a in (session.uncertainty.data, session.output.data, session.volume.array)
        )
        error = np.abs(output - np.moveaxis(reference[where], session.axis, 0))
        return float(comparison.slice_pearson(sigma, error, comparison.body_mask(source))[0])

    def update_correlation(self, event: Any = None) -> None:
        """Refresh the legend (units, r on the current slice) and the canvas text.

        The canvas text shows while the σ layer is visible.
        """
        session = self.state.session
        if session is None or session.uncertainty is None:
            return
        canvas = f"σ in {session.units}"
        text = canvas + " (colorbar, top right)"
        r = self.correlation()
        if r is not None:
            value = f"{r:.2f}" if np.isfinite(r) else "undefined"
            text += f"; r(σ, |error|) in the head, slice {self.state.current_index()}: {value}"
            canvas += f"; r(σ, |error|) = {value}"  # short: the edges' centres carry the orientation letters
        self.legend.setText(text)
        overlay = self.state.viewer.text_overlay
        overlay.text = canvas
        overlay.position = "top_left"
        overlay.visible = session.uncertainty.visible


class FieldPanel(QGroupBox):
    """Registration of the translation to the reference, shown as a field."""

    def __init__(self, state: TranslateState) -> None:
        super().__init__("Deformation field")
        self.state = state
        self.step = QSpinBox()
        self.step.setRange(1, 64)
        self.step.setValue(8)
        self.step.setSuffix(" px")
        self.button = QPushButton("Register translation to reference")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.layers: dict[str, Any] = {}
        self._field: np.ndarray | None = None
        self._session: Session | None = None
        form = QFormLayout(self)
        form.addRow("Vector grid", self.step)
        form.addRow(self.button)
        form.addRow(self.label)
        self.button.clicked.connect(self.register)
        self.step.valueChanged.connect(self._regrid)
        state.chosen_changed.connect(self._explain)
        state.reference_changed.connect(self._explain)
        state.session_changed.connect(self._explain)
        self._explain()

    def _problem(self) -> str | None:
        """Why Register cannot run with the current choices, or None."""
        chosen = self.state.chosen
        if chosen is None or "field" not in chosen.outputs:
            return "The chosen translator has no registration network: choose one that outputs a field (e.g. RegGAN)."
        if self.state.reference is None:
            return "Choose a reference layer to register the translation to."
        return None

    def _explain(self, *args: Any) -> None:
        """Enable Register and say what it will do (or what is missing) for the current choices."""
        problem = self._problem()
        self.button.setEnabled(problem is None)
        if problem is None:
            session = self.state.session
            loaded = session is not None and session.translator.metadata.name == self.state.chosen.name
            prefix = "" if loaded else "Loads the translator, "
            self.label.setText(f"{prefix}translates the whole volume if needed, then registers it to the reference.")
        else:
            self.label.setText(problem)

    def register(self) -> None:
        """Translate the whole volume if needed (loading the translator), then compute the field in a worker."""
        problem = self._problem()
        if problem is not None:
            self.label.setText(problem)
            return
        session = self.state.session
        if session is None or not session.complete:
            self.label.setText("Translating the whole volume first …")
            self.state.volume_finished.connect(self._after_volume)
            self.state.volume_requested.emit()
            return
        if session.axis != 0:
            self.label.setText("Field overlays support translators that slice along axis 0 (z) only.")
            return
        self.label.setText("Registering …")
        worker = create_worker(
            call_limited,
            session.translator,
            "register",
            session.output.data,
            self.state.reference_array(),
            spacing=session.volume.spacing,
            _ignore_errors=True,
            _start_thread=False,
        )
        self._session = session
        worker.returned.connect(self._show)
        worker.errored.connect(self._error)
        worker.start()

    def _after_volume(self, finished: bool) -> None:
        self.state.volume_finished.disconnect(self._after_volume)
        if finished:
            self.register()

    def _error(self, exc: Exception) -> None:
        self.label.setText(f"Error: {exc}")

    def _show(self, result: Any) -> None:
        session = self._session
        self._field = np.asarray(result.field, np.float32)
        self.layers = overlays.add_field_layers(
            self.state.viewer, self._field, result.warped, session.volume, self.step.value(), **session.owner
        )
        magnitude = comparison.field_magnitude(self._field)
        self.label.setText(f"|field|: median {np.median(magnitude):.2f} mm, max {magnitude.max():.2f} mm")
        self.state.viewer.layers.selection.active = self.layers["vectors"]

    def _regrid(self, step: int) -> None:
        session = self.state.session
        if self._field is not None and session is not None and "vectors" in self.layers:
            overlays.upsert_vectors(self.state.viewer, self._field, session.volume, step, **session.owner)


class ComparePanel(QGroupBox):
    """Translation vs reference: side by side, checkerboard or curtain, difference."""

    def __init__(self, state: TranslateState) -> None:
        super().__init__("Compare with reference")
        self.state = state
        self.side_by_side = QCheckBox("Side by side (grid)")
        self.mode = QComboBox()
        self.mode.addItems(["checkerboard", "curtain"])
        self.tile = QSpinBox()
        self.tile.setRange(2, 128)
        self.tile.setValue(16)
        self.tile.setSuffix(" px")
        self.position = _slider(50)
        self.show_button = QPushButton("Show overlay")
        self.difference_button = QPushButton("Difference layer")
        form = QFormLayout(self)
        form.addRow(self.side_by_side)
        form.addRow("Overlay", self.mode)
        form.addRow("Tile", self.tile)
        form.addRow("Curtain", self.position)
        form.addRow(self.show_button)
        form.addRow(self.difference_button)
        self.side_by_side.toggled.connect(self._grid)
        self.show_button.clicked.connect(self.show_composite)
        self.difference_button.clicked.connect(self.show_difference)
        self.tile.valueChanged.connect(self._update_if_shown)
        self.position.valueChanged.connect(self._update_if_shown)
        self.mode.currentTextChanged.connect(self._update_if_shown)

    def _grid(self, on: bool) -> None:
        grid = self.state.viewer.grid
        grid.stride, grid.enabled = 1, on
        self.state.viewer.reset_view()

    def _pair(self) -> tuple[Session, np.ndarray] | None:
        session, reference = self.state.session, self.state.reference_array()
        if session is None or reference is None:
            self.state.status.emit("Translate first and choose a reference layer.")
            return None
        return session, reference

    def composite_name(self, session: Session) -> str:
        """Name of the comparison layer of a session."""
        return overlays.short_name("vs reference", session.owner["translator"], session.units)

    def show_composite(self) -> None:
        """Checkerboard or curtain of translation and reference in one layer."""
        pair = self._pair()
        if pair is None:
            return
        session, reference = pair
        a, b = session.output.data, reference
        if self.mode.currentText() == "checkerboard":
            mixed = comparison.checkerboard(a, b, self.tile.value())
        else:
            mixed = comparison.curtain(a, b, self.position.value() / 100)
        layer = overlays.upsert_image(
            self.state.viewer,
            self.composite_name(session),
            mixed,
            session.volume,
            role="comparison",
            **session.owner,
            colormap="gray",
            contrast_limits=session.output.contrast_limits,
            modality=session.translator.metadata.target,
        )
        overlays.show_value_units(layer, session.units)

    def _update_if_shown(self, *args: Any) -> None:
        session = self.state.session
        if (
            session is not None
            and self.state.reference is not None
            and overlays.role_layer(self.state.viewer, "comparison", session.owner["source"]) is not None
        ):
            self.show_composite()

    def show_difference(self) -> None:
        """Translation − reference, in the target's units, with a diverging colormap."""
        pair = self._pair()
        if pair is None:
            return
        session, reference = pair
        name = overlays.short_name("Δ reference", session.owner["translator"], session.units)
        layer = overlays.upsert_image(
            self.state.viewer,
            name,
            session.output.data - reference,
            session.volume,
            role="difference",
            **session.owner,
            colormap="PiYG",
            contrast_limits=(-DIFFERENCE_LIMIT_HU, DIFFERENCE_LIMIT_HU),
        )
        layer.metadata["units"] = session.units
        overlays.show_value_units(layer, session.units)
        layer.colorbar.visible = True
