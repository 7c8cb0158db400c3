"""Review of pseudo labels, slice by slice (Qt-free state behind the Review widget).

A :class:`ReviewSession` holds one target image, its pseudo labels (a working
copy the annotator may edit; the original file is never written) and an optional
per-voxel confidence. Slices (array axis 0) form a queue ordered by lowest
confidence first. Every action (accept, reject, move) autosaves a sidecar next
to the labels file:

- ``<labels stem>.review.json``: per-slice status, edited flag, reviewer and
  time, queue position and an action history;
- ``<labels stem>.review-edits.npz``: the edited slices.

Opening the same labels again resumes from the sidecar. :meth:`ReviewSession.export`
writes the accepted slices as a new label volume with the target image's
geometry, plus a CSV and JSON review log.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import io as _io
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from napari_medtrans.confidence import slice_confidence
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json

STATUSES = ("pending", "accepted", "rejected")
SIDECAR_VERSION = 1
_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


class ReviewError(ValueError):
    """A review cannot be opened or exported (mismatched files, refused overwrite)."""


@dataclass
class SliceState:
    """Review state of one slice (index along array axis 0)."""

    index: int
    confidence: float | None
    status: str = "pending"
    edited: bool = False
    reviewer: str | None = None
    reviewed_at: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def sidecar_paths(labels_path: str | Path) -> tuple[Path, Path]:
    """The review state file and the edits file that belong to a labels file."""
    path = Path(labels_path)
    stem = _stem(path)
    return path.with_name(f"{stem}.review.json"), path.with_name(f"{stem}.review-edits.npz")


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class ReviewSession:
    """Slice-wise review of one pseudo-label volume; see the module docstring."""

    def __init__(
        self,
        image: Volume,
        labels: Volume,
        confidence: np.ndarray | None = None,
        *,
        labels_path: str | Path,
        reviewer: str | None = None,
    ) -> None:
        if labels.array.shape != image.array.shape:
            raise ReviewError(
                f"labels {labels.array.shape} and image {image.array.shape} differ in shape"
            )
        if confidence is not None and confidence.shape != image.array.shape:
            raise ReviewError(
                f"confidence {confidence.shape} and image {image.array.shape} differ in shape"
            )
        self.image = image
        self.original = np.array(labels.array, copy=True)
        self.original.setflags(write=False)
        self.labels = np.array(self.original, copy=True)
        self.confidence = confidence
        self.labels_path = Path(labels_path)
        self.state_path, self.edits_path = sidecar_paths(self.labels_path)
        self.reviewer = reviewer or getpass.getuser()
        self._digest = _digest(self.original)
        self.slices = self._initial_states()
        self.queue = self._order_queue()
        self.position = 0
        self.history: list[dict] = []
        if self.state_path.exists():
            self._resume()

    @classmethod
    def open(
        cls,
        image_path: str | Path,
        labels_path: str | Path,
        confidence_path: str | Path | None = None,
        *,
        reviewer: str | None = None,
    ) -> ReviewSession:
        """Read the target image, pseudo labels and confidence files and resume if possible."""
        confidence = None
        if confidence_path is not None:
            confidence = read_volume(confidence_path).array.astype(np.float32)
        return cls(
            read_volume(image_path),
            read_volume(labels_path),
            confidence,
            labels_path=labels_path,
            reviewer=reviewer,
        )

    # -- queue -----------------------------------------------------------------
    def _initial_states(self) -> list[SliceState]:
        n = self.original.shape[0]
        if self.confidence is None:
            return [SliceState(i, None) for i in range(n)]
        scores = slice_confidence(self.confidence, self.original)
        return [SliceState(i, round(float(s), 6)) for i, s in enumerate(scores)]

    def _order_queue(self) -> list[int]:
        return sorted(
            range(len(self.slices)),
            key=lambda i: (self.slices[i].confidence if self.slices[i].confidence is not None else 1.0, i),
        )

    @property
    def current(self) -> int:
        """Slice index at the current queue position."""
        return self.queue[self.position]

    def state(self, index: int | None = None) -> SliceState:
        """State of slice ``index`` (default: the current slice)."""
        return self.slices[self.current if index is None else index]

    def counts(self) -> dict[str, int]:
        """Number of slices per status."""
        return {s: sum(st.status == s for st in self.slices) for s in STATUSES}

    def go(self, position: int) -> int:
        """Move to a queue position (clamped); autosave; return the slice index."""
        self.position = int(np.clip(position, 0, len(self.queue) - 1))
        self.save()
        return self.current

    def go_to_slice(self, index: int) -> int:
        """Move to the queue position of slice ``index``."""
        return self.go(self.queue.index(index))

    def next(self) -> int:
        """Move to the next slice in the queue."""
        return self.go(self.position + 1)

    def previous(self) -> int:
        """Move to the previous slice in the queue."""
        return self.go(self.position - 1)

    def next_pending(self) -> int:
        """Move to the next pending slice after the current one (wrapping); stay if none."""
        n = len(self.queue)
        for step in range(1, n + 1):
            pos = (self.position + step) % n
            if self.slices[self.queue[pos]].status == "pending":
                return self.go(pos)
        return self.go(self.position)

    # -- decisions -------------------------------------------------------------
    def accept(self, *, advance: bool = True) -> int:
        """Accept the current slice (with any edits); move to the next pending slice."""
        return self._decide("accepted", advance)

    def reject(self, *, advance: bool = True) -> int:
        """Reject the current slice; move to the next pending slice."""
        return self._decide("rejected", advance)

    def _decide(self, status: str, advance: bool) -> int:
        state = self.state()
        state.status, state.reviewer, state.reviewed_at = status, self.reviewer, _now()
        self.history.append(
            {"action": status, "index": state.index, "reviewer": self.reviewer, "at": state.reviewed_at}
        )
        return self.next_pending() if advance else self.go(self.position)

    def edited_slices(self) -> np.ndarray:
        """Indices of slices whose working labels differ from the original pseudo labels."""
        n = self.labels.shape[0]
        return np.flatnonzero((self.labels != self.original).reshape(n, -1).any(axis=1))

    # -- persistence -------------------------------------------------------------
    def save(self) -> None:
        """Autosave edits and state next to the labels file (atomic writes)."""
        edited = set(self.edited_slices().tolist())
        for st in self.slices:
            st.edited = st.index in edited
        buffer = _io.BytesIO()
        np.savez_compressed(buffer, **{f"slice_{i}": self.labels[i] for i in sorted(edited)})
        atomic_write_bytes(self.edits_path, buffer.getvalue())
        atomic_write_json(self.state_path, self.to_dict())

    def to_dict(self) -> dict:
        """The sidecar content."""
        return {
            "version": SIDECAR_VERSION,
            "labels": self.labels_path.name,
            "image": self.image.path,
            "labels_sha256": self._digest,
            "axis": 0,
            "position": self.position,
            "queue": self.queue,
            "updated_at": _now(),
            "counts": self.counts(),
            "slices": [asdict(st) for st in self.slices],
            "history": self.history,
        }

    def _resume(self) -> None:
        state = json.loads(self.state_path.read_text())
        if state.get("labels_sha256") != self._digest:
            raise ReviewError(
                f"{self.state_path} belongs to different labels than {self.labels_path}; "
                "move it away to start a new review"
            )
        for saved in state["slices"]:
            st = self.slices[saved["index"]]
            st.status, st.reviewer, st.reviewed_at = saved["status"], saved["reviewer"], saved["reviewed_at"]
        if self.edits_path.exists():
            with np.load(self.edits_path, allow_pickle=False) as edits:
                for key in edits.files:
                    self.labels[int(key.removeprefix("slice_"))] = edits[key]
        self.history = list(state.get("history", []))
        self.position = int(np.clip(state.get("position", 0), 0, len(self.queue) - 1))
        edited = set(self.edited_slices().tolist())
        for st in self.slices:
            st.edited = st.index in edited

    # -- export --------------------------------------------------------------------
    def reviewed_labels(self, statuses: tuple[str, ...] = ("accepted",)) -> np.ndarray:
        """Working labels on slices with one of ``statuses``, 0 elsewhere."""
        keep = np.array([st.status in statuses for st in self.slices])
        return np.where(keep[:, None, None], self.labels, 0).astype(self.original.dtype)

    def export(self, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
        """Write accepted (incl. edited) labels with the image geometry and the review log.

        Files: ``<stem>_reviewed.nii.gz``, ``<stem>_review_log.csv`` and
        ``<stem>_review_log.json`` in ``out_dir``. Existing files are only
        replaced with ``overwrite=True``. The names differ from the labels file
        and its sidecars by construction, so the original is never replaced.
        """
        self.save()
        out = Path(out_dir)
        stem = _stem(self.labels_path)
        paths = {
            "labels": out / f"{stem}_reviewed.nii.gz",
            "csv": out / f"{stem}_review_log.csv",
            "json": out / f"{stem}_review_log.json",
        }
        for path in paths.values():
            if path.exists() and not overwrite:
                raise ReviewError(f"{path} exists; pass overwrite=True to replace it")
        out.mkdir(parents=True, exist_ok=True)
        volume = replace(self.image.with_array(self.reviewed_labels()), modality=None)  # labels: no modality
        write_volume(volume, paths["labels"], overwrite=overwrite)
        atomic_write_bytes(paths["csv"], self._log_csv().encode())
        log = self.to_dict() | {"exported_labels": paths["labels"].name, "exported_at": _now()}
        atomic_write_json(paths["json"], log)
        return paths

    def _log_csv(self) -> str:
        buffer = _io.StringIO()
        fields = list(asdict(self.slices[0]))
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for index in self.queue:
            writer.writerow(asdict(self.slices[index]))
        return buffer.getvalue()
