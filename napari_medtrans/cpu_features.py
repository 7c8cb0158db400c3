"""Whether a reduced precision runs natively on a device or is emulated.

bf16 autocast pays off only where the hardware has bfloat16 arithmetic: on x86
CPUs with AMX or AVX-512-BF16 it made the ResNet-9 generator 2.2× faster than
fp32, while on an AMD EPYC without them it was 50× *slower* (emulated; issue
23). The CLI, the Translate and Train widgets, the on-the-fly scheduler and
the trainer all ask :func:`precision_support` before they use a reduced
precision; tests fake the CPU by monkeypatching :func:`cpu_flags`. Importing
this module does not import torch (the Train form stays torch-free).
"""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: CPU flags (``/proc/cpuinfo``, lower case) that give each precision native arithmetic.
NATIVE_FLAGS: dict[str, frozenset[str]] = {
    "bf16": frozenset({"amx_bf16", "avx512_bf16", "bf16"}),  # x86 AMX / AVX-512-BF16; ARMv8.6 "bf16"
    "fp16": frozenset({"amx_fp16", "avx512_fp16"}),
}
#: CUDA compute capability from which each precision has tensor-core arithmetic (bf16: Ampere).
CUDA_CAPABILITY = {"bf16": (8, 0), "fp16": (7, 0)}


class EmulatedPrecisionError(ValueError):
    """A reduced precision was asked for on a device that only emulates it (and not forced)."""


@dataclass(frozen=True)
class PrecisionSupport:
    """Whether ``precision`` runs natively on a device; ``reason`` says why (for tooltips and messages)."""

    precision: str
    native: bool
    reason: str


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags in lower case (``/proc/cpuinfo``; elsewhere PyTorch's and the OS's probes)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    flags = {
        flag.lower()
        for line in lines
        if line.split(":", 1)[0].strip().lower() in ("flags", "features")
        for flag in line.split(":", 1)[1].split()
    }
    if not flags:
        flags = _probed_flags()
    return frozenset(flags)


def _probed_flags() -> set[str]:
    """Flags from PyTorch's x86 probes and macOS's sysctl where there is no ``/proc/cpuinfo``."""
    import torch

    probes = {
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_tile": "_is_amx_tile_supported",
        "amx_fp16": "_is_amx_fp16_supported",
    }
    flags = {flag for flag, name in probes.items() if getattr(torch.cpu, name, lambda: False)()}
    if "amx_tile" in flags:
        flags.add("amx_bf16")  # every AMX CPU has AMX-BF16
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, check=False, timeout=5
            )
            if done.stdout.strip() == "1":
                flags.add("bf16")
        except (OSError, subprocess.SubprocessError):
            pass
    return flags


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def precision_support(precision: str, device: str | torch.device = "cpu") -> PrecisionSupport:
    """Whether autocast to ``precision`` (fp32, bf16, fp16) is native arithmetic on ``device`` (not "auto")."""
    kind = str(device).split(":")[0]
    if precision == "fp32":
        return PrecisionSupport(precision, True, "fp32 is native everywhere")
    if precision not in NATIVE_FLAGS:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    if kind == "cuda":
        import torch

        capability = torch.cuda.get_device_capability(torch.device(device))
        native = capability >= CUDA_CAPABILITY[precision]
        need = ".".join(map(str, CUDA_CAPABILITY[precision]))
        return PrecisionSupport(
            precision,
            native,
            f"CUDA capability {capability[0]}.{capability[1]} ({'≥' if native else '<'} {need} for native {precision})",
        )
    if kind != "cpu":
        return PrecisionSupport(precision, False, f"native {precision} is not known for {kind} devices")
    found = sorted(NATIVE_FLAGS[precision] & cpu_flags())
    if found:
        return PrecisionSupport(precision, True, f"this CPU has {precision} instructions ({', '.join(found)})")
    return PrecisionSupport(
        precision,
        False,
        (
            f"this CPU ({cpu_model()}) has no {precision} instructions ({'/'.join(sorted(NATIVE_FLAGS[precision]))}): "
            f"{precision} is emulated and much slower than fp32"
        ),
    )


def check_precision(
    precision: str, device: str | torch.device = "cpu", *, force: bool = False, how_to_force: str = "force it"
) -> str | None:
    """Refuse an emulated precision unless ``force``; return a warning when forced, else None.

    ``how_to_force`` completes the error message (e.g. "add --force").

    Raises:
        EmulatedPrecisionError: ``precision`` is emulated on ``device`` and ``force`` is false.
    """
    support = precision_support(precision, device)
    if support.native:
        return None
    if not force:
        raise EmulatedPrecisionError(f"{support.reason}; use fp32, or {how_to_force} to run {precision} anyway")
    return f"warning: {support.reason}; running {precision} anyway because it was forced"
