"""A slow call in a daemon thread whose result reaches the Qt thread by polling.

napari's ``create_worker`` emits Qt signals from its thread. When the viewer is
closed and Python exits while the call still runs, the signal object is gone
and the thread dies with ``RuntimeError: wrapped C/C++ object of type
WorkerBaseSignals has been deleted``. Here the thread never touches Qt: it
stores the outcome, and a timer owned by the widget (deleted with it) hands it
over on the Qt thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer


class BackgroundCall(QObject):
    """Run ``func()`` in a daemon thread; call ``on_result(value)`` or ``on_error(exc)`` on the Qt thread.

    Args:
        func: the slow call (it must not use Qt).
        on_result: receives its return value.
        on_error: receives the exception it raised.
        parent: the widget whose lifetime bounds the delivery.
        interval_ms: how often the outcome is looked for.
    """

    def __init__(
        self,
        func: Callable[[], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        parent: QObject,
        interval_ms: int = 100,
    ) -> None:
        super().__init__(parent)
        self._func = func
        self._on_result = on_result
        self._on_error = on_error
        self._outcome: list[tuple[bool, Any]] = []
        self._thread = threading.Thread(
            target=self._run, name=f"medtrans-{getattr(func, '__name__', 'call')}", daemon=True
        )
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._deliver)

    def start(self) -> None:
        """Start the call."""
        self._thread.start()
        self._timer.start()

    @property
    def done(self) -> bool:
        """True once the outcome was delivered."""
        return bool(self._outcome) and not self._timer.isActive()

    def _run(self) -> None:
        try:
            self._outcome.append((True, self._func()))
        except Exception as exc:  # noqa: BLE001 - handed to on_error on the Qt thread
            self._outcome.append((False, exc))

    def _deliver(self) -> None:
        if not self._outcome:
            return
        self._timer.stop()
        ok, value = self._outcome[0]
        (self._on_result if ok else self._on_error)(value)
