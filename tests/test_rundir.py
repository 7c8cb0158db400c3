"""Tests for the run-directory contract (napari_medtrans.rundir)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from napari_medtrans.rundir import RunDir, atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "file.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_atomic_write_failure_keeps_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_status_merges_fields_and_rejects_unknown_state(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.read_status() == {"state": "queued"}
    run.write_status(state="running", iteration=3, total_iterations=10)
    status = run.write_status(iteration=4)
    assert status["state"] == "running" and status["iteration"] == 4
    assert status["total_iterations"] == 10 and status["updated_at"] > 0
    assert run.read_status() == status
    with pytest.raises(ValueError, match="state: .exploded. is not one of"):
        run.write_status(state="exploded")


def test_metrics_are_read_incrementally_and_partial_lines_wait(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"iteration": 1, "loss": 0.5})
    run.append_metrics({"iteration": 2, "loss": 0.4})
    records, nxt = run.read_metrics()
    assert [r["iteration"] for r in records] == [1, 2] and nxt == 2
    with open(run.metrics_path, "a") as handle:
        handle.write('{"iteration": 3, "lo')
    records, nxt2 = run.read_metrics(nxt)
    assert records == [] and nxt2 == 2
    with open(run.metrics_path, "a") as handle:
        handle.write('ss": 0.3}\n')
    records, nxt3 = run.read_metrics(nxt2)
    assert records == [{"iteration": 3, "loss": 0.3}] and nxt3 == 3


def test_truncate_metrics_drops_steps_after_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    for it in range(1, 6):
        run.append_metrics({"iteration": it})
    run.truncate_metrics(3)
    records, _ = run.read_metrics()
    assert [r["iteration"] for r in records] == [1, 2, 3]


def test_preview_round_trip_without_pickle(tmp_path):
    run = RunDir(tmp_path)
    assert run.latest_preview() is None
    run.write_preview(10, {"output": np.ones((4, 5), np.float32)})
    field = np.zeros((2, 4, 5), np.float32)
    run.write_preview(20, {"output": np.full((4, 5), 2, np.float32), "field": field})
    preview = run.latest_preview()
    assert preview["iteration"] == 20
    assert set(preview["arrays"]) == {"output", "field"}
    assert preview["arrays"]["output"][0, 0] == 2
    assert (run.previews_dir / "it0000010.npz").is_file()


def test_stop_request_and_log(tmp_path):
    run = RunDir(tmp_path)
    assert not run.stop_requested()
    run.request_stop()
    assert run.stop_requested()
    run.clear_stop()
    assert not run.stop_requested()
    for i in range(30):
        run.log(f"line {i}")
    tail = run.tail_log(5)
    assert len(tail) == 5 and tail[-1].endswith("line 29")


def test_invalid_json_names_the_file(tmp_path):
    run = RunDir(tmp_path)
    run.config_path.write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        run.read_config()


def test_atomic_write_gives_readable_permissions_and_keeps_existing(tmp_path):
    new = tmp_path / "new.json"
    atomic_write_json(new, {})
    assert new.stat().st_mode & 0o777 == 0o644
    os.chmod(new, 0o600)
    atomic_write_json(new, {"x": 1})
    assert new.stat().st_mode & 0o777 == 0o600
