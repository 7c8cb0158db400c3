"""Start, stop and resume a trainer in a separate process, free of Qt and napari.

The GUI never imports :mod:`training`: it asks the trainer what it offers by
running ``python -m training --list-methods --json`` (:func:`query_methods`),
starts it as ``python -m training ...`` (:meth:`TrainerProcess.start`) and
follows the run only through its run directory
(:class:`napari_medtrans.runwatch.RunWatcher`).

Stopping is graceful first: the stop file of the run directory plus SIGTERM,
upon which the trainer checkpoints and exits; asking again kills the process.
A run that this process did not start (from the CLI, from a napari session that
was closed, from a cluster node on a shared file system) is stopped through its
stop file, and killed by the pid in ``status.json`` only when that process runs
on this host and is a trainer.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from napari_medtrans.constants import REGIMES, VOLUME_SUFFIXES
from napari_medtrans.contract import MethodSpec, TrainConfig, parse_methods_document
from napari_medtrans.rundir import FINAL_STATES, RunDir

__all__ = [
    "CONSOLE_FILE",
    "LaunchError",
    "MethodSpec",
    "TrainRequest",
    "TrainerProcess",
    "local_trainer_pid",
    "query_methods",
    "stop_attached",
    "tail_lines",
    "trainer_gone",
]

CONSOLE_FILE = "console.txt"
"""Name of the file in the run directory that receives the launched trainer's stdout/stderr."""

MIN_SIZE, MAX_SIZE, SIZE_MULTIPLE = 32, 1024, 4
"""Bounds on the training slice size checked before a launch."""

StopAction = Literal["stopping", "killed", "not running"]


class LaunchError(RuntimeError):
    """The trainer could not be queried or started; the message is meant for users."""


# --------------------------------------------------------------------------- methods
@lru_cache(maxsize=4)
def query_methods(python: str = sys.executable, timeout: float = 180.0) -> tuple[MethodSpec, ...]:
    """Ask the trainer (in a subprocess) which methods it offers, with their options.

    The answer is cached per interpreter: starting Python with torch costs seconds.

    Args:
        python: Interpreter that has :mod:`training` installed.
        timeout: Seconds to wait for the answer.

    Returns:
        The methods, sorted by name.

    Raises:
        LaunchError: When the trainer cannot be run or answers something that
            is not the contract's JSON.
    """
    command = [python, "-m", "training", "--list-methods", "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"cannot ask the trainer for its methods: {exc}") from exc
    if done.returncode != 0:
        raise LaunchError(f"`{' '.join(command[1:])}` failed:\n{done.stderr.strip()[-2000:]}")
    try:
        return parse_methods_document(json.loads(done.stdout))
    except ValueError as exc:  # not JSON, or not the contract (ConfigError)
        raise LaunchError(f"unexpected answer from `{' '.join(command[1:])}`: {exc}") from exc


# --------------------------------------------------------------------------- requests
@dataclass
class TrainRequest:
    """What the Train form asks for: one new run, as the contract's :class:`TrainConfig`.

    The trainer resolves ``config`` exactly as given (``model`` holds only the
    method options that differ from the method's defaults; ``lr`` None = the
    method's default).
    """

    config: TrainConfig

    @property
    def method(self) -> str:
        """Registry name of the method."""
        return self.config.method

    @property
    def run_dir(self) -> Path:
        """The run directory to create (must not hold a run yet)."""
        return Path(self.config.run_dir)

    @property
    def size(self) -> int:
        """Side of the square training slices."""
        return self.config.data.size

    def validate(self, *, check_volumes: bool = True) -> list[str]:
        """Return the problems that would make the trainer fail at once (empty = launchable).

        Args:
            check_volumes: read the first volume of each folder with
                :func:`napari_medtrans.io.read_volume`.
        """
        cfg, data = self.config, self.config.data
        problems: list[str] = []
        if not cfg.method:
            problems.append("choose a method")
        if cfg.iterations < 1:
            problems.append("iterations must be at least 1")
        if not MIN_SIZE <= data.size <= MAX_SIZE or data.size % SIZE_MULTIPLE:
            problems.append(f"size must be a multiple of {SIZE_MULTIPLE} between {MIN_SIZE} and {MAX_SIZE}")
        if RunDir(self.run_dir).exists():
            problems.append(f"{self.run_dir} already holds a run: choose another name, or Resume it")
        elif self.run_dir.exists() and not self.run_dir.is_dir():
            problems.append(f"{self.run_dir} exists and is not a folder")
        if data.phantom is not None:
            if data.phantom not in REGIMES:
                problems.append(f"phantom regime must be one of {', '.join(REGIMES)}")
            return problems
        source = Path(data.source) if data.source else None
        target = Path(data.target) if data.target else None
        for role, folder in (("source", source), ("target", target)):
            problems.extend(_folder_problems(role, folder, check_volumes=check_volumes))
        if data.paired and not problems:
            problems.extend(_pairing_problems(source, target))  # type: ignore[arg-type]
        return problems

    def command(self, python: str = sys.executable) -> list[str]:
        """The trainer command line: every config value that differs from the contract's default."""
        cfg = self.config
        command = [python, "-m", "training", "--method", cfg.method, "--run-dir", cfg.run_dir]
        if cfg.data.source is not None:
            command += ["--source", cfg.data.source]
        if cfg.data.target is not None:
            command += ["--target", cfg.data.target]
        defaults = _flatten(TrainConfig().to_dict())
        for key, value in _flatten(cfg.to_dict()).items():
            if key not in ("method", "run_dir", "data.source", "data.target") and (
                key not in defaults or defaults[key] != value
            ):
                command += ["--set", f"{key}={_yaml_scalar(value)}"]
        return command


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"size": 64}}`` → ``{"data.size": 64}`` (dict values of ``model`` options are kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if not prefix and key in ("data", "model") and isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _yaml_scalar(value: Any) -> str:
    """Format a value for ``--set key=value`` (parsed as YAML by the trainer)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # quoted: "yes", "1e-4" or "null" stay strings
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)  # JSON is YAML
    if isinstance(value, float):
        if not math.isfinite(value):
            return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        mantissa, e, exponent = repr(value).partition("e")
        if e and "." not in mantissa:  # YAML 1.1 reads 2e-05 as a string, 2.0e-05 as a float
            mantissa += ".0"
        return mantissa + e + exponent
    return str(value)


def _folder_problems(role: str, folder: Path | None, *, check_volumes: bool) -> list[str]:
    """Check that ``folder`` exists and its first volume can be read."""
    if folder is None or not str(folder):
        return [f"choose a {role} folder"]
    if not folder.is_dir():
        return [f"{role} folder {folder} does not exist"]
    from napari_medtrans.io import read_volume, volume_files

    files = volume_files(folder)
    if not files:
        return [f"{role} folder {folder} holds no volumes ({', '.join(VOLUME_SUFFIXES)} files or DICOM folders)"]
    if check_volumes:
        try:
            read_volume(next(iter(files.values())))
        except ValueError as exc:  # VolumeReadError names the file
            return [f"{role}: {exc}"]
    return []


def _pairing_problems(source: Path, target: Path) -> list[str]:
    """Paired data is matched by name: report names present in one folder only."""
    from napari_medtrans.io import volume_files

    unmatched = sorted(set(volume_files(source)) ^ set(volume_files(target)))
    if unmatched:
        return [
            f"paired data: not in both folders: {', '.join(unmatched[:5])}"
            + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        ]
    return []


# --------------------------------------------------------------------------- processes
class TrainerProcess:
    """A trainer started by this process, with its console output in the run directory.

    Args:
        popen: The running trainer.
        run: Its run directory.
    """

    def __init__(self, popen: subprocess.Popen, run: RunDir) -> None:
        self.popen = popen
        self.run = run
        self._stop_requested = False

    @classmethod
    def launch(
        cls, command: Sequence[str], run_dir: str | os.PathLike[str], env: Mapping[str, str] | None = None
    ) -> TrainerProcess:
        """Start ``command`` writing ``run_dir``; stdout/stderr go to ``run_dir/console.txt``."""
        run = RunDir(run_dir)
        run.path.mkdir(parents=True, exist_ok=True)
        with open(run.path / CONSOLE_FILE, "ab") as console:
            try:
                popen = subprocess.Popen(
                    list(command),
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=None if env is None else dict(env),
                )
            except OSError as exc:
                raise LaunchError(f"cannot start the trainer: {exc}") from exc
        return cls(popen, run)

    @classmethod
    def start(
        cls, request: TrainRequest, python: str = sys.executable, env: Mapping[str, str] | None = None
    ) -> TrainerProcess:
        """Start a new run for ``request`` (validate it first)."""
        return cls.launch(request.command(python), request.run_dir, env)

    @classmethod
    def resume(
        cls,
        run_dir: str | os.PathLike[str],
        *,
        iterations: int | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> TrainerProcess:
        """Continue the run in ``run_dir`` from its last checkpoint.

        Args:
            run_dir: The run directory.
            iterations: New total length, to extend a run that has finished.
            python: Interpreter that has :mod:`training` installed.
            env: Environment of the trainer (None: this process's).
        """
        run = RunDir(run_dir)
        if not run.exists():
            raise LaunchError(f"{run.path} holds no run to resume (no config.json)")
        command = [python, "-m", "training", "--resume", "--run-dir", str(run.path)]
        if iterations is not None:
            command += ["--iterations", str(iterations)]
        return cls.launch(command, run.path, env)

    @property
    def pid(self) -> int:
        """Process id of the trainer."""
        return self.popen.pid

    def returncode(self) -> int | None:
        """Exit code, or None while the trainer runs (never blocks)."""
        return self.popen.poll()

    def stop(self) -> StopAction:
        """First call: request a graceful stop (stop file + SIGTERM). Second call: kill."""
        if self.popen.poll() is not None:
            return "not running"
        if not self._stop_requested:
            self._stop_requested = True
            self.run.request_stop()
            self.popen.send_signal(signal.SIGTERM)
            return "stopping"
        self.popen.kill()
        return "killed"

    def console_tail(self, lines: int = 20) -> list[str]:
        """Last lines the trainer printed (tracebacks of early failures end up here)."""
        return tail_lines(self.run.path / CONSOLE_FILE, lines)


def tail_lines(path: Path, lines: int = 20, max_bytes: int = 64_000) -> list[str]:
    """Last ``lines`` lines of a text file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def local_trainer_pid(status: Mapping[str, Any]) -> int | None:
    """The pid in ``status`` when it is a live trainer process on this host, else None."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or (host is not None and host != socket.gethostname()):
        return None
    if Path("/proc/self").exists():  # Linux: make sure the pid was not reused by another program
        try:
            return pid if b"training" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
        except OSError:
            return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def trainer_gone(status: Mapping[str, Any]) -> bool:
    """True when ``status`` (not final) names a trainer on this host that no longer runs.

    A run on another host (a cluster node) is never declared gone: only its
    files tell, and a final state will arrive or not.
    """
    pid, host = status.get("pid"), status.get("host")
    return (
        status.get("state") not in FINAL_STATES
        and isinstance(pid, int)
        and host in (None, socket.gethostname())
        and local_trainer_pid(status) is None
    )


def stop_attached(run: RunDir, *, force: bool) -> StopAction:
    """Stop a run this process did not start.

    A graceful stop writes the stop file (works across machines on a shared file
    system); ``force`` kills the trainer when it runs on this host, and falls
    back to the stop file otherwise.
    """
    status = run.read_status()
    if status.get("state") in FINAL_STATES:
        return "not running"
    pid = local_trainer_pid(status) if force else None
    if pid is None:
        run.request_stop()
        return "stopping"
    os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # Windows has no SIGKILL
    return "killed"
