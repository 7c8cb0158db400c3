"""Review pseudo labels: one slice queue over all volumes of a summary (lowest confidence first).

Keyboard shortcuts (bound on the viewer while the widget is open):
``A`` accept, ``R`` reject, ``N`` next, ``Shift-N`` previous. The pseudo labels
are an editable Labels layer over the target image, drawn as outlines by
default (toggle) so the anatomy stays readable; the uncertainty
(1 − confidence) is an optional faint overlay, off by default. When the queue moves to a
slice of another volume, that volume's layers replace the current ones. State
lives in :class:`napari_medtrans.review.SummaryReview` (one
:class:`~napari_medtrans.review.ReviewSession` per volume), which autosaves
after every action and resumes at the first pending slice when the same
summary is opened again. Bad files are reported in the widget, never raised.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans.io import layer_geometry
from napari_medtrans.label_names import LabelNamesError, as_features, read_label_names
from napari_medtrans.review import ReviewError, ReviewSession, SummaryReview

from ._label_legend import LabelLegend
from ._layout import make_scrollable
from ._reviewer_name import remember_reviewer, remembered_reviewer

if TYPE_CHECKING:
    import napari

STATUS_COLORS = {"pending": None, "accepted": QColor(60, 170, 90), "rejected": QColor(200, 70, 70)}


UNCERTAINTY_OPACITY = 0.25
"""Opacity of the optional uncertainty heat map: low, so the anatomy stays readable under it."""
LABEL_OUTLINE_WIDTH = 1
"""napari Labels ``contour`` width (pixels) when labels are shown as outlines (the default)."""
ROLE_KEY = "medtrans_review_role"
"""Layer metadata key naming the review volume and role a layer shows (reused when the widget reopens)."""


def _unbind_keys(viewer: napari.viewer.Viewer, keys: list[str]) -> None:
    for key in keys:
        viewer.bind_key(key, None, overwrite=True)


def _disconnect(connections: list[tuple[object, Callable]]) -> None:
    for emitter, callback in connections:
        emitter.disconnect(callback)
    connections.clear()


class ReviewWidget(QWidget):
    """Dock widget for slice-by-slice review of pseudo labels."""

    SHORTCUTS: ClassVar[dict[str, str]] = {"A": "accept", "R": "reject", "N": "next", "Shift-N": "previous"}

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.review: SummaryReview | None = None
        self.session: ReviewSession | None = None
        self.layers: dict[str, object] = {}
        self._connections: list[tuple[object, Callable]] = []

        self.reviewer = QLineEdit(remembered_reviewer())
        self.reviewer.setPlaceholderText("your name (asked once, then remembered)")
        self.reviewer.editingFinished.connect(self._remember_reviewer)
        self.volume = QLabel("")
        self.info = QLabel("Open pseudo labels to start reviewing.")
        self.info.setWordWrap(True)
        self.queue_list = QListWidget()
        self.queue_list.itemClicked.connect(lambda _: self._go(self.queue_list.currentRow()))
        self.show_uncertainty = QCheckBox("Show uncertainty overlay")
        self.show_uncertainty.setToolTip(
            f"1 − confidence as a faint heat map ({UNCERTAINTY_OPACITY:.0%} opacity) over the image; off by default"
        )
        self.show_uncertainty.toggled.connect(self._toggle_uncertainty)
        self.label_outlines = QCheckBox("Labels as outlines")
        self.label_outlines.setToolTip("Outlines keep the anatomy under the labels visible; untick to fill the labels")
        self.label_outlines.setChecked(True)
        self.label_outlines.toggled.connect(self._toggle_outlines)
        self.legend = LabelLegend()
        self.legend.setToolTip("The tissues of the pseudo labels (from the labels file's .names.json) in their colours")
        self.message = QLabel("")
        self.message.setWordWrap(True)

        open_button = QPushButton("Open pseudo labels…")
        open_button.clicked.connect(self._choose_summary)
        export_button = QPushButton("Export reviewed labels…")
        export_button.clicked.connect(self._choose_export)
        buttons = QGridLayout()
        for col, (key, action) in enumerate([("Shift-N", "previous"), ("A", "accept"), ("R", "reject"), ("N", "next")]):
            button = QPushButton(f"{action.capitalize()} ({key})")
            button.clicked.connect(getattr(self, action))
            buttons.addWidget(button, 0, col)

        form = QFormLayout()
        form.addRow("Reviewer", self.reviewer)
        form.addRow("Volume", self.volume)
        layout = QVBoxLayout(self)
        layout.addWidget(open_button)
        layout.addLayout(form)
        layout.addWidget(self.info)
        layout.addWidget(QLabel("Queue over all volumes (lowest confidence first)"))
        layout.addWidget(self.queue_list)
        layout.addLayout(buttons)
        layout.addWidget(self.label_outlines)
        layout.addWidget(self.legend)
        layout.addWidget(self.show_uncertainty)
        layout.addWidget(export_button)
        layout.addWidget(self.message)
        make_scrollable(self)
        self._bind_keys()
        viewer, keys, connections = self.viewer, list(self.SHORTCUTS), self._connections
        self.destroyed.connect(lambda *_: (_unbind_keys(viewer, keys), _disconnect(connections)))

    # -- key bindings ----------------------------------------------------------------
    def _bind_keys(self) -> None:
        for key, action in self.SHORTCUTS.items():
            self.viewer.bind_key(key, self._key_handler(getattr(self, action)), overwrite=True)

    @staticmethod
    def _key_handler(action: Callable[[], None]) -> Callable[[object], None]:
        def handler(_viewer: object) -> None:
            action()

        return handler

    # -- opening ---------------------------------------------------------------------
    def _choose_summary(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open pseudo-label summary", "", "summary.json (summary.json);;JSON (*.json)"
        )
        if path:
            self.open_summary(path)

    def open_summary(self, path: str | Path) -> None:
        """Open a ``medtrans pseudolabel`` summary: one queue over its volumes, first pending slice shown.

        Asks the reviewer's name first when none is known yet (remembered for the next sessions).
        """
        if not self.reviewer.text():
            self._ask_reviewer()
        try:
            review = SummaryReview(path, reviewer=self.reviewer.text() or None)
            review.first_pending()
        except ReviewError as exc:
            self.message.setText(f"Cannot open: {exc}")
            return
        self.review, self.session = review, None
        self._show()
        self.message.setText(f"{len(review.cases)} volumes, {len(review.queue)} slices; autosaving next to the labels")

    def _ask_reviewer(self) -> None:
        name, ok = QInputDialog.getText(
            self, "Reviewer", "Your name, recorded with every review decision:", text=getpass.getuser()
        )
        if ok and name.strip():
            self.reviewer.setText(name.strip())
            self._remember_reviewer()

    def _remember_reviewer(self) -> None:
        name = self.reviewer.text().strip()
        if name and name != remembered_reviewer():
            try:
                remember_reviewer(name)
            except OSError as exc:
                self.message.setText(f"Cannot remember the reviewer name: {exc}")

    def _show(self) -> None:
        """Layers of the current entry's volume (replaced when the volume changes), queue and slice."""
        session = self.review.current
        if session is not self.session:
            self._show_volume(session, self.review.cases[self.review.entry.case].name)
        self._refresh_queue()
        self._show_current()

    def _show_volume(self, session: ReviewSession, name: str) -> None:
        self._remove_layers()
        self.session = session
        self.volume.setText(name)
        geometry = layer_geometry(session.image)
        role = f"{self.review.path}::{name}::"
        self.layers["image"] = self._layer(
            role + "image", session.image.array, self.viewer.add_image, name=f"{name} image", **geometry
        )
        if session.confidence is not None:
            self.layers["uncertainty"] = self._layer(
                role + "uncertainty",
                1.0 - session.confidence,
                self.viewer.add_image,
                name=f"{name} uncertainty",
                colormap="inferno",
                blending="additive",
                opacity=UNCERTAINTY_OPACITY,
                contrast_limits=(0.0, 1.0),
                visible=self.show_uncertainty.isChecked(),
                **geometry,
            )
        labels_layer = self._layer(
            role + "labels",
            session.labels,
            self.viewer.add_labels,
            name=f"{name} pseudo labels",
            opacity=0.8,
            **geometry,
        )
        labels_layer.contour = self._contour()
        names = self._tissue_names(session)
        if names:
            labels_layer.features = as_features(names)  # napari shows the tissue under the cursor
        self.legend.show_layer(labels_layer, names)
        for emitter, callback in [
            (labels_layer.events.paint, self._on_paint),
            (labels_layer.events.set_data, self._on_data),
        ]:
            emitter.connect(callback)
            self._connections.append((emitter, callback))
        self.layers["labels"] = labels_layer
        self.viewer.layers.selection.active = labels_layer

    def _tissue_names(self, session: ReviewSession) -> dict[int, str]:
        """The names of the label values from the labels file's sidecar (a bad sidecar is reported, not raised)."""
        try:
            return read_label_names(session.labels_path)
        except LabelNamesError as exc:
            self.message.setText(f"Tissue names not shown: {exc}")
            return {}

    def _layer(self, role: str, data: np.ndarray, add: Callable[..., object], **kwargs: object) -> object:
        """The viewer's layer of this review role (left by an earlier Review dock) with ``data``, else a new one."""
        for layer in self.viewer.layers:
            if layer.metadata.get(ROLE_KEY) == role:
                layer.data = data
                return layer
        layer = add(data, **kwargs)
        layer.metadata[ROLE_KEY] = role
        return layer

    def _remove_layers(self) -> None:
        _disconnect(self._connections)
        self.legend.clear_layer()
        for layer in self.layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers = {}

    # -- actions -----------------------------------------------------------------------
    def accept(self) -> None:
        """Accept the current slice (with edits) and move to the next pending one."""
        self._act(lambda r: r.accept())

    def reject(self) -> None:
        """Reject the current slice and move to the next pending one."""
        self._act(lambda r: r.reject())

    def next(self) -> None:
        """Go to the next slice in the queue."""
        self._act(lambda r: r.next())

    def previous(self) -> None:
        """Go to the previous slice in the queue."""
        self._act(lambda r: r.previous())

    def _go(self, position: int) -> None:
        self._act(lambda r: r.go(position))

    def _act(self, action: Callable[[SummaryReview], object]) -> None:
        if self.review is None:
            return
        reviewer = self.reviewer.text() or None
        self.review.reviewer = reviewer
        for session in self.review.sessions.values():
            session.reviewer = reviewer or session.reviewer
        try:
            self._sync_edits()
            action(self.review)
            self._show()
        except (ReviewError, OSError) as exc:
            self.message.setText(f"Cannot continue: {exc}")

    def _sync_edits(self) -> None:
        data = self.layers["labels"].data
        if data is not self.session.labels:
            np.copyto(self.session.labels, np.asarray(data))

    def _on_paint(self, _event: object = None) -> None:
        # napari emits ``paint`` before writing a programmatic edit; save once it is in.
        QTimer.singleShot(0, self._save_edits)

    def _on_data(self, _event: object = None) -> None:
        # Undo/redo write the data and refresh (``set_data``) without a ``paint`` event.
        QTimer.singleShot(0, self._update_edited)

    def _update_edited(self) -> None:
        """Save when the edited slices (labels differing from the original) changed, e.g. after an undo."""
        if self.session is None:
            return
        edited = set(self.session.edited_slices().tolist())
        if edited != {st.index for st in self.session.slices if st.edited}:
            self._save_edits()

    def _save_edits(self) -> None:
        if self.session is None or "labels" not in self.layers:
            return
        self._sync_edits()
        try:
            self.session.save()
        except OSError as exc:
            self.message.setText(f"Cannot save the edit: {exc}")
            return
        self._refresh_queue()
        self._show_info()

    def export(self, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, dict[str, Path]] | None:
        """Export accepted/edited labels and the review log of every volume reviewed so far into ``out_dir``.

        Returns the written files per volume name.
        """
        if self.review is None:
            return None
        self._sync_edits()
        written = {}
        try:
            for case, session in sorted(self.review.sessions.items()):
                written[self.review.cases[case].name] = session.export(out_dir, overwrite=overwrite)
        except (ReviewError, OSError) as exc:
            self.message.setText(f"Cannot export: {exc}")
            return None
        self.message.setText(f"Exported the reviewed labels and review logs of {len(written)} volumes to {out_dir}")
        return written

    def existing_exports(self, out_dir: str | Path) -> list[Path]:
        """Files in ``out_dir`` that an export of the volumes reviewed so far would replace."""
        if self.review is None:
            return []
        sessions = self.review.sessions.values()
        return [path for s in sessions for path in s.export_paths(out_dir).values() if path.exists()]

    def export_asking(self, out_dir: str | Path) -> dict[str, dict[str, Path]] | None:
        """Export into ``out_dir``; when that replaces earlier exports, ask first (nothing written on No)."""
        existing = self.existing_exports(out_dir)
        if existing and not self._confirm_replace(out_dir, existing):
            self.message.setText("Export cancelled; the earlier export was kept.")
            return None
        return self.export(out_dir, overwrite=bool(existing))

    def _confirm_replace(self, out_dir: str | Path, existing: list[Path]) -> bool:
        names = ", ".join(path.name for path in existing[:3]) + (" …" if len(existing) > 3 else "")
        answer = QMessageBox.question(
            self,
            "Replace earlier export?",
            f"{out_dir} already holds reviewed labels from an earlier export ({names}).\n"
            "Replace them with the current review?",
            QMessageBox.Yes | QMessageBox.No,
            QMessageBox.No,
        )
        return answer == QMessageBox.Yes

    def _choose_export(self) -> None:
        out_dir = QFileDialog.getExistingDirectory(self, "Export reviewed labels to")
        if out_dir:
            self.export_asking(out_dir)

    # -- display ---------------------------------------------------------------------
    def _toggle_uncertainty(self, visible: bool) -> None:
        if "uncertainty" in self.layers:
            self.layers["uncertainty"].visible = visible

    def _contour(self) -> int:
        return LABEL_OUTLINE_WIDTH if self.label_outlines.isChecked() else 0

    def _toggle_outlines(self, _outlines: bool) -> None:
        if "labels" in self.layers:
            self.layers["labels"].contour = self._contour()

    def _refresh_queue(self) -> None:
        review = self.review
        self.queue_list.blockSignals(True)
        self.queue_list.clear()
        for entry in review.queue:
            status = review.status(entry)
            session = review.sessions.get(entry.case)
            edited = session is not None and session.state(entry.index).edited
            conf = "n/a" if entry.confidence is None else f"{entry.confidence:.3f}"
            item = QListWidgetItem(
                f"{review.cases[entry.case].name}   slice {entry.index:4d}   conf {conf}   "
                f"{status}{'  (edited)' if edited else ''}"
            )
            if STATUS_COLORS[status] is not None:
                item.setForeground(STATUS_COLORS[status])
            self.queue_list.addItem(item)
        self.queue_list.setCurrentRow(review.position)
        self.queue_list.blockSignals(False)

    def _show_current(self) -> None:
        session = self.session
        st = session.state()
        labels_layer = self.layers["labels"]
        centre = (st.index, *(s // 2 for s in session.labels.shape[1:]))
        world = labels_layer.data_to_world(centre)
        self.viewer.dims.set_point(0, world[0])
        self._show_info()

    def _show_info(self) -> None:
        st = self.session.state()
        counts = self.review.counts()
        conf = "n/a" if st.confidence is None else f"{st.confidence:.3f}"
        self.info.setText(
            f"Slice {st.index} ({self.review.position + 1}/{len(self.review.queue)}) · confidence {conf} · "
            f"{st.status}{' · edited' if st.edited else ''}\n"
            f"accepted {counts['accepted']} · rejected {counts['rejected']} · pending {counts['pending']}"
        )
