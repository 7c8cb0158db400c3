"""Batch size by measurement (issue 23): the plan, the choice, the cache, and its use by the engine."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from test_inference import make_translator

from napari_medtrans import batch_size as bs
from napari_medtrans import inference
from napari_medtrans.inference import load_translator

#: Fake seconds per slice of each batch size: 4 is fastest.
PER_SLICE = {1: 1.0, 2: 0.8, 4: 0.5, 8: 0.7}


class FakeClock:
    """A clock that only moves when a batch of ``size`` slices is 'computed'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def compute(self, size: int) -> None:
        self.now += size * PER_SLICE.get(size, 2.0)


@pytest.fixture()
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bs, "timer", fake)
    return fake


def test_plan_measures_each_candidate_twice_then_keeps_the_fastest(clock):
    measured = []
    batches = bs.MeasuredBatches(50, None, measured.append)
    sizes = []
    for start, stop in batches:
        sizes.append(stop - start)
        clock.compute(stop - start)
    assert sizes == [1, 2, 4, 8, 1, 2, 4, 8, 4, 4, 4, 4, 4]  # 30 measured slices, then the winner; 50 in all
    assert measured == [4] and batches.seconds_per_slice == pytest.approx(PER_SLICE)


def test_short_volume_decides_nothing(clock):
    measured = []
    sizes = []
    for start, stop in bs.MeasuredBatches(20, None, measured.append):
        sizes.append(stop - start)
        clock.compute(stop - start)
    assert sizes == [1, 2, 4, 8, 1, 2, 2] and measured == []


def test_known_size_is_used_as_is(clock):
    assert list(bs.MeasuredBatches(7, 3, pytest.fail)) == [(0, 3), (3, 6), (6, 7)]


def test_cache_is_atomic_json_and_tolerates_a_broken_file(tmp_path):
    cache = bs.BatchSizeCache(tmp_path / "sub" / "batch_sizes.json")
    key = bs.BatchKey("m#abc", 256, 256, "cpu Fake CPU", 2, "fp32")
    assert cache.get(key) is None
    cache.put(key, 4)
    assert cache.get(key) == 4
    assert json.loads(cache.path.read_text()) == {"m#abc|256x256|cpu Fake CPU|2 threads|fp32": 4}
    assert [p.name for p in cache.path.parent.iterdir()] == ["batch_sizes.json"]  # no temp file left
    cache.path.write_text("{not json")
    assert cache.get(key) is None
    cache.put(bs.BatchKey("m#abc", 128, 128, "cpu Fake CPU", 2, "fp32"), 8)
    assert len(json.loads(cache.path.read_text())) == 1


def test_cache_dir_follows_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv(bs.CACHE_ENV, str(tmp_path / "c"))
    assert bs.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(bs.CACHE_ENV)
    if not sys.platform.startswith("linux"):
        pytest.skip("the XDG folders are Linux's (platformdirs picks the platform at import)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bs.cache_dir() == tmp_path / "xdg" / "napari-medtrans"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bs.cache_dir() == tmp_path / "home" / ".cache" / "napari-medtrans"


def test_translate_volume_measures_once_per_key_and_reuses(tmp_path, monkeypatch, clock):
    monkeypatch.setattr(inference, "BATCH_SIZES", bs.BatchSizeCache(tmp_path / "cache.json"))
    translator = load_translator(make_translator(tmp_path / "tiny.safetensors"), device="cpu")
    volume = np.random.default_rng(0).uniform(0, 500, (34, 16, 16)).astype(np.float32)
    sizes: list[int] = []

    def progress(done: int, total: int) -> None:
        sizes.append(done - sum(sizes))
        clock.compute(sizes[-1])

    first = translator.translate_volume(volume, progress=progress)
    assert sizes == [1, 2, 4, 8, 1, 2, 4, 8, 4]
    key = translator.batch_key(16, 16, "fp32")
    assert inference.BATCH_SIZES.get(key) == 4 and key.threads == torch.get_num_threads()
    sizes.clear()
    again = translator.translate_volume(volume, progress=progress)
    assert sizes == [4] * 8 + [2]  # read from the cache: no measuring
    np.testing.assert_allclose(again.image, first.image, atol=0.05)  # batch size changes rounding only
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert translator.batch_key(16, 16, "fp32") != key  # other threads: measured again
    assert translator.batch_key(16, 16, "bf16") != key
