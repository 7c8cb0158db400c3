"""Cancellation and resume: SIGKILL + --resume, SIGTERM, stop file, NaN losses,
and exact continuation (optimiser, RNG and sampler state restored)."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch
from _training_helpers import start_training, tiny_args, tiny_config
from safetensors.torch import load_file

from napari_medtrans.rundir import RunDir

pytestmark = pytest.mark.slow  # starts trainer processes


def _wait(predicate, timeout: float, proc=None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"trainer exited early with code {proc.returncode}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the trainer")


def _status(run: RunDir) -> dict:
    try:
        return run.read_status()
    except (ValueError, OSError):
        return {}


def _assert_checkpoints_load(run: RunDir) -> list[int]:
    from training.checkpointing import read_checkpoint_metadata

    iterations = []
    files = sorted(run.checkpoints_dir.glob("*.safetensors"))
    assert files, "no checkpoint written"
    for path in files:
        meta = read_checkpoint_metadata(path)
        tensors = load_file(path)
        assert any(k.startswith("net.") for k in tensors) and any(k.startswith("optim.") for k in tensors)
        iterations.append(meta["iteration"])
    return iterations


def test_sigkill_then_resume_continues(tmp_path):
    run = RunDir(tmp_path / "run")
    args = tiny_args("pix2pix", run.path, iterations=400, extra=["--checkpoint-every", "2", "--preview-every", "0"])
    proc = start_training(args, tmp_path / "first.log")
    try:
        _wait(lambda: (_status(run).get("last_checkpoint_iteration") or 0) >= 4, 120, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    killed_at = _status(run)["iteration"]
    saved = _assert_checkpoints_load(run)
    resume_from = max(saved)
    assert 4 <= resume_from <= killed_at

    proc = start_training(
        ["--run-dir", str(run.path), "--resume", "--iterations", str(resume_from + 4)], tmp_path / "second.log"
    )
    assert proc.wait(180) == 0, (tmp_path / "second.log").read_text()
    status = run.read_status()
    assert status["state"] == "finished" and status["iteration"] == resume_from + 4
    assert (
        f"resumed from {run.checkpoints_dir / 'last.safetensors'} at iteration {resume_from}"
        in run.log_path.read_text()
    )
    records, _ = run.read_metrics()
    iterations = [r["iteration"] for r in records if "it_per_s" in r]
    assert iterations == sorted(iterations) and iterations[-1] == resume_from + 4  # no duplicates after resume
    assert _assert_checkpoints_load(run)
    assert json.loads(run.config_path.read_text())["iterations"] == resume_from + 4


def test_sigterm_checkpoints_and_stops(tmp_path):
    run = RunDir(tmp_path / "run")
    proc = start_training(
        tiny_args("cyclegan", run.path, iterations=500, extra=["--checkpoint-every", "1000", "--preview-every", "0"]),
        tmp_path / "log",
    )
    try:
        _wait(lambda: (_status(run).get("iteration") or 0) >= 2, 120, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    status = run.read_status()
    assert status["state"] == "stopped" and 2 <= status["iteration"] < 500
    assert status["last_checkpoint_iteration"] == status["iteration"]
    assert _assert_checkpoints_load(run) == [status["iteration"]]
    assert run.translator_path.is_file()


def test_stop_file_stops_in_process(tmp_path):
    from training.loop import Trainer

    cfg = tiny_config("pix2pix", tmp_path / "run", iterations=50)
    trainer = Trainer(cfg)

    RunDir(cfg.run_dir).path.mkdir(parents=True)
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        if calls["n"] == 4:
            trainer.run.request_stop()
        return trainer.run.stop_requested()

    trainer._stop_requested = stop_after_three
    assert trainer.run_training() == 0
    status = trainer.run.read_status()
    assert status["state"] == "stopped" and status["iteration"] == 3
    assert not trainer.run.stop_requested()  # cleared, so --resume does not stop at once


def test_nan_loss_fails_and_keeps_last_good_checkpoint(tmp_path):
    from training.checkpointing import read_checkpoint_metadata
    from training.cli import build_config, build_parser
    from training.loop import train

    run_dir = tmp_path / "run"
    assert train(tiny_config("pix2pix", run_dir, iterations=3)) == 0
    last = run_dir / "checkpoints" / "last.safetensors"
    before = last.read_bytes()
    args = build_parser().parse_args(
        ["--run-dir", str(run_dir), "--resume", "--iterations", "9", "--set", "model.lambda_l1=.nan"]
    )
    assert train(build_config(args), resume=True) == 1
    status = RunDir(run_dir).read_status()
    assert status["state"] == "failed"
    assert "non-finite loss" in status["last_error"] and "iteration 3" in status["last_error"]
    assert last.read_bytes() == before and read_checkpoint_metadata(last)["iteration"] == 3


@pytest.mark.parametrize("method", ["cyclegan", "uapi", "gcgan", "shape-cyclegan", "unit", "munit"])
def test_resume_is_exact(tmp_path, method):
    """4 iterations straight == 2 iterations, stop, resume, 2 more (bit-identical weights and
    optimiser state: RNGs, sampler, image pools and optimiser moments are restored)."""
    from training.cli import build_config, build_parser
    from training.loop import Trainer, train

    straight = tmp_path / "straight"
    assert train(tiny_config(method, straight, iterations=4)) == 0
    split = tmp_path / "split"
    trainer = Trainer(tiny_config(method, split, iterations=4))
    trainer._stop_requested = lambda: trainer.iteration == 2
    assert trainer.run_training() == 0 and trainer.run.read_status()["state"] == "stopped"
    args = build_parser().parse_args(["--run-dir", str(split), "--resume"])
    assert train(build_config(args), resume=True) == 0
    a = load_file(straight / "checkpoints" / "last.safetensors")
    b = load_file(split / "checkpoints" / "last.safetensors")
    nets = [k for k in a if k.startswith(("net.", "optim."))]
    assert nets and set(nets) <= set(b)
    for key in nets:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
