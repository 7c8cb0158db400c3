"""Wait for a condition while the Qt event loop keeps running (scripts, benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qtpy.QtWidgets import QApplication


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Process Qt events until ``predicate()`` is true; ``TimeoutError`` after ``timeout`` s."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.005)


def wait(seconds: float) -> None:
    """Keep processing Qt events for ``seconds``."""
    end = time.perf_counter() + seconds
    wait_until(lambda: time.perf_counter() >= end, timeout=seconds + 1.0)
