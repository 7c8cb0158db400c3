"""Progress output of long command-line jobs: a tqdm bar on a terminal, plain lines otherwise.

A :class:`Progress` reports a job made of stages: :meth:`~Progress.begin` a stage
with its total, :meth:`~Progress.update` its count (with the latest values, e.g. the
loss), :meth:`~Progress.note` a message. On a terminal each stage is a tqdm bar
(count, rate, time left, values); where the output is a file or a pipe (logs, CI,
the GUI's subprocesses, tests) it writes plain lines instead: the stage, then its
count every tenth of the way, and the notes. ``Progress(None)`` reports nothing
(the default of library functions).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

PLAIN_STEPS = 10
"""Plain output writes a stage's count this many times over the stage (every tenth)."""


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is attached to a terminal (False for files, pipes, None and closed streams)."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def _shown(value: float | str) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Progress of one job, stage by stage, on ``stream``.

    Args:
        stream: where the output goes (default standard error); None: nothing is written.
        terminal: draw bars (True) or write plain lines (False); default: whether ``stream``
            is a terminal (:func:`is_terminal`).
        plain_steps: plain count lines per stage (0: notes only, for jobs that log their
            own progress lines).
    """

    def __init__(
        self, stream: TextIO | None = sys.stderr, *, terminal: bool | None = None, plain_steps: int = PLAIN_STEPS
    ) -> None:
        self.stream = stream
        self.terminal = is_terminal(stream) if terminal is None else terminal
        self.plain_steps = plain_steps
        self._bar: tqdm | None = None
        self._stage = ""
        self._unit = "it"
        self._total: int | None = None
        self._start = (0, 0.0)
        self._shown_step = 0
        self._values: dict[str, float | str] = {}

    @property
    def bar_active(self) -> bool:
        """A terminal bar is drawn now (messages must then go through :meth:`note`)."""
        return self._bar is not None

    def begin(self, stage: str, total: int | None = None, *, unit: str = "it", initial: int = 0) -> None:
        """Start a stage (ending the previous one): ``total`` steps of ``unit``, ``initial`` of them done."""
        self.close()
        self._stage, self._unit, self._total, self._values = stage, unit, total, {}
        self._start = (initial, time.monotonic())
        self._shown_step = initial * self.plain_steps // total if total else 0
        if self.stream is None:
            return
        if self.terminal:
            self._bar = tqdm(
                total=total, initial=initial, desc=stage, unit=unit, file=self.stream, dynamic_ncols=True, leave=True
            )
        elif self.plain_steps:
            self._line(f"{stage}: {initial}/{total} {unit}" if total else f"{stage}…")

    def update(self, done: int, **values: float | str) -> None:
        """The stage has ``done`` steps; ``values`` (e.g. ``loss=0.42``) are shown with the count."""
        self._values.update(values)
        if self._bar is not None:
            if values:
                self._bar.set_postfix({k: _shown(v) for k, v in self._values.items()}, refresh=False)
            self._bar.update(done - self._bar.n)
        elif self.stream is not None and self.plain_steps and self._total:
            step = done * self.plain_steps // self._total
            if step > self._shown_step or done >= self._total:
                self._shown_step = step
                self._line(self._plain_count(done))

    def _plain_count(self, done: int) -> str:
        initial, started = self._start
        seconds = time.monotonic() - started
        rate = (done - initial) / seconds if seconds > 0 else 0.0
        shown = "".join(f", {k} {_shown(v)}" for k, v in self._values.items())
        return f"{self._stage}: {done}/{self._total} {self._unit} ({rate:.3g} {self._unit}/s{shown})"

    def note(self, message: str, *, file: TextIO | None = None) -> None:
        """Write ``message`` as its own line (above the bar on a terminal); ``file`` instead of the stream."""
        target = file or self.stream
        if target is None:
            return
        if self._bar is not None:
            tqdm.write(message, file=target)
        else:
            print(message, file=target, flush=True)

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """End the current stage (the bar stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
