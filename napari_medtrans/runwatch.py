"""Follow a run directory incrementally, free of Qt and napari.

:class:`RunWatcher` is polled by whoever displays a run (the Train widget polls
it from a Qt timer). Each :meth:`RunWatcher.poll` costs a few ``stat`` calls
when nothing changed; it reads ``status.json`` only when that file was
replaced, only the lines appended to ``metrics.jsonl`` since the last poll, and
a preview ``.npz`` only when ``previews/latest.json`` points to a new one. The
watcher works for any run directory: one being written by a trainer this
process started, by the command line, or by a cluster node on a shared file
system, and one that has long finished.

A run directory may be damaged or hostile: :meth:`RunWatcher.poll` never
raises for what it finds there. Only regular files are opened (a FIFO would
block the GUI thread), JSON files, metric lines and previews have size limits
(:data:`MAX_METRICS_LINE`, :data:`napari_medtrans.rundir.MAX_JSON_BYTES`,
:data:`napari_medtrans.rundir.MAX_PREVIEW_BYTES`), and every problem is
returned in :attr:`RunUpdate.errors`, once per version of the file, naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medtrans.rundir import FINAL_STATES, RunDir, check_regular_file

MAX_METRICS_LINE = 1 << 20
"""Longest metrics.jsonl line read (1 MiB; real ones are a few hundred bytes); longer ones are skipped."""

MAX_METRICS_READ = 16 << 20
"""Most bytes of metrics.jsonl read by one poll (the rest follows on the next polls)."""

_Stamp = tuple[int, int, int]


@dataclass(frozen=True)
class Preview:
    """One validation preview written by the trainer.

    Attributes
    ----------
    iteration : int
        Training iteration the preview was made at.
    arrays : dict of str to numpy.ndarray
        ``input``, ``output``, ``target`` and, when the method has them,
        ``scale`` (uncertainty) and ``field`` (displacement, channels first).
    """

    iteration: int
    arrays: dict[str, np.ndarray]


@dataclass
class RunUpdate:
    """What changed in a run directory since the previous poll.

    Attributes
    ----------
    status : dict or None
        The new content of ``status.json`` when it changed.
    metrics : list of dict
        Records appended to ``metrics.jsonl``.
    reset_metrics : bool
        ``metrics.jsonl`` was rewritten (a resumed run drops the records after
        its checkpoint): discard the records seen before, ``metrics`` holds the
        whole file.
    preview : Preview or None
        The newest preview when a new one appeared.
    errors : list of str
        Problems with the run's files (unreadable, not regular, too large,
        malformed), each naming the file; reported once per file version.
    """

    status: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    reset_metrics: bool = False
    preview: Preview | None = None
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return (
            self.status is not None
            or bool(self.metrics)
            or self.reset_metrics
            or self.preview is not None
            or bool(self.errors)
        )


def _stamp(path: Path) -> _Stamp | None:
    """Identity of a file version: (inode, mtime in ns, size); None if it is missing."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _json_line(line: bytes) -> dict[str, Any] | None:
    """One metrics record, or None when the line is too long, not JSON or not an object."""
    if len(line) > MAX_METRICS_LINE:
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


class RunWatcher:
    """Incremental reader of one run directory.

    Parameters
    ----------
    path : str or os.PathLike
        The run directory (it may not exist yet: a just-launched trainer
        creates its files a moment later).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.run = RunDir(path)
        self.status: dict[str, Any] = {"state": "queued"}
        self._status_stamp: _Stamp | None = None
        self._metrics_stamp: _Stamp | None = None
        self._metrics_offset = 0
        self._preview_stamp: _Stamp | None = None
        self._preview_iteration: int | None = None

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.run.path

    @property
    def state(self) -> str:
        """Last seen state (``queued`` until the trainer writes status.json)."""
        return str(self.status.get("state", "queued"))

    @property
    def finished(self) -> bool:
        """True once the run reached a final state (finished, failed or stopped)."""
        return self.state in FINAL_STATES

    def poll(self) -> RunUpdate:
        """Read what changed since the previous call (the first call reads everything); never raises
        for the run's files: their problems are in ``errors``.
        """
        update = RunUpdate()
        steps: tuple[Callable[[RunUpdate], None], ...] = (self._poll_status, self._poll_metrics, self._poll_preview)
        for step in steps:
            try:
                step(update)
            except FileNotFoundError:  # replaced between stat and open: read on the next poll
                pass
            except (OSError, ValueError) as exc:
                update.errors.append(str(exc))
        return update

    def _poll_status(self, update: RunUpdate) -> None:
        stamp = _stamp(self.run.status_path)
        if stamp is None or stamp == self._status_stamp:
            return
        self._status_stamp = stamp  # a broken version is reported once
        self.status = self.run.read_status()
        update.status = self.status

    def _poll_metrics(self, update: RunUpdate) -> None:
        path = self.run.metrics_path
        stamp = _stamp(path)
        if stamp is None or stamp == self._metrics_stamp:
            return
        previous, self._metrics_stamp = self._metrics_stamp, stamp
        if previous is not None and (stamp[0] != previous[0] or stamp[2] < self._metrics_offset):
            self._metrics_offset = 0  # replaced or truncated: start over
            update.reset_metrics = True
        check_regular_file(path)
        with open(path, "rb") as handle:
            handle.seek(self._metrics_offset)
            chunk = handle.read(MAX_METRICS_READ)
        if len(chunk) == MAX_METRICS_READ:
            self._metrics_stamp = None  # more to read on the next poll
        end = chunk.rfind(b"\n") + 1
        if end == 0 and len(chunk) > MAX_METRICS_LINE:
            self._metrics_offset += len(chunk)
            raise ValueError(f"{path}: a line longer than {MAX_METRICS_LINE} bytes; skipped")
        bad = 0
        for line in chunk[:end].splitlines():
            record = _json_line(line)
            if record is None:
                bad += 1
            else:
                update.metrics.append(record)
        self._metrics_offset += end
        if bad:
            raise ValueError(
                f"{path}: skipped {bad} lines that are not JSON objects of at most {MAX_METRICS_LINE} bytes"
            )

    def _poll_preview(self, update: RunUpdate) -> None:
        stamp = _stamp(self.run.previews_dir / "latest.json")
        if stamp is None or stamp == self._preview_stamp:
            return
        self._preview_stamp = stamp
        try:
            preview = self.run.latest_preview()
        except FileNotFoundError:  # the npz was replaced between reading latest.json and opening it
            self._preview_stamp = None
            return
        if preview is None or preview["iteration"] == self._preview_iteration:
            return
        self._preview_iteration = preview["iteration"]
        update.preview = Preview(preview["iteration"], preview["arrays"])

    def log_tail(self, lines: int = 20) -> list[str]:
        """Last lines of the run's log.txt."""
        return self.run.tail_log(lines)
