"""Review pseudo labels: a slice queue (lowest confidence first) with accept/reject.

Keyboard shortcuts (bound on the viewer while the widget is open):
``A`` accept, ``R`` reject, ``N`` next, ``Shift-N`` previous. The pseudo labels
are an editable Labels layer over the target image; the uncertainty
(1 − confidence) is an overlay that can be toggled. State lives in
:class:`napari_medtrans.review.ReviewSession`, which autosaves after every
action and resumes when the same labels are opened again.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans.io import layer_geometry
from napari_medtrans.review import ReviewError, ReviewSession

from ._layout import make_scrollable

if TYPE_CHECKING:
    import napari

STATUS_COLORS = {"pending": None, "accepted": QColor(60, 170, 90), "rejected": QColor(200, 70, 70)}


def _unbind_keys(viewer: napari.viewer.Viewer, keys: list[str]) -> None:
    for key in keys:
        viewer.bind_key(key, None, overwrite=True)


class ReviewWidget(QWidget):
    """Dock widget for slice-by-slice review of pseudo labels."""

    SHORTCUTS: ClassVar[dict[str, str]] = {"A": "accept", "R": "reject", "N": "next", "Shift-N": "previous"}

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: ReviewSession | None = None
        self.layers: dict[str, object] = {}
        self._cases: list[dict] = []
        self._summary_dir: Path | None = None

        self.reviewer = QLineEdit(getpass.getuser())
        self.case_combo = QComboBox()
        self.case_combo.activated.connect(lambda i: self.open_summary_case(i))
        self.info = QLabel("Open pseudo labels to start reviewing.")
        self.info.setWordWrap(True)
        self.queue_list = QListWidget()
        self.queue_list.itemClicked.connect(lambda _: self._go(self.queue_list.currentRow()))
        self.show_uncertainty = QCheckBox("Show uncertainty overlay")
        self.show_uncertainty.setChecked(True)
        self.show_uncertainty.toggled.connect(self._toggle_uncertainty)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        open_button = QPushButton("Open pseudo labels…")
        open_button.clicked.connect(self._choose_summary)
        export_button = QPushButton("Export reviewed labels…")
        export_button.clicked.connect(self._choose_export)
        buttons = QGridLayout()
        for col, (key, action) in enumerate(
            [("Shift-N", "previous"), ("A", "accept"), ("R", "reject"), ("N", "next")]
        ):
            button = QPushButton(f"{action.capitalize()} ({key})")
            button.clicked.connect(getattr(self, action))
            buttons.addWidget(button, 0, col)

        form = QFormLayout()
        form.addRow("Reviewer", self.reviewer)
        form.addRow("Volume", self.case_combo)
        layout = QVBoxLayout(self)
        layout.addWidget(open_button)
        layout.addLayout(form)
        layout.addWidget(self.info)
        layout.addWidget(QLabel("Queue (lowest confidence first)"))
        layout.addWidget(self.queue_list)
        layout.addLayout(buttons)
        layout.addWidget(self.show_uncertainty)
        layout.addWidget(export_button)
        layout.addWidget(self.message)
        make_scrollable(self)
        self._bind_keys()
        viewer, keys = self.viewer, list(self.SHORTCUTS)
        self.destroyed.connect(lambda *_: _unbind_keys(viewer, keys))

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
        """List the volumes of a ``medtrans pseudolabel`` summary (least confident first)."""
        path = Path(path)
        summary = json.loads(path.read_text())
        self._summary_dir = path.parent
        self._cases = sorted(summary["cases"], key=lambda c: c.get("mean_confidence", 1.0))
        self.case_combo.clear()
        for case in self._cases:
            self.case_combo.addItem(f"{case['name']}  (confidence {case.get('mean_confidence', float('nan')):.3f})")
        if self._cases:
            self.open_summary_case(0)

    def open_summary_case(self, index: int) -> None:
        """Open the ``index``-th volume of the loaded summary."""
        case = self._cases[index]
        root = self._summary_dir
        self.open_case(
            root / case["image"],
            root / case["labels"],
            root / case["confidence"] if case.get("confidence") else None,
            name=case["name"],
        )

    def open_case(
        self,
        image_path: str | Path,
        labels_path: str | Path,
        confidence_path: str | Path | None = None,
        *,
        name: str | None = None,
    ) -> None:
        """Open one volume for review (resumes from its sidecar if there is one)."""
        try:
            session = ReviewSession.open(
                image_path, labels_path, confidence_path, reviewer=self.reviewer.text() or None
            )
        except (ReviewError, OSError, ValueError) as exc:
            self.message.setText(f"Cannot open: {exc}")
            return
        self._remove_layers()
        self.session = session
        name = name or Path(labels_path).name.split(".")[0]
        geometry = layer_geometry(session.image)
        self.layers["image"] = self.viewer.add_image(session.image.array, name=f"{name} image", **geometry)
        if session.confidence is not None:
            self.layers["uncertainty"] = self.viewer.add_image(
                1.0 - session.confidence,
                name=f"{name} uncertainty",
                colormap="inferno",
                blending="additive",
                opacity=0.6,
                contrast_limits=(0.0, 1.0),
                visible=self.show_uncertainty.isChecked(),
                **geometry,
            )
        labels_layer = self.viewer.add_labels(session.labels, name=f"{name} pseudo labels", opacity=0.5, **geometry)
        labels_layer.events.paint.connect(self._on_paint)
        self.layers["labels"] = labels_layer
        self.viewer.layers.selection.active = labels_layer
        self._refresh_queue()
        self._show_current()
        self.message.setText(f"Autosaving to {session.state_path.name}")

    def _remove_layers(self) -> None:
        for layer in self.layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers = {}

    # -- actions -----------------------------------------------------------------------
    def accept(self) -> None:
        """Accept the current slice (with edits) and move to the next pending one."""
        self._act(lambda s: s.accept())

    def reject(self) -> None:
        """Reject the current slice and move to the next pending one."""
        self._act(lambda s: s.reject())

    def next(self) -> None:
        """Go to the next slice in the queue."""
        self._act(lambda s: s.next())

    def previous(self) -> None:
        """Go to the previous slice in the queue."""
        self._act(lambda s: s.previous())

    def _go(self, position: int) -> None:
        self._act(lambda s: s.go(position))

    def _act(self, action: Callable[[ReviewSession], int]) -> None:
        if self.session is None:
            return
        self.session.reviewer = self.reviewer.text() or self.session.reviewer
        self._sync_edits()
        action(self.session)
        self._refresh_queue()
        self._show_current()

    def _sync_edits(self) -> None:
        data = self.layers["labels"].data
        if data is not self.session.labels:
            np.copyto(self.session.labels, np.asarray(data))

    def _on_paint(self, _event: object = None) -> None:
        # napari emits ``paint`` before writing a programmatic edit; save once it is in.
        QTimer.singleShot(0, self._save_edits)

    def _save_edits(self) -> None:
        if self.session is None or "labels" not in self.layers:
            return
        self._sync_edits()
        self.session.save()
        self._refresh_queue()

    def export(self, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path] | None:
        """Export accepted/edited labels and the review log into ``out_dir``."""
        if self.session is None:
            return None
        self._sync_edits()
        try:
            paths = self.session.export(out_dir, overwrite=overwrite)
        except (ReviewError, FileExistsError) as exc:
            self.message.setText(str(exc))
            return None
        self.message.setText(f"Exported {paths['labels'].name} and review log to {Path(out_dir)}")
        return paths

    def _choose_export(self) -> None:
        out_dir = QFileDialog.getExistingDirectory(self, "Export reviewed labels to")
        if out_dir:
            self.export(out_dir)

    # -- display ---------------------------------------------------------------------
    def _toggle_uncertainty(self, visible: bool) -> None:
        if "uncertainty" in self.layers:
            self.layers["uncertainty"].visible = visible

    def _refresh_queue(self) -> None:
        session = self.session
        self.queue_list.blockSignals(True)
        self.queue_list.clear()
        for index in session.queue:
            st = session.slices[index]
            conf = "n/a" if st.confidence is None else f"{st.confidence:.3f}"
            item = QListWidgetItem(f"slice {index:4d}   conf {conf}   {st.status}{'  (edited)' if st.edited else ''}")
            if STATUS_COLORS[st.status] is not None:
                item.setForeground(STATUS_COLORS[st.status])
            self.queue_list.addItem(item)
        self.queue_list.setCurrentRow(session.position)
        self.queue_list.blockSignals(False)

    def _show_current(self) -> None:
        session = self.session
        st = session.state()
        labels_layer = self.layers["labels"]
        centre = (st.index, *(s // 2 for s in session.labels.shape[1:]))
        world = labels_layer.data_to_world(centre)
        self.viewer.dims.set_point(0, world[0])
        counts = session.counts()
        conf = "n/a" if st.confidence is None else f"{st.confidence:.3f}"
        self.info.setText(
            f"Slice {st.index} ({session.position + 1}/{len(session.queue)}) · confidence {conf} · "
            f"{st.status}{' · edited' if st.edited else ''}\n"
            f"accepted {counts['accepted']} · rejected {counts['rejected']} · pending {counts['pending']}"
        )
