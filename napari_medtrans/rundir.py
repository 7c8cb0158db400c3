"""The run directory: the one contract between a trainer and whoever watches it.

A trainer (``python -m training``, possibly on a cluster node) writes a run
directory; the napari Train widget, the CLI and anyone on a shared file system
read it. Nothing else passes between them. Layout (see DESIGN.md)::

    runs/<name>/
      config.json          resolved training config
      status.json          state, iteration, ETA, last error (atomic)
      metrics.jsonl        one JSON object per logged step (append-only)
      previews/            itNNNNNNN.npz validation slices + latest.json
      checkpoints/         last/best safetensors (written by the trainer)
      translator.safetensors
      log.txt              human-readable log
      STOP                 present = a graceful stop was requested
      LOCK                 held by the trainer writing the run: {"pid", "host", "started_at"}

Every write that replaces a file is atomic (temp file in the same folder,
fsync, rename), so a reader never sees half a file and a killed writer leaves
the previous version intact.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from napari_medtrans.contract import FINAL_STATES, RunStatus, State

__all__ = ["FINAL_STATES", "STATES", "RunDir", "atomic_write_bytes", "atomic_write_json"]

STATES = tuple(state.value for state in State)
"""Possible values of ``status.json["state"]`` (:class:`napari_medtrans.contract.State`)."""


MAX_JSON_BYTES = 1 << 20
"""Largest status.json, config.json or previews/latest.json read (1 MiB; real ones are a few KiB)."""

MAX_PREVIEW_BYTES = 64 << 20
"""Largest preview .npz read, and largest array in it once uncompressed (64 MiB each)."""

DEFAULT_FILE_MODE = 0o644
"""Permissions of a new file (mkstemp's 0600 would hide runs on shared file systems)."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file + fsync + rename.

    A replaced file keeps its permissions; a new one gets ``DEFAULT_FILE_MODE``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else DEFAULT_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def require_writable_folder(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` if needed and check a file can be created in it, before any long work.

    Raises:
        OSError: naming the folder and the reason (read-only file system, permissions…).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"{folder}: cannot write there ({exc.strerror or exc}); choose another folder or fix its permissions",
        ) from exc


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RunLockedError(RuntimeError):
    """Another live trainer holds the run directory's lock; the message names it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunDir:
    """Reads and writes one run directory following the contract above.

    Args:
        path: the run directory (created on the first write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.status_path = self.path / "status.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.previews_dir = self.path / "previews"
        self.checkpoints_dir = self.path / "checkpoints"
        self.translator_path = self.path / "translator.safetensors"
        self.log_path = self.path / "log.txt"
        self.stop_path = self.path / "STOP"
        self.lock_path = self.path / "LOCK"

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def exists(self) -> bool:
        """True when the folder holds a run (its config has been written)."""
        return self.config_path.is_file()

    def has_run_files(self) -> bool:
        """True when any file a trainer writes is there (config, status, metrics, checkpoints, translator)."""
        written = (self.config_path, self.status_path, self.metrics_path, self.translator_path)
        return any(p.exists() for p in written) or self.checkpoints_dir.is_dir()

    def remove_run_files(self) -> None:
        """Delete what a trainer wrote (for ``--overwrite``); other files in the folder stay."""
        for item in (
            self.config_path,
            self.status_path,
            self.metrics_path,
            self.translator_path,
            self.log_path,
            self.stop_path,
        ):
            item.unlink(missing_ok=True)
        for folder in (self.checkpoints_dir, self.previews_dir):
            shutil.rmtree(folder, ignore_errors=True)

    # lock ---------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Claim the run for this process (exclusive create of LOCK with pid, host and time).

        A lock left by a dead process on this host is stale and replaced. A lock
        of a live process, or one from another host (whose process cannot be
        checked from here), raises :class:`RunLockedError` naming it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DEFAULT_FILE_MODE)
            except FileExistsError:
                self._break_stale_lock()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(mine, handle)
            return
        raise RunLockedError(f"{self.lock_path}: could not take the run lock (it keeps reappearing)")

    def _break_stale_lock(self) -> None:
        try:
            check_regular_file(self.lock_path, MAX_JSON_BYTES)
        except ValueError as exc:
            raise RunLockedError(f"{exc}; delete it if no trainer is writing this run") from exc
        except FileNotFoundError:
            return
        try:
            holder = json.loads(self.lock_path.read_text(encoding="utf-8"))
            pid, host = int(holder["pid"]), str(holder["host"])
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder["started_at"])))
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError) as exc:  # unreadable: being written, or its writer died
            if time.time() - self.lock_path.stat().st_mtime < 10:
                raise RunLockedError(f"{self.lock_path}: another trainer is taking the lock; try again") from exc
            self.lock_path.unlink(missing_ok=True)
            return
        if host == socket.gethostname() and not _pid_alive(pid):
            self.lock_path.unlink(missing_ok=True)
            return
        where = "on this host" if host == socket.gethostname() else f"on host {host}"
        raise RunLockedError(
            f"{self.path}: another trainer (pid {pid} {where}, since {since}) is writing this run; "
            f"wait for it, stop it, or delete {self.lock_path} if that process is gone"
        )

    def release_lock(self) -> None:
        """Remove LOCK if this process holds it."""
        try:
            check_regular_file(self.lock_path, MAX_JSON_BYTES)
            holder = json.loads(self.lock_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(holder, dict) and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.lock_path.unlink(missing_ok=True)

    def remove_orphan_temps(self) -> list[Path]:
        """Delete temp files left by a killed writer (``.<name>.*.tmp``); call with the lock held."""
        removed = []
        for folder in (self.path, self.checkpoints_dir, self.previews_dir):
            if folder.is_dir():
                for temp in folder.glob(".*.tmp"):
                    if temp.is_file():
                        temp.unlink(missing_ok=True)
                        removed.append(temp)
        return removed

    # config -------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        """Save the resolved training config."""
        atomic_write_json(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        """Load the resolved training config."""
        return _read_json(self.config_path)

    # status -------------------------------------------------------------
    def write_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json (atomically) and return the new status.

        ``updated_at`` (Unix time) is set on every write. Fields are those of
        :class:`~napari_medtrans.contract.RunStatus`; an unknown field or a value
        of the wrong type raises :class:`~napari_medtrans.contract.ConfigError`
        (a ValueError) and writes nothing.
        """
        RunStatus.from_dict(fields, strict=True)
        status = self.read_status() if self.status_path.is_file() else {}
        status.update(fields)
        status["updated_at"] = time.time()
        atomic_write_json(self.status_path, status)
        return status

    def read_status(self) -> dict[str, Any]:
        """Load status.json, checked against :class:`~napari_medtrans.contract.RunStatus`.

        ``{"state": "queued"}`` if the trainer has not written it yet; keys a newer
        trainer added are kept. Raises ValueError naming the file when it does not fit.
        """
        if not self.status_path.exists():
            return {"state": "queued"}
        status = _read_json(self.status_path)
        try:
            RunStatus.from_dict(status)
        except ValueError as exc:
            raise ValueError(f"{self.status_path}: {exc}") from exc
        return status

    def status(self) -> RunStatus:
        """status.json as a typed :class:`~napari_medtrans.contract.RunStatus`."""
        return RunStatus.from_dict(self.read_status())

    # metrics ------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to metrics.jsonl (flushed and fsynced)."""
        self.path.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self, start_line: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Read complete metric lines from ``start_line`` on.

        Returns the records and the line number to pass next time, so a follower
        reads the file incrementally. A partly written last line is left for the
        next call.
        """
        if not self.metrics_path.is_file():
            return [], start_line
        records: list[dict[str, Any]] = []
        next_line = start_line
        with open(self.metrics_path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if number < start_line:
                    continue
                if not line.endswith("\n"):
                    break
                records.append(json.loads(line))
                next_line = number + 1
        return records, next_line

    def truncate_metrics(self, last_iteration: int) -> None:
        """Drop metric records past ``last_iteration`` (used when resuming from a checkpoint)."""
        records, _ = self.read_metrics()
        kept = [r for r in records if int(r.get("iteration", 0)) <= last_iteration]
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        atomic_write_bytes(self.metrics_path, data.encode())

    # previews -----------------------------------------------------------
    def write_preview(self, iteration: int, arrays: dict[str, np.ndarray]) -> Path:
        """Save named 2-D/3-D arrays (input, output, target, scale, field…) for ``iteration``.

        The file is ``previews/it<iteration:07d>.npz``; ``previews/latest.json``
        then points to it.
        """
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(a) for name, a in arrays.items()})  # type: ignore[arg-type]
        target = self.previews_dir / f"it{iteration:07d}.npz"
        atomic_write_bytes(target, buffer.getvalue())
        atomic_write_json(
            self.previews_dir / "latest.json",
            {"iteration": iteration, "file": target.name, "arrays": sorted(arrays)},
        )
        return target

    def latest_preview(self) -> dict[str, Any] | None:
        """Return ``{"iteration": int, "arrays": {name: ndarray}}`` of the newest preview, or None.

        The pointer must name a regular file inside ``previews/``, at most
        ``MAX_PREVIEW_BYTES`` large, each array too once uncompressed; a
        ``ValueError`` naming the file says what is wrong otherwise.
        """
        pointer = self.previews_dir / "latest.json"
        if not pointer.exists():
            return None
        info = _read_json(pointer)
        name, iteration = info.get("file"), info.get("iteration")
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"{pointer}: 'file' must name a file in {self.previews_dir}, got {name!r:.80}")
        if isinstance(iteration, bool) or not isinstance(iteration, int):
            raise ValueError(f"{pointer}: 'iteration' must be an integer, got {iteration!r:.80}")
        path = self.previews_dir / name
        check_regular_file(path, MAX_PREVIEW_BYTES)
        try:
            with np.load(path, allow_pickle=False) as data:
                for member in data.zip.infolist():
                    if member.file_size > MAX_PREVIEW_BYTES:
                        raise ValueError(
                            f"{path}: array {member.filename} would take {member.file_size} bytes "
                            f"uncompressed; previews are limited to {MAX_PREVIEW_BYTES}"
                        )
                arrays = {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: not a readable preview ({exc})") from exc
        _check_preview_arrays(path, arrays)
        return {"iteration": iteration, "arrays": arrays}

    # stop request -------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the trainer to checkpoint and exit (works across machines on a shared FS)."""
        atomic_write_bytes(self.stop_path, f"{time.time()}\n".encode())

    def stop_requested(self) -> bool:
        """True when a stop was requested and not yet cleared."""
        return self.stop_path.exists()

    def clear_stop(self) -> None:
        """Remove a stop request (done by the trainer when it starts or resumes)."""
        self.stop_path.unlink(missing_ok=True)

    # log ----------------------------------------------------------------
    def log(self, line: str) -> None:
        """Append a timestamped line to log.txt."""
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {line.rstrip()}\n")
            handle.flush()

    def tail_log(self, lines: int = 20) -> list[str]:
        """Return the last ``lines`` lines of log.txt (empty if there is none)."""
        if not self.log_path.is_file():
            return []
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in handle.readlines()[-lines:]]


def _check_preview_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Numeric, non-empty, 2-D to 4-D arrays; a ``field`` has 2 channels (Δrow, Δcol) before H, W."""
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf" or not 2 <= array.ndim <= 4 or array.size == 0:
            raise ValueError(
                f"{path}: array {name!r} ({array.dtype}, shape {array.shape}) is not a "
                "non-empty numeric 2-D to 4-D preview image"
            )
        if name == "field" and (array.ndim < 3 or array.shape[-3] != 2):
            raise ValueError(f"{path}: array 'field' has shape {array.shape}; a field is (2, H, W) or (N, 2, H, W)")


def check_regular_file(path: Path, limit: int | None = None) -> int:
    """The size of ``path``; ``ValueError`` when it is no regular file (a FIFO would block a reader
    forever) or larger than ``limit`` bytes.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: not a regular file (a FIFO, device or folder); not read")
    if limit is not None and info.st_size > limit:
        raise ValueError(f"{path}: {info.st_size} bytes, more than the {limit} this file may have; not read")
    return info.st_size


def _read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object (a regular file of at most ``MAX_JSON_BYTES``), naming the file when it is not one."""
    check_regular_file(path, MAX_JSON_BYTES)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
