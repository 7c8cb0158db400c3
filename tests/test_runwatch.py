"""Run-directory follower and trainer launcher, without Qt (fake run directories)."""

from __future__ import annotations

import signal
import sys
import time

import numpy as np
import pytest
import yaml

from napari_medtrans.contract import DataConfig, TrainConfig
from napari_medtrans.launcher import (
    TrainerProcess,
    TrainRequest,
    local_trainer_pid,
    stop_attached,
    trainer_gone,
)
from napari_medtrans.rundir import RunDir
from napari_medtrans.runwatch import RunWatcher


def _fake_run(path) -> RunDir:
    run = RunDir(path)
    run.write_config({"method": "pix2pix"})
    run.write_status(state="running", iteration=0, total_iterations=20)
    return run


def test_watcher_reads_only_what_changed(tmp_path):
    run = _fake_run(tmp_path / "run")
    watcher = RunWatcher(run.path)
    first = watcher.poll()
    assert first.status["state"] == "running" and not first.metrics and first.preview is None
    assert not watcher.poll()  # nothing changed: an empty update

    run.append_metrics({"iteration": 1, "G": 1.0})
    run.append_metrics({"iteration": 2, "G": 0.5})
    assert [r["iteration"] for r in watcher.poll().metrics] == [1, 2]
    run.append_metrics({"iteration": 3, "G": 0.4})
    update = watcher.poll()
    assert [r["iteration"] for r in update.metrics] == [3] and update.status is None

    run.write_preview(3, {"input": np.zeros((4, 4)), "output": np.ones((4, 4))})
    preview = watcher.poll().preview
    assert preview.iteration == 3 and set(preview.arrays) == {"input", "output"}
    assert watcher.poll().preview is None

    run.write_status(state="finished", iteration=20)
    assert watcher.poll().status["state"] == "finished" and watcher.finished


def test_watcher_starts_over_when_metrics_are_rewritten(tmp_path):
    run = _fake_run(tmp_path / "run")
    for i in range(1, 6):
        run.append_metrics({"iteration": i, "G": 1.0 / i})
    watcher = RunWatcher(run.path)
    assert len(watcher.poll().metrics) == 5
    run.truncate_metrics(2)  # what a resumed trainer does
    run.append_metrics({"iteration": 3, "G": 0.3})
    update = watcher.poll()
    assert update.reset_metrics and [r["iteration"] for r in update.metrics] == [1, 2, 3]


def test_watcher_waits_for_a_run_that_does_not_exist_yet(tmp_path):
    watcher = RunWatcher(tmp_path / "later")
    assert not watcher.poll() and watcher.state == "queued"


def test_request_validation_names_the_problems(tmp_path):
    (tmp_path / "empty").mkdir()
    data = DataConfig(source=str(tmp_path / "missing"), target=str(tmp_path / "empty"), size=50)
    request = TrainRequest(TrainConfig("pix2pix", str(tmp_path / "run"), iterations=0, data=data))
    problems = "\n".join(request.validate())
    assert "iterations" in problems and "multiple of 4" in problems
    assert "missing does not exist" in problems and "holds no volumes" in problems


def test_request_validation_reads_volumes_and_pairs(tmp_path, small_subject):
    from napari_medtrans.io import write_volume

    source, target = tmp_path / "t1", tmp_path / "ct"
    source.mkdir(), target.mkdir()
    write_volume(small_subject.volume("t1"), source / "a.nii.gz")
    write_volume(small_subject.volume("ct"), target / "b.nii.gz")
    data = DataConfig(source=str(source), target=str(target), paired=True, size=64)
    request = TrainRequest(TrainConfig("pix2pix", str(tmp_path / "run"), data=data))
    assert request.validate() == ["paired data: not in both folders: a, b"]
    (target / "b.nii.gz").rename(target / "a.nii.gz")
    assert request.validate() == []
    (source / "a.nii.gz").write_text("not a volume")
    assert "a.nii.gz" in request.validate()[0]


def test_request_refuses_an_existing_run_and_builds_the_command(tmp_path):
    _fake_run(tmp_path / "run")
    config = TrainConfig(
        "uapi",
        str(tmp_path / "run"),
        iterations=20,
        lr=2e-5,
        device="cpu",
        data=DataConfig(phantom="misaligned", size=64),
        model={"flag": True, "name": None, "w": 0.5},
    )
    request = TrainRequest(config)
    assert "already holds a run" in request.validate()[0]
    command = request.command("python")
    assert command[:7] == ["python", "-m", "training", "--method", "uapi", "--run-dir", str(tmp_path / "run")]
    assert set(command[8::2]) == {
        'data.phantom="misaligned"',
        "data.size=64",
        "iterations=20",
        "lr=2.0e-05",
        'device="cpu"',
        "model.flag=true",
        "model.name=null",
        "model.w=0.5",
    }
    for text in command[command.index("--set") + 1 :: 2]:  # parsed as YAML: floats stay floats
        key, value = text.split("=", 1)
        if key in ("lr", "model.w"):
            assert isinstance(yaml.safe_load(value), float)


def _sleeper(run_dir, seconds: float = 30.0) -> TrainerProcess:
    """A stand-in trainer: a process with 'training' on its command line that sleeps."""
    code = f"import time; time.sleep({seconds})  # training"
    return TrainerProcess.launch([sys.executable, "-c", code], run_dir)


@pytest.mark.slow  # spawns a process
def test_process_stop_is_graceful_then_kills(tmp_path):
    process = _sleeper(tmp_path / "run")
    assert process.stop() == "stopping" and process.run.stop_requested()
    process.popen.wait(10)  # the sleeper has no SIGTERM handler: it ends at once
    assert process.stop() == "not running"

    process = _sleeper(tmp_path / "run2")
    process.popen.send_signal(signal.SIGSTOP)  # a frozen trainer: SIGTERM stays pending
    assert process.stop() == "stopping"
    assert process.stop() == "killed"
    assert process.popen.wait(10) == -9


@pytest.mark.slow  # spawns a process
def test_attached_run_is_stopped_by_file_then_by_pid(tmp_path):
    import socket

    process = _sleeper(tmp_path / "run")
    run = _fake_run(tmp_path / "run")
    run.write_status(pid=process.pid, host=socket.gethostname())
    deadline = time.time() + 10
    while local_trainer_pid(run.read_status()) is None and time.time() < deadline:
        time.sleep(0.05)  # until the interpreter has replaced the fork's command line
    assert not trainer_gone(run.read_status())
    assert stop_attached(run, force=False) == "stopping" and run.stop_requested()
    assert stop_attached(run, force=True) == "killed"
    process.popen.wait(10)
    assert trainer_gone(run.read_status())


@pytest.mark.slow  # spawns a process
def test_console_output_is_kept(tmp_path):
    process = TrainerProcess.launch(
        [sys.executable, "-c", "import sys; print('hello'); sys.exit('boom')"], tmp_path / "run"
    )
    assert process.popen.wait(30) == 1
    assert process.console_tail() == ["hello", "boom"]
