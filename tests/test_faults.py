"""Fault injection: full disks, hostile run directories and metadata, concurrent writers.

Each data-loss case of issue 21 has a test here that failed before the fix.
The full-disk cases run twice: with a fault-injecting writer (anywhere) and on
a real 2 MiB tmpfs (only where this process may mount one, e.g. as root).
"""

from __future__ import annotations

import os
import subprocess
import uuid
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


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted for the test; skipped where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


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
