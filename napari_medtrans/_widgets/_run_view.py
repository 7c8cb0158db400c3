"""The run display of the Train widget: state, progress with ETA, loss curves, errors.

Curves are drawn with pyqtgraph rather than matplotlib: appending points to a
pyqtgraph curve redraws only that item inside Qt's own paint cycle (well under
a millisecond for thousands of points, with automatic down-sampling and
clipping to the view), whereas a matplotlib canvas re-renders the whole figure
through Agg on every update (tens of milliseconds), which would eat most of
the < 100 ms event-loop budget while a run is followed. pyqtgraph also gives
zoom/pan and a legend with toggles for free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from itertools import cycle
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtWidgets import QLabel, QPlainTextEdit, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from ._layout import breakable

NON_LOSS_KEYS = frozenset(
    {"iteration", "step", "epoch", "time", "elapsed", "lr", "it_per_s", "seconds", "samples_per_s", "rank"}
)
"""Numeric metric keys that are not losses (not drawn as curves)."""

_COLORS = ("#4c9be8", "#e8774c", "#5cc46b", "#d6c04a", "#b476e0", "#e05c8a", "#49c6c6", "#a0a0a0")


def loss_values(record: Mapping[str, Any]) -> dict[str, float]:
    """The loss values of one metrics record (``record["losses"]`` or its numeric loss keys).

    Validation records (``val_*``) are not losses: the state line shows the latest.
    """
    source = record.get("losses") if isinstance(record.get("losses"), Mapping) else record
    return {
        key: float(value)
        for key, value in source.items()
        if key not in NON_LOSS_KEYS
        and not key.startswith(("lr", "val_"))
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (status.json and metrics come from files: any type)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def format_duration(seconds: float | None) -> str:
    """``3725`` → ``"1:02:05"``, ``65`` → ``"1:05"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LossPlot(pg.PlotWidget):
    """Live loss curves, one per loss name, against the iteration."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("#262930")  # napari's dark theme background
        self.showGrid(x=True, y=True, alpha=0.2)
        self.setLabel("bottom", "iteration")
        self.setLabel("left", "loss")
        self.getAxis("left").enableAutoSIPrefix(False)  # no "(x0.001)" on loss values
        self.addLegend(offset=(-5, 5))
        self.setClipToView(True)
        self.setDownsampling(auto=True, mode="peak")
        self.setMinimumHeight(120)
        # fill what the dock has (its 480 px size hint would make the scrolled run view overflow)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Ignored)
        self._points: dict[str, tuple[list[float], list[float]]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._colors = cycle(_COLORS)

    @property
    def names(self) -> list[str]:
        """The losses drawn so far."""
        return list(self._curves)

    def points(self, name: str) -> int:
        """Number of points of curve ``name``."""
        return len(self._points[name][0])

    def clear_curves(self) -> None:
        """Remove every curve."""
        for curve in self._curves.values():
            self.removeItem(curve)
        self.plotItem.legend.clear()
        self._points.clear()
        self._curves.clear()
        self._colors = cycle(_COLORS)

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append metric records (each with an ``iteration``) and redraw the curves they touch."""
        touched: dict[str, None] = {}  # curves in first-seen order: stable colours
        for record in records:
            x = _number(record.get("iteration"))
            if x is None:
                continue
            for name, value in loss_values(record).items():
                xs, ys = self._points.setdefault(name, ([], []))
                xs.append(x)
                ys.append(value)
                touched[name] = None
        for name in touched:
            if name not in self._curves:
                self._curves[name] = self.plot(pen=pg.mkPen(next(self._colors), width=1.5), name=name)
            xs, ys = self._points[name]
            self._curves[name].setData(np.asarray(xs), np.asarray(ys))


class RunView(QWidget):
    """Where the followed run is shown: path, state line, progress bar, curves, problems."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_label = QLabel("no run")
        self.run_label.setWordWrap(True)
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)  # a long stop/error message must not widen the dock
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.plot = LossPlot()
        self.problem = QPlainTextEdit()
        self.problem.setReadOnly(True)
        self.problem.setMaximumHeight(180)
        self.problem.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.run_label, self.state_label, self.progress, self.plot, self.problem):
            layout.addWidget(widget)
        layout.setStretchFactor(self.plot, 1)  # the curves take the room left

    def reset(self, run_path: str) -> None:
        """Start showing another run."""
        self.run_label.setText(breakable(f"run: {run_path}"))
        self.state_label.setText("waiting for the trainer…")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.plot.clear_curves()
        self.hide_problem()

    def show_status(self, status: Mapping[str, Any], note: str = "") -> None:
        """Show state, iteration, speed and ETA from a ``status.json`` dict."""
        state = str(status.get("state", "queued"))[:40]
        iteration = int(min(_number(status.get("iteration")) or 0, 2**31 - 1))
        total = int(min(_number(status.get("total_iterations")) or 0, 2**31 - 1))
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(max(0, min(iteration, total)))
            eta = format_duration(_number(status.get("eta_seconds"))) if state == "running" else "–"
            self.progress.setFormat(f"{iteration} / {total}   ETA {eta}")
        parts = [state]
        if _number(status.get("it_per_s")):
            parts.append(f"{_number(status['it_per_s']):.2f} it/s")
        if _number(status.get("val_mae_units")) is not None:
            parts.append(f"val MAE {_number(status['val_mae_units']):.4g}")
        if status.get("message"):
            parts.append(str(status["message"])[:200])
        if note:
            parts.append(note)
        self.state_label.setText(" · ".join(parts))

    def show_problem(self, title: str, lines: Iterable[str]) -> None:
        """Show an error with the lines that explain it (log tail, console tail)."""
        self.problem.setPlainText("\n".join([title, *lines]))
        self.problem.setVisible(True)
        self.problem.verticalScrollBar().setValue(self.problem.verticalScrollBar().maximum())

    def show_file_problems(self, problems: Iterable[str]) -> None:
        """Show problems with the run's files (they were skipped; following goes on)."""
        self.show_problem("Some files of the run could not be read and were skipped:", [f"• {p}" for p in problems])

    def hide_problem(self) -> None:
        """Hide the error box."""
        self.problem.clear()
        self.problem.setVisible(False)
