"""Facts about the benchmark machine that its reports state next to the numbers."""

from __future__ import annotations

import os

from napari_medtrans import cpu_features


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
