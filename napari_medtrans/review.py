"""Review of pseudo labels, slice by slice (Qt-free state behind the Review widget).

A :class:`ReviewSession` holds one target image, its pseudo labels (a working
copy the annotator may edit; the original file is never written) and an optional
per-voxel confidence. Slices (array axis 0) form a queue ordered by lowest
confidence first. Every action (accept, reject, move) autosaves a sidecar next
to the labels file:

- ``<labels stem>.review.json``: per-slice status, edited flag, reviewer and
  time, queue position and an action history;
- ``<labels stem>.review-edits.npz``: the edited slices.

Opening the same labels again resumes from the sidecar; a sidecar of another
shape is refused with an error naming it. :meth:`ReviewSession.export`
writes the accepted slices as a new label volume with the target image's
geometry, plus a CSV and JSON review log.

:class:`SummaryReview` reviews every volume of a ``medtrans pseudolabel``
``summary.json`` through one queue of (volume, slice) entries, lowest
confidence first. The summary's file names must stay inside its folder
(absolute paths and ``..`` are refused), so a summary can neither read nor
write (sidecars) elsewhere.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import io as _io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from napari_medtrans.confidence import slice_confidence
from napari_medtrans.io import Volume, read_volume, volume_stem, write_volume
from napari_medtrans.label_names import read_label_names, write_label_names
from napari_medtrans.rundir import atomic_write_bytes, atomic_write_json

STATUSES = ("pending", "accepted", "rejected")
SIDECAR_VERSION = 1


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


def sidecar_paths(labels_path: str | Path) -> tuple[Path, Path]:
    """The review state file and the edits file that belong to a labels file."""
    path = Path(labels_path)
    stem = volume_stem(path.name)
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
        slice_scores: Sequence[float | None] | None = None,
    ) -> None:
        """``slice_scores`` replace the per-slice confidence derived from ``confidence`` (one per slice)."""
        if labels.array.shape != image.array.shape:
            raise ReviewError(f"labels {labels.array.shape} and image {image.array.shape} differ in shape")
        if confidence is not None and confidence.shape != image.array.shape:
            raise ReviewError(f"confidence {confidence.shape} and image {image.array.shape} differ in shape")
        if slice_scores is not None and len(slice_scores) != image.array.shape[0]:
            raise ReviewError(f"{len(slice_scores)} slice scores for {image.array.shape[0]} slices")
        self._slice_scores = slice_scores
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
        slice_scores: Sequence[float | None] | None = None,
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
            slice_scores=slice_scores,
        )

    # -- queue -----------------------------------------------------------------
    def _initial_states(self) -> list[SliceState]:
        n = self.original.shape[0]
        scores: Sequence[float | None] | np.ndarray
        if self._slice_scores is not None:
            scores = self._slice_scores
        elif self.confidence is not None:
            scores = slice_confidence(self.confidence, self.original)
        else:
            scores = [None] * n
        return [SliceState(i, None if s is None else round(float(s), 6)) for i, s in enumerate(scores)]

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
        state = read_sidecar(self.state_path, len(self.slices))
        if state.get("labels_sha256") != self._digest:
            raise ReviewError(
                f"{self.state_path} belongs to different labels than {self.labels_path}; "
                "move it away to start a new review"
            )
        for saved in state["slices"]:
            st = self.slices[saved["index"]]
            st.status, st.reviewer, st.reviewed_at = saved["status"], saved["reviewer"], saved["reviewed_at"]
        if self.edits_path.exists():
            for index, labels in _read_edits(self.edits_path, self.original).items():
                self.labels[index] = labels
        self.history = list(state["history"])
        self.position = int(np.clip(state["position"], 0, len(self.queue) - 1))
        edited = set(self.edited_slices().tolist())
        for st in self.slices:
            st.edited = st.index in edited

    # -- export --------------------------------------------------------------------
    def reviewed_labels(self, statuses: tuple[str, ...] = ("accepted",)) -> np.ndarray:
        """Working labels on slices with one of ``statuses``, 0 elsewhere."""
        keep = np.array([st.status in statuses for st in self.slices])
        return np.where(keep[:, None, None], self.labels, 0).astype(self.original.dtype)

    def export_paths(self, out_dir: str | Path) -> dict[str, Path]:
        """The files :meth:`export` writes into ``out_dir``: reviewed labels, CSV and JSON review log."""
        out = Path(out_dir)
        stem = volume_stem(self.labels_path.name)
        return {
            "labels": out / f"{stem}_reviewed.nii.gz",
            "csv": out / f"{stem}_review_log.csv",
            "json": out / f"{stem}_review_log.json",
        }

    def export(self, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
        """Write accepted (incl. edited) labels with the image geometry and the review log.

        Files: ``<stem>_reviewed.nii.gz``, ``<stem>_review_log.csv`` and
        ``<stem>_review_log.json`` in ``out_dir`` (and the labels' ``.names.json``
        when the pseudo labels have one). Existing files are only
        replaced with ``overwrite=True``. The names differ from the labels file
        and its sidecars by construction, so the original is never replaced.
        """
        self.save()
        out = Path(out_dir)
        paths = self.export_paths(out)
        for path in paths.values():
            if path.exists() and not overwrite:
                raise ReviewError(f"{path} exists; pass overwrite=True to replace it")
        out.mkdir(parents=True, exist_ok=True)
        volume = replace(self.image.with_array(self.reviewed_labels()), modality=None)  # labels: no modality
        write_volume(volume, paths["labels"], overwrite=overwrite)
        names = read_label_names(self.labels_path)
        if names:  # the tissue names travel with the reviewed labels
            write_label_names(paths["labels"], names)
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


# -- reading sidecars and summaries (clear errors naming the file) ------------------------
def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ReviewError(f"{path}: not valid JSON (truncated or corrupt?): {exc}") from exc


def _optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def read_sidecar(path: Path, n_slices: int) -> dict:
    """The review state in ``path``, checked against a volume of ``n_slices`` slices."""
    state = _read_json(path)

    def bad(problem: str) -> ReviewError:
        return ReviewError(f"{path}: {problem}; move it away to start a new review")

    if not isinstance(state, dict):
        raise bad(f"expected a JSON object, got {type(state).__name__}")
    slices, position, history = state.get("slices"), state.get("position", 0), state.get("history", [])
    if not isinstance(slices, list) or not all(isinstance(st, dict) for st in slices):
        raise bad("'slices' must be a list of objects")
    for st in slices:
        index = st.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_slices:
            raise bad(f"slice index {index!r} is not one of the {n_slices} slices")
        if st.get("status") not in STATUSES:
            raise bad(f"slice {index} has status {st.get('status')!r}, not one of {', '.join(STATUSES)}")
        if not (_optional_str(st.get("reviewer")) and _optional_str(st.get("reviewed_at"))):
            raise bad(f"slice {index}: reviewer and reviewed_at must be text or null")
    if not isinstance(position, int) or isinstance(position, bool):
        raise bad(f"'position' must be an integer, got {position!r}")
    if not isinstance(history, list):
        raise bad("'history' must be a list")
    return state | {"position": position, "history": history}


def _read_edits(path: Path, original: np.ndarray) -> dict[int, np.ndarray]:
    """Edited slices from ``path`` (``slice_<index>`` arrays of one slice's shape)."""
    try:
        with np.load(path, allow_pickle=False) as edits:
            found = {key: edits[key] for key in edits.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ReviewError(f"{path}: not a readable edits file (truncated or corrupt?): {exc}") from exc
    slices = {}
    for key, array in found.items():
        index = key.removeprefix("slice_")
        if not index.isdigit() or int(index) >= len(original):
            raise ReviewError(f"{path}: entry {key!r} names no slice of the {len(original)}")
        if array.shape != original.shape[1:] or array.dtype.kind not in "iub":
            raise ReviewError(
                f"{path}: {key} is {array.dtype} {array.shape}, expected integer labels {original.shape[1:]}"
            )
        slices[int(index)] = array
    return slices


@dataclass(frozen=True)
class SummaryCase:
    """One volume of a pseudo-label summary, its files resolved inside the summary's folder."""

    name: str
    image: Path
    labels: Path
    confidence: Path | None
    slice_confidence: list[float | None] | None
    mean_confidence: float | None


def _inside(folder: Path, value: object, what: str, summary: Path) -> Path:
    """``folder / value`` if ``value`` is a relative file name that stays inside ``folder``."""
    if not isinstance(value, str) or not value:
        raise ReviewError(f"{summary}: {what} must be a file name, got {value!r}")
    relative = Path(value)
    if relative.is_absolute() or ".." in relative.parts:
        raise ReviewError(
            f"{summary}: {what} {value!r} must be a file name inside the summary's folder "
            "(absolute paths and '..' are refused)"
        )
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ReviewError(f"{summary}: {what} {value!r} leads outside the summary's folder")
    return path


def _scores(value: object, what: str, summary: Path) -> list[float | None] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value
    ):
        raise ReviewError(f"{summary}: {what} must be a list of numbers")
    return [None if v is None else float(v) for v in value]


def load_summary(path: str | Path) -> list[SummaryCase]:
    """The cases of a ``summary.json``, checked: clear errors naming the file, nothing read outside it."""
    path = Path(path)
    summary = _read_json(path)
    cases = summary.get("cases") if isinstance(summary, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise ReviewError(f"{path}: expected an object with a list of 'cases' objects")
    if not cases:
        raise ReviewError(f"{path}: lists no cases")
    loaded = []
    for number, case in enumerate(cases):
        name = case.get("name")
        if not isinstance(name, str) or not name:
            raise ReviewError(f"{path}: case {number} has no name")
        what = f"case {name!r}"
        mean = case.get("mean_confidence")
        if mean is not None and (not isinstance(mean, (int, float)) or isinstance(mean, bool)):
            raise ReviewError(f"{path}: {what} mean_confidence must be a number, got {mean!r}")
        loaded.append(
            SummaryCase(
                name=name,
                image=_inside(path.parent, case.get("image"), f"{what} image", path),
                labels=_inside(path.parent, case.get("labels"), f"{what} labels", path),
                confidence=None
                if case.get("confidence") is None
                else _inside(path.parent, case["confidence"], f"{what} confidence", path),
                slice_confidence=_scores(case.get("slice_confidence"), f"{what} slice_confidence", path),
                mean_confidence=None if mean is None else float(mean),
            )
        )
    names = [c.name for c in loaded]
    if len(set(names)) != len(names):
        raise ReviewError(f"{path}: case names repeat")
    return loaded


# -- one queue over all volumes of a summary ----------------------------------------------
@dataclass(frozen=True)
class QueueEntry:
    """A slice of one volume in the summary-wide queue."""

    case: int
    index: int
    confidence: float | None


class SummaryReview:
    """Review of all volumes of a summary through one queue, lowest slice confidence first.

    Per-volume state lives in each volume's :class:`ReviewSession` (opened when
    the queue first reaches it, so its sidecars are the same as in a
    one-volume review). The queue uses the summary's ``slice_confidence`` (the
    score ``medtrans pseudolabel`` measured best), or the mean voxel confidence
    when a case has none; slices without any score come last.
    """

    def __init__(self, summary_path: str | Path, *, reviewer: str | None = None) -> None:
        self.path = Path(summary_path)
        self.cases = load_summary(self.path)
        self.reviewer = reviewer
        self.sessions: dict[int, ReviewSession] = {}
        entries = [QueueEntry(c, i, s) for c, case in enumerate(self.cases) for i, s in enumerate(self._scores(c))]
        self.queue = sorted(entries, key=lambda e: (e.confidence is None, e.confidence or 0.0, e.case, e.index))
        self.position = 0

    def _scores(self, case: int) -> list[float | None]:
        scores = self.cases[case].slice_confidence
        return scores if scores is not None else [st.confidence for st in self.session(case).slices]

    def session(self, case: int) -> ReviewSession:
        """The review session of volume ``case`` (opened once; ReviewError names a bad file)."""
        if case not in self.sessions:
            c = self.cases[case]
            try:
                session = ReviewSession.open(
                    c.image, c.labels, c.confidence, reviewer=self.reviewer, slice_scores=c.slice_confidence
                )
            except ReviewError as exc:
                raise ReviewError(f"{c.name}: {exc}") from exc
            except (OSError, ValueError) as exc:
                raise ReviewError(f"{c.name}: cannot open its files: {exc}") from exc
            self.sessions[case] = session
        return self.sessions[case]

    @property
    def entry(self) -> QueueEntry:
        """The queue entry at the current position."""
        return self.queue[self.position]

    @property
    def current(self) -> ReviewSession:
        """The current volume's session, positioned on the current slice."""
        entry = self.entry
        session = self.session(entry.case)
        if session.current != entry.index:
            session.go_to_slice(entry.index)
        return session

    def status(self, entry: QueueEntry) -> str:
        """``entry``'s status (``pending`` for volumes not opened yet and without a sidecar)."""
        if entry.case in self.sessions:
            return self.sessions[entry.case].state(entry.index).status
        return self._saved_status(entry.case).get(entry.index, "pending")

    def _saved_status(self, case: int) -> dict[int, str]:
        """Statuses saved in the volume's sidecar (none if it has none or cannot be opened yet)."""
        state_path, _ = sidecar_paths(self.cases[case].labels)
        if not state_path.exists():
            return {}
        try:
            return {st.index: st.status for st in self.session(case).slices}
        except ReviewError:
            return {}  # reported when the queue reaches the volume

    def go(self, position: int) -> QueueEntry:
        """Move to a queue position (clamped) and return its entry; stay put if its volume cannot be opened."""
        previous, self.position = self.position, int(np.clip(position, 0, len(self.queue) - 1))
        try:
            self.current  # noqa: B018 - opens the volume and moves its session to the slice
        except ReviewError:
            self.position = previous
            raise
        return self.entry

    def next(self) -> QueueEntry:
        """Move to the next entry."""
        return self.go(self.position + 1)

    def previous(self) -> QueueEntry:
        """Move to the previous entry."""
        return self.go(self.position - 1)

    def next_pending(self) -> QueueEntry:
        """Move to the next pending entry after the current one (wrapping); stay if none."""
        n = len(self.queue)
        for step in range(1, n + 1):
            pos = (self.position + step) % n
            if self.status(self.queue[pos]) == "pending":
                return self.go(pos)
        return self.go(self.position)

    def first_pending(self) -> QueueEntry:
        """Move to the first pending entry (resume), or stay at the start if none."""
        for pos, entry in enumerate(self.queue):
            if self.status(entry) == "pending":
                return self.go(pos)
        return self.go(0)

    def accept(self) -> QueueEntry:
        """Accept the current slice and move to the next pending entry."""
        self.current.accept(advance=False)
        return self.next_pending()

    def reject(self) -> QueueEntry:
        """Reject the current slice and move to the next pending entry."""
        self.current.reject(advance=False)
        return self.next_pending()

    def counts(self) -> dict[str, int]:
        """Entries per status over all volumes."""
        statuses = [self.status(e) for e in self.queue]
        return {s: statuses.count(s) for s in STATUSES}
