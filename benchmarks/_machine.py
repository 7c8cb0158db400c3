"""Facts about the benchmark machine that its reports state next to the numbers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from napari_medtrans import cpu_features
from napari_medtrans.rundir import atomic_write_bytes


def bf16_native() -> bool:
    """Whether this CPU has bfloat16 instructions (AMX, AVX-512-BF16, ARM bf16); else bf16 is emulated."""
    return cpu_features.precision_support("bf16", "cpu").native


def load_note(load_start: float, load_end: float) -> str:
    """One sentence on whether other processes shared the cores while the benchmark ran."""
    cores = os.cpu_count() or 1
    shared = max(load_start, load_end) > cores + 0.5
    return f"1-min load average {load_start:.1f} at start, {load_end:.1f} at end on {cores} CPUs: " + (
        "the cores were shared with other jobs, so figures are noisy and below this CPU's peak."
        if shared
        else "no other jobs of note ran."
    )


def run_process(command: list[str], log: Path, **popen: Any) -> dict[str, float]:
    """Run ``command`` to its end with stdout and stderr in ``log`` (``popen``: e.g. ``cwd``, ``env``).

    Returns its ``exit`` code, ``wall_s`` and ``cpu_s`` (user + system seconds of the process and the
    children it waited for), the cost a report states beside a training run.
    """
    started = time.time()
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **popen)
    _, status, usage = os.wait4(process.pid, 0)
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": time.time() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def write_result(path: Path, text: str) -> None:
    """Write a benchmark's result file atomically, its folder made if missing (a crash leaves the old one whole)."""
    atomic_write_bytes(path, text.encode())
