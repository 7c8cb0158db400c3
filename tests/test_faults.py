"""Fault injection: full disks, hostile run directories and metadata, concurrent writers.

Each data-loss case of issue 21 has a test here that failed before the fix.
The full-disk cases run twice: with a fault-injecting writer (anywhere) and on
a real 2 MiB tmpfs (only where this process may mount one, e.g. as root).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medtrans import io as mio
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.rundir import atomic_write_bytes

GOOD = Volume(np.full((4, 8, 8), 7, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), modality="CT")
#: 80 × 100 × 100 float32 noise: 3.2 MB raw, about 2.9 MB compressed, too large for a 2 MiB disk.
LARGE = Volume(np.random.default_rng(0).normal(size=(80, 100, 100)).astype(np.float32), (1, 1, 1), (0, 0, 0))


def _tmpfs(mount: Path, options: str):
    """Mount a tmpfs with ``options`` at ``mount`` for the test; skipped where mounting is not permitted."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a disk that fills up."""
    yield from _tmpfs(tmp_path / "disk", "size=2m")


def _truncating_write(real):
    """A sitk.WriteImage that writes, then loses the second half of the file, and does not raise."""

    def write(image, path, *args, **kwargs):
        real(image, path, *args, **kwargs)
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)

    return write


@pytest.mark.parametrize("suffix", mio.WRITE_SUFFIXES)
def test_silently_truncated_write_raises_and_keeps_the_old_file(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"ct{suffix}"
    write_volume(GOOD, target)
    monkeypatch.setattr(mio.sitk, "WriteImage", _truncating_write(sitk.WriteImage))
    with pytest.raises(OSError, match="writing failed|could not write") as info:
        write_volume(LARGE, target, overwrite=True)
    assert str(target) in str(info.value)
    monkeypatch.undo()
    assert read_volume(target).array.tolist() == GOOD.array.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp file left


@pytest.mark.parametrize("suffix", mio.WRITE_SUFFIXES)
def test_full_disk_write_raises_and_keeps_the_old_file(small_disk, suffix):
    target = small_disk / f"ct{suffix}"
    write_volume(GOOD, target)
    with pytest.raises(OSError, match=str(target)):
        write_volume(LARGE, target, overwrite=True)
    assert read_volume(target).array.tolist() == GOOD.array.tolist()
    assert [p.name for p in small_disk.iterdir()] == [target.name]


def test_full_disk_atomic_write_bytes_raises_and_keeps_the_old_file(small_disk):
    target = small_disk / "translator.safetensors"
    atomic_write_bytes(target, b"good")
    with pytest.raises(OSError):
        atomic_write_bytes(target, os.urandom(3 << 20))
    assert target.read_bytes() == b"good"
    assert [p.name for p in small_disk.iterdir()] == [target.name]


# --- hostile run directories ---------------------------------------------------------------------


def _train(argv: list[str]) -> int:
    from training.cli import main

    return main(argv)


def _tiny(run_dir: Path, iterations: int = 3, extra: list[str] | None = None) -> list[str]:
    from _training_helpers import tiny_args

    return tiny_args("pix2pix", run_dir, iterations=iterations, extra=extra)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_refuses_an_existing_run_without_resume_or_overwrite(tmp_path, capsys):
    from napari_medtrans.rundir import RunDir

    run_dir = tmp_path / "run"
    assert _train(_tiny(run_dir)) == 0
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert _train(_tiny(run_dir, iterations=2)) == 2
    err = capsys.readouterr().err
    assert str(run_dir) in err and "--resume" in err and "--overwrite" in err
    assert _snapshot(run_dir) == before
    assert _train(_tiny(run_dir, iterations=2, extra=["--overwrite"])) == 0
    run = RunDir(run_dir)
    assert run.read_status()["iteration"] == 2
    assert [r["iteration"] for r in run.read_metrics()[0] if "lr" in r] == [2]  # no records of the old run


def test_resume_writes_where_run_dir_points_not_where_config_says(tmp_path):
    import shutil

    from napari_medtrans.rundir import RunDir

    original = tmp_path / "original"
    assert _train(_tiny(original)) == 0
    before = _snapshot(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    elsewhere = tmp_path / "elsewhere"
    config = RunDir(copy).read_config()
    RunDir(copy).write_config(config | {"run_dir": str(elsewhere)})  # a config naming another folder
    assert _train(["--run-dir", str(copy), "--resume", "--iterations", "5"]) == 0
    assert RunDir(copy).read_status()["iteration"] == 5
    assert RunDir(copy).read_config()["run_dir"] == str(copy)
    assert _snapshot(original) == before
    assert not elsewhere.exists()


def test_resume_applies_a_new_learning_rate(tmp_path):
    from training.checkpointing import read_checkpoint_metadata

    run_dir = tmp_path / "run"
    assert _train(_tiny(run_dir)) == 0
    assert _train(["--run-dir", str(run_dir), "--resume", "--iterations", "4", "--set", "lr=0.5"]) == 0
    groups = read_checkpoint_metadata(run_dir / "checkpoints" / "last.safetensors")["optimizers"]
    assert {g["initial_lr"] for opt in groups.values() for g in opt["param_groups"]} == {0.5}


def test_a_second_trainer_on_a_locked_run_is_refused(tmp_path, capsys):
    import socket
    import sys

    from napari_medtrans.rundir import RunDir

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir.mkdir()
        (run_dir / "LOCK").write_text(f'{{"pid": {holder.pid}, "host": "{socket.gethostname()}", "started_at": 0}}')
        assert _train(_tiny(run_dir)) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "LOCK" in err
        assert not RunDir(run_dir).has_run_files()
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its lock is stale and replaced, and released at the end
    assert _train(_tiny(run_dir)) == 0
    assert not (run_dir / "LOCK").exists()


def test_orphan_temp_files_are_removed_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    assert _train(_tiny(run_dir)) == 0
    orphans = [run_dir / "checkpoints" / ".last.safetensors.k1ll3d.tmp", run_dir / ".status.json.x.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    assert _train(["--run-dir", str(run_dir), "--resume", "--iterations", "4"]) == 0
    assert not any(p.exists() for p in orphans)
    assert "a temp file left by a killed writer" in (run_dir / "log.txt").read_text()


@pytest.mark.parametrize(("minutes", "expected"), [(1e-9, [1, 2, 3, 4]), (0, [3, 4])])
def test_checkpoints_are_also_written_by_time(tmp_path, monkeypatch, minutes, expected):
    from training.loop import Trainer

    saved: list[int] = []
    original = Trainer._checkpoint
    monkeypatch.setattr(
        Trainer, "_checkpoint", lambda self, it, elapsed: (saved.append(it), original(self, it, elapsed))
    )
    assert _train(_tiny(tmp_path / "run", iterations=4, extra=["--checkpoint-minutes", str(minutes)])) == 0
    assert saved == expected


# --- medtrans translate: concurrent writers, stale uncertainty, two series ---------------------


@pytest.fixture()
def translate_setup(tmp_path, small_subject):
    from test_inference import make_translator

    model = make_translator(tmp_path / "tiny.safetensors")
    volume = small_subject.volume("t1")
    t1 = write_volume(volume.with_array(volume.array[:2]), tmp_path / "s0_t1.nii.gz")
    return model, t1, tmp_path / "out"


def test_concurrent_translate_into_one_folder_is_refused(translate_setup, monkeypatch, capsys):
    """A second translate starting while the first works finds the outputs claimed."""
    from napari_medtrans.cli import main
    from napari_medtrans.cli import translate as cli_translate

    model, t1, out = translate_setup
    argv = ["translate", str(t1), "--model", str(model), "--out", str(out)]
    codes = []
    real_read = cli_translate.read_volume

    def read_and_race(*args, **kwargs):
        monkeypatch.setattr(cli_translate, "read_volume", real_read)
        codes.append(main(argv))  # the second command, while the first is between claim and write
        return real_read(*args, **kwargs)

    monkeypatch.setattr(cli_translate, "read_volume", read_and_race)
    assert main(argv) == 0
    assert codes == [2]
    assert "output exists" in capsys.readouterr().err
    assert read_volume(out / "s0_t1_CT.nii.gz").array.shape == (2, 64, 64)


def test_failed_translate_releases_its_claims(translate_setup, monkeypatch):
    from napari_medtrans.cli import main
    from napari_medtrans.cli import translate as cli_translate

    model, t1, out = translate_setup
    monkeypatch.setattr(cli_translate, "read_volume", lambda *a, **k: (_ for _ in ()).throw(MemoryError("x")))
    with pytest.raises(MemoryError):
        main(["translate", str(t1), "--model", str(model), "--out", str(out), "--uncertainty", "tta"])
    assert list(out.glob("*")) == []


def test_overwrite_removes_a_stale_uncertainty_file(translate_setup):
    from napari_medtrans.cli import main

    model, t1, out = translate_setup
    assert main(["translate", str(t1), "--model", str(model), "--out", str(out), "--uncertainty", "tta"]) == 0
    assert (out / "s0_t1_CT_uncertainty.nii.gz").is_file()
    assert main(["translate", str(t1), "--model", str(model), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["s0_t1_CT.nii.gz"]


def test_translate_reads_the_series_named_by_series_uid(tmp_path, capsys):
    from _volumes import oblique_volume, write_dicom_series
    from test_inference import make_translator

    from napari_medtrans.cli import main

    model = make_translator(tmp_path / "tiny.safetensors")
    study = tmp_path / "study"
    write_dicom_series(study, oblique_volume(shape=(3, 16, 16), modality="MR"), description="t1", uid="1.2.3.1")
    write_dicom_series(study, oblique_volume(shape=(4, 16, 16), modality="MR"), description="t2", uid="1.2.3.2")
    out = tmp_path / "out"
    assert main(["translate", str(study), "--model", str(model), "--out", str(out)]) == 2
    assert "--series-uid" in capsys.readouterr().err
    assert main(["translate", str(study), "--model", str(model), "--out", str(out), "--series-uid", "1.2.3.2"]) == 0
    assert read_volume(out / "study_CT.nii.gz").array.shape == (4, 16, 16)
    assert list(out.iterdir()) == [out / "study_CT.nii.gz"]


# --- silent wrong results in io --------------------------------------------------------------


@pytest.fixture()
def six_slices(tmp_path):
    from _volumes import oblique_volume, write_dicom_series

    folder = tmp_path / "ct"
    write_dicom_series(folder, oblique_volume(shape=(6, 16, 16)), description="ct", uid="1.2.3.1")
    return folder


@pytest.mark.parametrize("link", ["dangling", "self-loop"])
def test_dicom_folder_with_a_bad_link_reads_every_slice_and_says_what_it_skipped(six_slices, link):
    for name in ("aa.dcm", "zz.dcm"):
        (six_slices / name).symlink_to("/nonexistent/slice.dcm" if link == "dangling" else six_slices / name)
    with pytest.warns(UserWarning, match=r"2 of 8 entries could not be read.*aa\.dcm \(broken link"):
        volume = read_volume(six_slices)
    assert volume.array.shape == (6, 16, 16)


def test_dicom_series_with_mixed_orientations_is_refused(tmp_path):
    from _volumes import oblique_volume, write_dicom_series

    folder = tmp_path / "mixed"
    tilted = oblique_volume(shape=(3, 16, 16))
    straight = Volume(tilted.array, tilted.spacing, (0.0, 0.0, 40.0), modality="CT")
    write_dicom_series(folder, tilted, description="a", uid="1.2.3.9")
    write_dicom_series(folder, straight, description="b", uid="1.2.3.9")
    with pytest.raises(mio.VolumeReadError, match=r"mixes slice orientations \(3 of 6 slices.*b_000\.dcm"):
        read_volume(folder)


def _nifti_with(tmp_path: Path, name: str, **floats: tuple[int, float]) -> Path:
    """A 4 × 5 × 6 NIfTI-1 file (spacing 1.5, 1.5, 2) with float32 header fields set at byte offsets."""
    import struct

    path = write_volume(Volume(np.zeros((4, 5, 6), np.int16), (1.5, 1.5, 2.0), (0, 0, 0)), tmp_path / "v.nii")
    data = bytearray(path.read_bytes())
    for offset, value in floats.values():
        struct.pack_into("<f", data, offset, value)
    target = tmp_path / f"{name}.nii"
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("value", [0.0, float("nan"), float("inf"), 1e30, 1e-30])
def test_nifti_absurd_pixdim_is_refused(tmp_path, value):
    path = _nifti_with(tmp_path, "bad", pixdim_x=(80, value))
    with pytest.raises(
        mio.VolumeReadError, match=re.escape(f"bad.nii: the header's x voxel size (pixdim) is {value:g}")
    ):
        read_volume(path)


def test_nifti_qform_sform_disagreement_gives_one_warning(tmp_path, capfd):
    path = _nifti_with(tmp_path, "shifted", srow_x_offset=(292, 10.0))  # sform moved 10 mm along x
    with pytest.warns(UserWarning, match=r"shifted\.nii: the qform and the sform .* disagree \(by up to 10 mm\)"):
        read_volume(path)
    assert capfd.readouterr().err == ""  # none of ITK's multi-line warnings


# --- hostile translator metadata and weights ---------------------------------------------------


def _retamper(path: Path, edit=None, text: str | None = None, tensors_edit=None) -> Path:
    """Rewrite a translator file with edited metadata (``edit(dict)`` or raw ``text``) or tensors."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as handle:
        header = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    if edit is not None:
        data = json.loads(header["medtrans"])
        edit(data)
        text = json.dumps(data)
    if text is not None:
        header["medtrans"] = text
    if tensors_edit is not None:
        tensors_edit(tensors)
    save_file(tensors, str(path), metadata=header)
    return path


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(data):
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


def _nan_first_weight(tensors):
    name = min(tensors)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")


HOSTILE_METADATA = {
    "n_blocks 10 million": (
        {"edit": _set("networks", "generator", "n_blocks", 10_000_000)},
        r"networks\.generator\.n_blocks is 10000000; it must lie in \[0, 64\]",
    ),
    "ngf a string": (
        {"edit": _set("networks", "generator", "ngf", "64")},
        r"networks\.generator\.ngf must be an integer, got str",
    ),
    "ngf a list": (
        {"edit": _set("networks", "generator", "ngf", [8])},
        r"networks\.generator\.ngf must be an integer, got list",
    ),
    "networks a list": ({"edit": _set("networks", [{"arch": "resnet"}])}, "'networks' must be an object, got list"),
    "metadata a list": ({"text": "[1, 2, 3]"}, "metadata must be a JSON object, got list"),
    "metadata a number": ({"text": "42"}, "metadata must be a JSON object, got int"),
    "nested 100000 deep": (
        {"text": '{"provenance": ' + "[" * 100_000 + "]" * 100_000 + "}"},
        "nests 100001 levels deep",
    ),
    "NaN window": ({"edit": _set("target_intensity", "low", float("nan"))}, r"target_intensity\.low is nan"),
    "-inf window": ({"edit": _set("target_intensity", "low", float("-inf"))}, r"target_intensity\.low is -inf"),
    "1e38 window": ({"edit": _set("target_intensity", "high", 1e38)}, r"target_intensity\.high is 1e\+38"),
    "window a string": ({"edit": _set("target_intensity", "high", "3000")}, "target_intensity.high must be a number"),
    "size a string": ({"edit": _set("size", "big")}, "size must be an integer, got str"),
    "slice_axis 5": ({"edit": _set("slice_axis", 5)}, r"slice_axis is 5; it must lie in \[0, 2\]"),
    "name a dict": ({"edit": _set("name", {"a": 1})}, "'name' must be a string"),
    "NaN weights": ({"tensors_edit": _nan_first_weight}, "generator tensors hold NaN or infinite values"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_METADATA))
def test_hostile_translator_file_gives_one_clear_error(tmp_path, case):
    from test_inference import make_translator

    from napari_medtrans.checkpoint import CheckpointError, load_modules

    changes, message = HOSTILE_METADATA[case]
    path = _retamper(make_translator(tmp_path / "evil.safetensors"), **changes)
    with pytest.raises(CheckpointError, match=message) as info:
        load_modules(path)
    assert str(path) in str(info.value)


def test_models_and_by_name_translate_skip_a_malformed_file(tmp_path, monkeypatch, capsys, small_subject):
    from test_inference import make_translator

    from napari_medtrans.cli import main

    models = tmp_path / "models"
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models))
    make_translator(models / "good.safetensors")
    bad = _retamper(make_translator(models / "bad.safetensors"), text="[1, 2]")
    with pytest.warns(UserWarning, match=f"skipping {bad}"):
        assert main(["models"]) == 0
    assert "good" in capsys.readouterr().out
    volume = small_subject.volume("t1")
    t1 = write_volume(volume.with_array(volume.array[:2]), tmp_path / "s.nii.gz")
    with pytest.warns(UserWarning, match=f"skipping {bad}"):
        assert main(["translate", str(t1), "--model", "good", "--out", str(tmp_path / "out")]) == 0


# --- hostile run directories seen by the Train widget's watcher ------------------------------


def _watched_run(tmp_path):
    from napari_medtrans.rundir import RunDir
    from napari_medtrans.runwatch import RunWatcher

    run = RunDir(tmp_path / "run")
    run.write_config({"method": "pix2pix"})
    run.write_status(state="running", iteration=1, total_iterations=10)
    run.append_metrics({"iteration": 1, "G": 1.0})
    run.write_preview(1, {"input": np.zeros((4, 4)), "output": np.ones((4, 4))})
    watcher = RunWatcher(run.path)
    assert watcher.poll().preview.iteration == 1
    return run, watcher


def _point_latest_at(run, name: str, iteration: int = 2) -> None:
    import json

    (run.previews_dir / "latest.json").write_text(json.dumps({"iteration": iteration, "file": name}))


def _zip_bomb(run) -> None:
    import zipfile

    with (
        zipfile.ZipFile(run.previews_dir / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("output.npy", "w", force_zip64=True) as member,
    ):
        header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
        header["shape"] = (16384, 16384)
        np.lib.format.write_array_header_1_0(member, header)
        zeros = bytes(1 << 20)
        for _ in range(80):  # 80 MiB of zeros, 80 kB compressed
            member.write(zeros)
    _point_latest_at(run, "bomb.npz")


def _field_of_wrong_shape(run) -> None:
    np.savez(run.previews_dir / "odd.npz", input=np.zeros((4, 4)), field=np.zeros((3, 4, 4)))
    _point_latest_at(run, "odd.npz")


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


HOSTILE_RUNS = {
    "status.json a FIFO": (lambda run: _fifo(run.status_path), "status.json: not a regular file"),
    "preview npz a FIFO": (
        lambda run: (_fifo(run.previews_dir / "p.npz"), _point_latest_at(run, "p.npz")),
        "p.npz: not a regular file",
    ),
    "metrics.jsonl a FIFO": (lambda run: _fifo(run.metrics_path), "metrics.jsonl: not a regular file"),
    "status.json a list": (lambda run: run.status_path.write_text("[1, 2]"), "expected a JSON object, got list"),
    "status.json 2 MB": (
        lambda run: run.status_path.write_text('{"a": "' + "x" * (2 << 20) + '"}'),
        "status.json: 2097161 bytes, more than the 1048576",
    ),
    "latest.json escapes": (lambda run: _point_latest_at(run, "../config.json"), "'file' must name a file in"),
    "latest.json a list": (
        lambda run: (run.previews_dir / "latest.json").write_text("[]"),
        "latest.json: expected a JSON object",
    ),
    "iteration a string": (
        lambda run: (run.previews_dir / "latest.json").write_text('{"iteration": "2", "file": "it0000001.npz"}'),
        "'iteration' must be an integer",
    ),
    "zip bomb preview": (_zip_bomb, "would take 83886208 bytes uncompressed"),
    "field of wrong shape": (_field_of_wrong_shape, "array 'field' has shape \\(3, 4, 4\\)"),
    "metrics lines not objects": (
        lambda run: run.metrics_path.open("a").write('[1]\n{"iteration": 2}\nnan\n'),
        "skipped 2 lines that are not JSON objects",
    ),
    "metrics line 2 MB": (
        lambda run: run.metrics_path.open("a").write('{"a": "' + "x" * (2 << 20) + '"}\n'),
        "skipped 1 lines",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_RUNS))
def test_watcher_reports_a_hostile_run_file_and_never_raises(tmp_path, case):
    import threading

    damage, message = HOSTILE_RUNS[case]
    run, watcher = _watched_run(tmp_path)
    damage(run)
    result: list = []
    poller = threading.Thread(target=lambda: result.append(watcher.poll()), daemon=True)
    poller.start()
    poller.join(timeout=20)
    assert not poller.is_alive(), "poll blocked"
    update = result[0]
    assert len(update.errors) == 1 and re.search(message, update.errors[0]), update.errors
    assert watcher.poll().errors == []  # reported once per version of the file
    assert watcher.state == "running"


def test_watcher_keeps_following_after_a_bad_metrics_line(tmp_path):
    run, watcher = _watched_run(tmp_path)
    with run.metrics_path.open("a") as handle:
        handle.write('garbage\n{"iteration": 2, "G": 0.5}\n')
    update = watcher.poll()
    assert [r["iteration"] for r in update.metrics] == [2] and len(update.errors) == 1
    run.append_metrics({"iteration": 3, "G": 0.25})
    assert [r["iteration"] for r in watcher.poll().metrics] == [3]


# --- read-only output folders: refused before any work ----------------------------------------


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only tmpfs (read-only even for root)."""
    yield from _tmpfs(tmp_path / "ro", "ro,size=1m")


def test_train_into_a_read_only_folder_is_refused_up_front(read_only_folder, capsys):
    assert _train(_tiny(read_only_folder / "run")) == 2
    assert "cannot write there" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "--model", "t1-ct-resnet", "--phantom", "1", "--out", "{out}"],
        ["train-segmenter", "--modality", "CT", "--phantom", "1", "--out", "{out}/seg.safetensors"],
    ],
)
def test_cli_into_a_read_only_folder_is_refused_before_the_work(read_only_folder, capsys, command):
    import time

    from napari_medtrans.cli import main

    start = time.perf_counter()
    out = str(read_only_folder / "results")
    assert main([part.replace("{out}", out) for part in command]) == 2
    assert f"{out}: cannot write there" in capsys.readouterr().err
    assert time.perf_counter() - start < 10  # no evaluation or training ran


def test_a_file_name_starting_with_a_dash(translate_setup, monkeypatch, capsys):
    from napari_medtrans.cli import main

    model, t1, out = translate_setup
    monkeypatch.chdir(t1.parent)
    t1.rename("-scan.nii.gz")
    with pytest.raises(SystemExit):
        main(["translate", "-scan.nii.gz", "--model", str(model), "--out", str(out)])
    assert "-scan.nii.gz is a file; put file names starting with '-' after '--'" in capsys.readouterr().err
    assert main(["translate", "--model", str(model), "--out", str(out), "--", "-scan.nii.gz"]) == 0
    assert read_volume(out / "-scan_CT.nii.gz").array.shape == (2, 64, 64)


CLOSE_WHILE_QUERYING = """
import time
import napari
from qtpy.QtWidgets import QApplication
import napari_medtrans._widgets.train as train
train.query_methods = lambda: (time.sleep(2), ())[1]
viewer = napari.Viewer(show=False)
viewer.window.add_dock_widget(train.TrainWidget(viewer))
QApplication.processEvents()
viewer.close()
"""


@pytest.mark.gui
def test_closing_the_viewer_while_the_train_widget_queries_raises_nothing(tmp_path):
    import sys

    from _training_helpers import subprocess_env

    done = subprocess.run(
        [sys.executable, "-c", CLOSE_WHILE_QUERYING],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "has been deleted" not in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.gui
def test_run_view_shows_a_hostile_status_without_raising(qtbot):
    from napari_medtrans._widgets._run_view import RunView

    view = RunView()
    qtbot.addWidget(view)
    view.show_status(
        {
            "state": {"a": 1},
            "iteration": "abc",
            "total_iterations": 10,
            "it_per_s": "fast",
            "eta_seconds": [1],
            "val_mae_units": float("nan"),
            "message": "x" * 10_000,
        }
    )
    assert view.progress.format() == "0 / 10   ETA –" and len(view.state_label.text()) < 300
    view.plot.add_records([{"iteration": "x", "G": 1.0}, {"iteration": [2], "G": 1.0}, {"iteration": 3, "G": 0.5}])
    assert view.plot.names == ["G"] and view.plot.points("G") == 1
    view.show_file_problems(["/run/status.json: not a regular file"])
    assert "status.json: not a regular file" in view.problem.toPlainText()


def test_a_lock_that_is_a_fifo_is_refused_without_blocking(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.mkfifo(run_dir / "LOCK")
    assert _train(_tiny(run_dir)) == 2
    assert "LOCK: not a regular file" in capsys.readouterr().err
