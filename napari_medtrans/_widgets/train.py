"""The Train widget: launch, watch, stop, resume and re-attach training runs.

Training never runs in the napari process. Start launches
``python -m training ...`` (:mod:`napari_medtrans.launcher`); the widget then
follows the run only through its run directory
(:class:`napari_medtrans.runwatch.RunWatcher`), polled by a Qt timer, so it can
equally follow a run started from the command line, on a cluster node writing
to a shared file system, or by a napari session that has since been closed
(Open run…). Closing the widget or napari leaves a running trainer running.

Roles: :mod:`._train_form` (the config form), :mod:`._run_view` (state,
progress, loss curves, errors), :mod:`._preview_layers` (preview layers in the
viewer); this module wires them to the launcher and the watcher.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from napari.viewer import Viewer
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QShowEvent
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans import registry
from napari_medtrans.checkpoint import CheckpointError
from napari_medtrans.launcher import (
    LaunchError,
    TrainerProcess,
    query_methods,
    stop_attached,
    trainer_gone,
)
from napari_medtrans.rundir import FINAL_STATES, RunDir
from napari_medtrans.runwatch import RunUpdate, RunWatcher

from ._background import BackgroundCall
from ._layout import breakable, make_scrollable
from ._preview_layers import PreviewLayers
from ._run_view import RunView
from ._train_form import TrainForm

LOG_LINES = 20
"""Lines of log.txt (and of the trainer's console) shown with an error."""


@dataclass
class FollowedRun:
    """The run the widget shows.

    Attributes
    ----------
    watcher : RunWatcher
        Incremental reader of its run directory.
    process : TrainerProcess or None
        The trainer when this widget started it; None for an attached run.
    stop_presses : int
        How often Stop was pressed (the second press kills).
    ended : bool
        No longer followed: the trainer is gone (final state, exit, lost) or
        the run directory became unreadable.
    """

    watcher: RunWatcher
    process: TrainerProcess | None = None
    stop_presses: int = 0
    ended: bool = False

    @property
    def rundir(self) -> RunDir:
        """Its run directory."""
        return self.watcher.run


class TrainWidget(QWidget):
    """Dock widget to train translators in a separate process and follow them.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer that shows the preview layers.
    """

    POLL_MS = 250
    """Interval between two looks at the run directory."""

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.run: FollowedRun | None = None
        self.form = TrainForm()
        self.view = RunView()
        self.previews = PreviewLayers(napari_viewer)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.open_button = QPushButton("Open run…")
        self.start_button.setToolTip("validate the form and start a new run in a separate process")
        self.stop_button.setToolTip("checkpoint and stop; press again to kill the trainer")
        self.resume_button.setToolTip("continue the shown run from its last checkpoint")
        self.open_button.setToolTip("follow an existing run directory (running or finished)")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.open_button.clicked.connect(lambda: self.open_run())

        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.resume_button, self.open_button):
            buttons.addWidget(button)
        form_area = QScrollArea()  # the form scrolls; buttons, progress and curves stay in view
        form_area.setWidgetResizable(True)
        form_area.setWidget(self.form)
        run_area = QWidget()
        run_layout = QVBoxLayout(run_area)
        run_layout.setContentsMargins(0, 0, 0, 0)
        run_layout.addLayout(buttons)
        run_layout.addWidget(self.message)
        run_layout.addWidget(self.view, 1)
        make_scrollable(run_area, min_height=80)
        form_area.setMinimumHeight(80)
        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(form_area)
        splitter.addWidget(run_area)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        self.splitter = splitter
        self._split = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        self.timer = QTimer(self)
        self.timer.setInterval(self.POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.form.methods_loaded.connect(self._update_buttons)
        self._update_buttons()
        self._methods_call = BackgroundCall(
            query_methods, self.form.set_methods, lambda exc: self._say(str(exc), error=True), parent=self
        )
        self._methods_call.start()  # not create_worker: see _background (closing while it runs)

    def showEvent(self, event: QShowEvent) -> None:
        """On the first show, give the run view (buttons, progress, curves) 3/5 of the height."""
        super().showEvent(event)
        if not self._split:
            total = sum(self.splitter.sizes())
            self.splitter.setSizes([total * 2 // 5, total - total * 2 // 5])
            self._split = True

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        """Validate the form and launch a new run."""
        request, problems = self.form.request()
        if problems:
            self._say("Cannot start:\n• " + "\n• ".join(problems), error=True)
            return
        try:
            process = TrainerProcess.start(request)
        except LaunchError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"started {request.method} (pid {process.pid})")
        self.previews.prepare(self.form.methods[request.method].outputs, request.size)
        self._follow(request.run_dir, process)

    def stop(self) -> None:
        """Ask the run to stop gracefully; a second press kills the trainer."""
        if self.run is None or self.run.ended:
            return
        force = self.run.stop_presses > 0
        if self.run.process is not None:
            action = self.run.process.stop()
        else:
            action = stop_attached(self.run.rundir, force=force)
        self.run.stop_presses += 1
        self._say(
            {
                "stopping": "stop requested: the trainer saves a checkpoint and exits (press Kill to end it now)",
                "killed": "trainer killed; Resume continues from its last checkpoint",
                "not running": "the trainer is not running",
            }[action]
        )
        self._update_buttons()

    def resume(self) -> None:
        """Continue the shown run from its last checkpoint in a new trainer process."""
        if self.run is None or not self.run.ended:
            return
        try:
            process = TrainerProcess.resume(self.run.rundir.path)
        except LaunchError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"resumed (pid {process.pid})")
        self._follow(self.run.rundir.path, process)

    def open_run(self, path: str | os.PathLike[str] | None = None) -> None:
        """Follow an existing run directory (asks for it when ``path`` is None)."""
        if path is None:
            path = QFileDialog.getExistingDirectory(self, "Open a run directory", self.form.runs_folder.text())
            if not path:
                return
        if not RunDir(path).exists():
            self._say(f"{path} is not a run directory (no config.json)", error=True)
            return
        self._say(breakable(f"attached to {path}"))
        self._follow(Path(path), None)

    # ------------------------------------------------------------------ following
    def _follow(self, path: Path, process: TrainerProcess | None) -> None:
        self.run = FollowedRun(RunWatcher(path), process)
        self.view.reset(str(path))
        self.poll()
        self.previews.flush()  # what the run holds already, at once (the user just asked for it)
        if not self.run.ended:
            self.timer.start()
        self._update_buttons()

    def poll(self) -> None:
        """Read what changed in the run directory and show it (called by the timer)."""
        run = self.run
        if run is None:
            return
        # Look at the process before the files: a trainer that exited has written
        # everything it will, so the poll below is the last one needed.
        returncode = run.process.returncode() if run.process is not None else None
        try:
            update = run.watcher.poll()
        except (OSError, ValueError) as exc:  # unreadable or not JSON: say so, stop polling
            self.timer.stop()
            run.ended = True
            self.view.show_problem(f"Cannot follow the run any more: {exc}", ["Open run… to retry."])
            self._update_buttons()
            return
        self._show(update)
        self.previews.step()
        state = run.watcher.state
        if run.process is not None:
            run.ended = returncode is not None
        else:
            run.ended = state in FINAL_STATES or trainer_gone(run.watcher.status)
        if not run.ended:
            return
        self.timer.stop()
        self.previews.flush()
        self.previews.discard_unfilled()
        self._conclude(run, returncode)
        self._update_buttons()

    def _show(self, update: RunUpdate) -> None:
        if update.reset_metrics:
            self.view.plot.clear_curves()
        if update.metrics:
            self.view.plot.add_records(update.metrics)
        if update.status is not None:
            self.view.show_status(update.status)
            self._update_buttons()
        if update.preview is not None:
            self.previews.show(update.preview)
        if update.errors:
            self.view.show_file_problems(update.errors)

    def _conclude(self, run: FollowedRun, returncode: int | None) -> None:
        """Explain how the run ended (replacing e.g. "stop requested"), and register a finished translator."""
        status = run.watcher.status
        state = run.watcher.state
        log = run.watcher.log_tail(LOG_LINES)
        if state == "finished":
            self.view.show_status(status)
            self._register(run.rundir)
        elif state == "failed":
            error = status.get("last_error") or "the trainer reported a failure"
            self.view.show_problem(f"Training failed: {error}", ["", "log.txt:", *log])
            self._say("training failed (details below)", error=True)
        elif state == "stopped":
            self.view.show_status(status, "Resume continues from the last checkpoint")
            self._say(f"stopped at iteration {status.get('iteration', '?')}; Resume continues from the last checkpoint")
        else:
            how = f"exited with code {returncode}" if returncode is not None else "is no longer running"
            console = run.process.console_tail(LOG_LINES) if run.process is not None else []
            lines = ["", "log.txt:", *log] + (["", "console:", *console] if console else [])
            self.view.show_problem(
                f"The trainer {how} while the run was '{state}'. Resume continues from the last checkpoint.", lines
            )
            self.view.show_status(status, "trainer gone")
            self._say(f"the trainer {how}", error=True)

    def _register(self, run: RunDir) -> None:
        """List the run's translator in the Translate widget (via :func:`registry.register_run`)."""
        try:
            path = registry.register_run(run.path)
        except (OSError, CheckpointError) as exc:
            self._say(f"finished, but its translator cannot be listed: {exc}", error=True)
            return
        self._say(breakable(f"finished: {path} is listed in the Translate widget"))

    # ------------------------------------------------------------------ helpers
    def _update_buttons(self) -> None:
        active = self.run is not None and not self.run.ended
        state = self.run.watcher.state if self.run is not None else None
        self.start_button.setEnabled(bool(self.form.methods) and not active)
        self.stop_button.setEnabled(active)
        self.stop_button.setText("Kill" if active and self.run.stop_presses else "Stop")
        self.resume_button.setEnabled(self.run is not None and self.run.ended and state != "finished")
        self.open_button.setEnabled(not active)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setStyleSheet("color: #f0716c;" if error else "")
        self.message.setText(text)
