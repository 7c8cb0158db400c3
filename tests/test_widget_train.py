"""The Train widget with the real trainer in a separate process (run under Xvfb).

Tiny runs: 64² phantom slices, 3 subjects, networks 8 channels wide, one
thread per trainer so that the GUI process keeps a core.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_medtrans import cpu_features, registry
from napari_medtrans.launcher import local_trainer_pid
from napari_medtrans.rundir import RunDir

pytestmark = pytest.mark.gui

TINY = {"ngf": 8, "ndf": 8, "n_blocks": 1}
"""Method options that make the networks tiny (set through the form's option fields)."""

TIMEOUT_MS = 120_000


@pytest.fixture(autouse=True)
def _environment(monkeypatch, tmp_path):
    """Trainers inherit one thread and a private translator registry; none outlives its test."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(tmp_path / "models"))
    yield
    for status in tmp_path.rglob("status.json"):
        pid = local_trainer_pid(RunDir(status.parent).read_status())
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def train_widget(viewer, qtbot):
    """The Train widget of ``viewer``, once its method list has arrived."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Train")
    qtbot.waitUntil(lambda: bool(widget.form.methods), timeout=TIMEOUT_MS)
    return widget


def configure(widget, runs, name, *, method="pix2pix", iterations=20, data="paired"):
    """Fill the form for a tiny phantom run."""
    form = widget.form
    form.select_method(method)
    form.select_data(data)
    form.subjects.setValue(3)
    form.iterations.setValue(iterations)
    form.crop_size.setValue(64)
    form.log_every.setValue(2)
    form.preview_every.setValue(10)
    form.device.setCurrentText("cpu")
    form.threads.setValue(1)
    form.runs_folder.setText(str(runs))
    form.run_name.setText(name)
    for option in form.option_box(method).fields:
        if option.spec.name in TINY:
            option.widget.setValue(TINY[option.spec.name])


class StallProbe:
    """How long the event loop was blocked: gaps between ticks of a 10 ms Qt timer.

    ``worst_cpu`` counts the main thread's CPU time in a gap: the work that kept
    the loop from ticking, whatever the other processes on the machine do;
    ``worst_wall`` also counts waiting for a CPU (large on a loaded machine).
    """

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def _tick(self) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.wall.append(wall - self._wall)
        self.cpu.append(cpu - self._cpu)
        self._wall, self._cpu = wall, cpu

    def __enter__(self) -> StallProbe:
        self._wall, self._cpu = time.perf_counter(), time.thread_time()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    def report(self) -> str:
        return (
            f"event-loop stall while training: worst {max(self.cpu) * 1000:.1f} ms main-thread CPU, "
            f"{max(self.wall) * 1000:.1f} ms wall, over {len(self.wall)} ticks "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )


def iteration(widget) -> int:
    return int(widget.run.watcher.status.get("iteration") or 0)


def test_curves_take_losses_only_and_durations_read_well():
    from napari_medtrans._widgets._run_view import format_duration, loss_values

    record = {"iteration": 4, "time": 1.0, "lr": 2e-4, "it_per_s": 3.0, "G_L1": 0.5, "D": 0.7, "val_mae": 0.2}
    assert loss_values(record) == {"G_L1": 0.5, "D": 0.7}
    assert loss_values({"iteration": 1, "losses": {"G": 1}}) == {"G": 1.0}
    assert [format_duration(s) for s in (65, 3725, None, float("nan"))] == ["1:05", "1:02:05", "?", "?"]


def test_fields_become_vectors_on_a_grid():
    import numpy as np

    from napari_medtrans._widgets._preview_layers import field_vectors

    field = np.zeros((2, 32, 32), np.float32)
    field[0], field[1] = 0.01, -0.02  # Δrow, Δcol in pixels
    vectors = field_vectors(field)
    assert vectors.shape == (16 * 16, 2, 2)
    # true scale: the arrows are the displacement in pixels, not magnified
    assert np.allclose(vectors[:, 1], [0.01, -0.02]) and vectors[0, 0].tolist() == [1, 1]
    stack = field_vectors(np.stack([field, field]))
    assert stack.shape == (2 * 256, 2, 3) and set(stack[:, 0, 0]) == {0, 1}


@pytest.mark.slow  # spawns a process
def test_form_validates_and_shows_only_the_chosen_methods_options(make_napari_viewer, qtbot, tmp_path):
    widget = train_widget(make_napari_viewer(), qtbot)
    form = widget.form
    assert {"pix2pix", "cyclegan", "reggan", "uapi"} <= set(form.methods)
    form.select_method("cyclegan")
    assert form.option_box("cyclegan").isVisibleTo(widget) is True
    assert not form.option_box("pix2pix").isVisibleTo(widget)
    assert any(f.spec.name == "lambda_cycle" for f in form.option_box("cyclegan").fields)

    form.lr.setText("2e-4")
    request, problems = form.request()
    assert not problems and request.config.lr == 2e-4
    form.precision.setCurrentText("bf16")
    request, problems = form.request()
    assert not problems and 'precision="bf16"' in request.command()
    form.device.setCurrentText("mps")  # an accelerator but not CUDA: the form offers fp16, the request refuses it
    form.precision.setCurrentText("fp16")
    assert "fp16 needs a CUDA device" in "\n".join(form.request()[1])
    form.device.setCurrentText("cpu")
    if cpu_features.precision_support("fp16", "cpu").native:  # offered on this CPU too, and refused the same way
        assert "fp16 needs a CUDA device" in "\n".join(form.request()[1])
    else:  # this CPU only emulates fp16: the form withdraws it and falls back to fp32
        assert form.precision.currentText() == "fp32" and not form.request()[1]
    form.precision.setCurrentText("auto")

    form.select_method("pix2pix")
    form.select_data("unpaired")
    assert "pix2pix trains on paired data" in "\n".join(form.request()[1])

    form.select_data("folders")
    assert form.source.isVisibleTo(widget) and not form.subjects.isVisibleTo(widget)
    form.source.setText(str(tmp_path / "nowhere"))
    form.crop_size.setValue(50)
    widget.start_button.click()
    assert widget.run is None
    text = widget.message.text()
    assert "nowhere does not exist" in text and "choose a target folder" in text
    assert "multiple of 4" in text


@pytest.mark.slow  # spawns a process
def test_train_from_the_widget_until_finished(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    widget = train_widget(viewer, qtbot)
    configure(widget, tmp_path / "runs", "p2p")
    clicked = time.perf_counter()
    widget.start_button.click()  # launches the trainer and prepares the preview layers,
    QApplication.processEvents()  # which the viewer then draws: the click's own cost
    clicked = time.perf_counter() - clicked
    assert widget.run.process is not None and widget.stop_button.isEnabled()
    with StallProbe() as probe:
        qtbot.waitUntil(lambda: widget.run.ended, timeout=TIMEOUT_MS)
    print(f"\nStart click {clicked * 1000:.0f} ms; {probe.report()}")
    assert widget.run.watcher.state == "finished", widget.view.problem.toPlainText()
    assert widget.view.progress.value() == widget.view.progress.maximum() == 20
    plot = widget.view.plot
    assert "G_L1" in plot.names and plot.points("G_L1") == 10
    for role in ("input", "output", "target"):
        assert viewer.layers[f"preview: {role}"].data.shape == (64, 64)
    assert widget.previews.iteration == 20
    assert registry.resolve("p2p") == RunDir(tmp_path / "runs" / "p2p").translator_path.resolve()
    _, translate = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
    assert translate.translator_combo.findText("p2p") >= 0
    assert widget.start_button.isEnabled() and not widget.stop_button.isEnabled()
    assert max(probe.cpu) < 0.1


@pytest.mark.slow  # spawns a process
def test_stop_resume_and_reattach_after_a_restart(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = train_widget(viewer, qtbot)
    configure(widget, tmp_path / "runs", "long", iterations=100_000)
    widget.start_button.click()
    qtbot.waitUntil(lambda: iteration(widget) >= 4, timeout=TIMEOUT_MS)
    widget.stop_button.click()
    assert widget.stop_button.text() == "Kill"
    qtbot.waitUntil(lambda: widget.run.ended, timeout=TIMEOUT_MS)
    assert widget.run.watcher.state == "stopped" and widget.run.process.returncode() == 0
    stopped_at = iteration(widget)
    assert widget.resume_button.isEnabled()

    widget.resume_button.click()
    qtbot.waitUntil(
        lambda: widget.run.watcher.state == "running" and iteration(widget) > stopped_at + 2, timeout=TIMEOUT_MS
    )
    pid = widget.run.process.pid
    viewer.close()  # napari goes away; the trainer keeps running

    viewer = make_napari_viewer()
    widget = train_widget(viewer, qtbot)
    widget.open_run(tmp_path / "runs" / "long")
    assert widget.run.process is None and widget.stop_button.isEnabled()
    seen = iteration(widget)
    qtbot.waitUntil(lambda: iteration(widget) > seen, timeout=TIMEOUT_MS)
    assert widget.view.plot.points("G_L1") >= iteration(widget) // 2 - 1  # both sessions' points

    os.kill(pid, signal.SIGSTOP)  # a hung trainer: the graceful stop cannot happen
    widget.stop_button.click()
    assert RunDir(tmp_path / "runs" / "long").stop_requested()
    widget.stop_button.click()  # Kill
    qtbot.waitUntil(lambda: widget.run.ended, timeout=TIMEOUT_MS)
    assert "no longer running" in widget.view.problem.toPlainText()
    assert widget.resume_button.isEnabled()


@pytest.mark.slow  # spawns a process
def test_attach_to_a_run_finished_on_the_command_line(make_napari_viewer, qtbot, tmp_path):
    run_dir = tmp_path / "cli-run"
    command = [
        sys.executable,
        "-m",
        "training",
        "--method",
        "uapi",
        "--phantom",
        "paired",
        "--run-dir",
        str(run_dir),
        "--iterations",
        "6",
        "--size",
        "64",
        "--log-every",
        "2",
        "--preview-every",
        "6",
        "--device",
        "cpu",
        "--set",
        "data.phantom_subjects=3",
        "--set",
        "model.ngf=8",
        "--set",
        "model.n_blocks=1",
        "--set",
        "model.n_critic=1",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=TIMEOUT_MS / 1000)
    viewer = make_napari_viewer()
    widget = train_widget(viewer, qtbot)
    widget.open_run(run_dir)
    assert widget.run.ended and widget.run.watcher.state == "finished"
    assert not widget.stop_button.isEnabled() and not widget.resume_button.isEnabled()
    assert widget.view.plot.names and widget.view.progress.value() == 6
    assert viewer.layers["preview: uncertainty"].data.shape == (64, 64)
    assert registry.resolve("cli-run") == (run_dir / "translator.safetensors").resolve()


@pytest.mark.slow  # spawns a process
def test_a_failing_run_shows_its_error_and_the_viewer_stays(make_napari_viewer, qtbot, tmp_path, small_subject):
    from napari_medtrans.io import write_volume

    source, target = tmp_path / "t1", tmp_path / "ct"
    source.mkdir(), target.mkdir()
    for name in ("a", "b"):
        write_volume(small_subject.volume("ct"), target / f"{name}.nii.gz")
    write_volume(small_subject.volume("t1"), source / "a.nii.gz")
    (source / "b.nii.gz").write_bytes(b"a broken file, found only by the trainer")
    viewer = make_napari_viewer()
    widget = train_widget(viewer, qtbot)
    configure(widget, tmp_path / "runs", "broken", data="folders")
    widget.form.source.setText(str(source))
    widget.form.target.setText(str(target))
    widget.form.paired.setChecked(True)
    widget.start_button.click()
    assert widget.run is not None, widget.message.text()  # the form's check reads a.nii.gz only
    qtbot.waitUntil(lambda: widget.run.ended, timeout=TIMEOUT_MS)
    assert widget.run.watcher.state == "failed"
    problem = widget.view.problem.toPlainText()
    assert problem.startswith("Training failed:") and "b.nii.gz" in problem
    assert "log.txt:" in problem and widget.view.problem.isVisibleTo(widget)
    assert viewer.window._qt_window is not None and widget.start_button.isEnabled()


def test_a_stopped_run_replaces_the_stop_requested_message(make_napari_viewer, qtbot, tmp_path):
    from napari_medtrans._widgets.train import FollowedRun
    from napari_medtrans.runwatch import RunWatcher

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"method": "pix2pix"})
    run.write_status(state="stopped", iteration=7, total_iterations=20)
    widget = train_widget(make_napari_viewer(show=True), qtbot)
    widget.run = FollowedRun(RunWatcher(run.path), None, stop_presses=1)
    widget._say("stop requested: the trainer saves a checkpoint and exits (press Kill to end it now)")
    widget.poll()
    assert widget.run.ended
    assert widget.message.text() == "stopped at iteration 7; Resume continues from the last checkpoint"
    assert widget.stop_button.text() == "Stop" and not widget.stop_button.isEnabled()
    assert widget.resume_button.isEnabled()
