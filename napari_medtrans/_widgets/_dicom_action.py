"""The Translate widget's "Save as DICOM…" action: the translated CT as a new DICOM CT series.

When the input layer was read from a DICOM series, the new series joins that
series' study (:func:`napari_medtrans.dicom_export.export_dicom` with ``like``);
otherwise a new study is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QFileDialog, QPushButton

from napari_medtrans.dicom_export import DicomExportError, export_dicom
from napari_medtrans.io import VolumeReadError, volume_stem

if TYPE_CHECKING:
    from .translate import TranslateWidget


def ask_folder(parent: TranslateWidget, suggestion: Path) -> Path | None:
    """Ask for the (new) folder of the series; None when cancelled."""
    name, _ = QFileDialog.getSaveFileName(parent, "Save synthetic CT as a DICOM series (new folder)", str(suggestion))
    return Path(name) if name else None


def source_series(metadata: dict) -> Path | None:
    """The DICOM series folder an input layer was read from, if it was one."""
    path = (metadata.get("medtrans") or {}).get("path")
    if not path:
        return None
    path = Path(path)
    if path.is_dir():
        return path
    return path.parent if path.suffix.lower() in (".dcm", ".ima") else None


class SaveDicomButton(QPushButton):
    """Writes the host's finished CT translation as a DICOM series."""

    def __init__(self, host: TranslateWidget) -> None:
        super().__init__("Save as DICOM…")
        self.host = host
        self.setToolTip(
            "Write the whole-volume synthetic CT as a new CT series (of the input's study, "
            "when the input is a DICOM series)"
        )
        self.clicked.connect(self._on_clicked)

    def _on_clicked(self) -> None:
        self.save()

    def save(self) -> Path | None:
        """Ask for a folder and write the series; returns the folder (None when nothing was written)."""
        session = self.host.session
        if session is None or not session.complete or session.translator.metadata.target != "CT":
            self.host.status_label.setText("Translate the whole volume to CT first, then save it as DICOM.")
            return None
        like = source_series(session.input_layer.metadata)
        stem = volume_stem(like.name if like else session.input_layer.name)
        out = ask_folder(self.host, Path.home() / f"{stem}_sCT_dicom")
        if out is None:
            return None
        volume = session.volume.with_array(session.output.data, modality="CT")
        try:
            files = export_dicom(volume, out, like=like, translator=session.translator.metadata.name)
        except (DicomExportError, VolumeReadError, FileExistsError, OSError) as exc:
            self.host.status_label.setText(f"Error: {exc}")
            return None
        self.host.status_label.setText(f"Saved {len(files)} CT slices to {out}.")
        return out
