"""The Qt-free on-the-fly scheduler: stale dropping, prefetch order, preview, cache."""

from __future__ import annotations

import threading
import time

import pytest

from napari_medtrans.onthefly import SliceJob, SliceScheduler


def _recorder(delay: float = 0.0, gate: threading.Event | None = None):
    calls: list[tuple[int, str]] = []

    def compute(index: int, precision: str) -> tuple[int, str]:
        calls.append((index, precision))
        if gate is not None:
            gate.wait(5)
        time.sleep(delay)
        return index, precision

    return compute, calls


def _drain(scheduler: SliceScheduler) -> list[SliceJob]:
    jobs = []
    while (outcome := scheduler.step()) is not None:
        jobs.append(outcome.job)
    return jobs


def test_idle_before_first_request():
    compute, calls = _recorder()
    scheduler = SliceScheduler(compute, 10)
    assert scheduler.next_job() is None
    assert scheduler.step() is None
    assert calls == []


def test_current_slice_first_then_prefetch_ahead_then_behind():
    compute, _ = _recorder()
    scheduler = SliceScheduler(compute, 10, prefetch=2, preview="never")
    scheduler.request(5)
    jobs = _drain(scheduler)
    assert [(j.index, j.prefetch) for j in jobs] == [(5, False), (6, True), (7, True), (4, True), (3, True)]
    assert scheduler.request(6) == (6, "fp32")  # prefetched: served from the cache
    # scrolling backwards turns the prefetch direction around
    scheduler.request(2)
    assert [j.index for j in _drain(scheduler)] == [2, 1, 0]


def test_prefetch_order_clipped_at_volume_ends():
    scheduler = SliceScheduler(lambda i, p: i, 4, prefetch=3)
    assert scheduler.prefetch_order(0) == [1, 2, 3]
    assert scheduler.prefetch_order(3) == [2, 1, 0]


def _start(scheduler: SliceScheduler, outcomes: list) -> threading.Thread:
    assert scheduler.claim()
    thread = threading.Thread(target=lambda: outcomes.extend(scheduler.run()))
    thread.start()
    return thread


def test_stale_requests_are_dropped_while_worker_is_busy():
    gate = threading.Event()
    compute, calls = _recorder(gate=gate)
    scheduler = SliceScheduler(compute, 40, prefetch=1, preview="never")
    scheduler.request(0)
    results: list = []
    thread = _start(scheduler, results)
    while not calls:  # slice 0 is in flight
        time.sleep(0.001)
    for index in range(1, 20):  # the user scrolls past 1..18 while 0 computes
        scheduler.request(index)
        assert not scheduler.claim()  # one runner at a time
    gate.set()
    thread.join(5)
    assert not thread.is_alive()  # the worker ends when nothing is left
    assert [i for i, _ in calls] == [0, 19, 20, 18]
    assert [o.job.index for o in results] == [0, 19, 20, 18]
    assert not scheduler.claim()  # nothing to do: no worker needed
    scheduler.request(30)
    assert scheduler.claim()


def test_preview_then_final_and_preview_evicted(native_bf16):
    compute, _ = _recorder()
    scheduler = SliceScheduler(compute, 5, prefetch=1, preview="always")
    scheduler.request(2)
    first, second = scheduler.step(), scheduler.step()
    assert (first.job.precision, first.final) == ("bf16", False)
    assert (second.job.precision, second.final) == ("fp32", True)
    assert scheduler.cached(2, "bf16") is None  # replaced by the exact result
    assert scheduler.cached(2) == (2, "fp32")
    assert all(j.precision == "fp32" for j in _drain(scheduler))  # prefetch is exact only


def test_auto_preview_only_for_slow_translators_and_only_if_faster(native_bf16):
    def compute(index: int, precision: str) -> int:
        time.sleep(delays[precision])
        return index

    delays = {"fp32": 0.03, "bf16": 0.005}
    scheduler = SliceScheduler(compute, 9, preview="auto", preview_threshold_s=0.01)
    assert not scheduler.uses_preview  # nothing measured yet
    scheduler.request(0)
    assert scheduler.step().job.precision == "fp32"
    assert scheduler.uses_preview  # slow, and the preview not measured yet
    scheduler.request(8)
    assert scheduler.step().job.precision == "bf16"
    assert scheduler.uses_preview  # the preview is faster: keep it
    delays["bf16"] = 0.2
    scheduler.request(4)
    assert scheduler.step().job.precision == "bf16"
    assert not scheduler.uses_preview  # a preview slower than the exact result is dropped
    fast = SliceScheduler(compute, 5, preview="auto", preview_threshold_s=10.0)
    fast.request(0)
    fast.step()
    assert not fast.uses_preview


def test_lru_cache_evicts_oldest():
    compute, calls = _recorder()
    scheduler = SliceScheduler(compute, 10, prefetch=0, preview="never", cache_size=2)
    for index in (0, 1, 2):
        scheduler.request(index)
        scheduler.step()
    assert scheduler.cached(0) is None
    assert scheduler.cached(1) is not None and scheduler.cached(2) is not None
    scheduler.request(0)
    scheduler.step()
    assert calls.count((0, "fp32")) == 2


def test_pause_and_stop_hold_back_work():
    compute, calls = _recorder()
    scheduler = SliceScheduler(compute, 10, prefetch=0, preview="never")
    scheduler.set_paused(True)
    scheduler.request(3)
    assert not scheduler.claim() and scheduler.step() is None
    scheduler.set_paused(False)
    outcomes: list = []
    _start(scheduler, outcomes).join(5)
    assert [o.job.index for o in outcomes] == [3]
    scheduler.stop()
    scheduler.request(5)
    assert not scheduler.claim() and calls == [(3, "fp32")]


def test_runner_is_released_when_compute_fails():
    def compute(index: int, precision: str) -> int:
        raise RuntimeError("boom")

    scheduler = SliceScheduler(compute, 4, preview="never")
    scheduler.request(1)
    assert scheduler.claim()
    with pytest.raises(RuntimeError):
        list(scheduler.run())
    assert scheduler.claim()


def test_request_outside_volume_is_an_error():
    scheduler = SliceScheduler(lambda i, p: i, 3)
    with pytest.raises(IndexError):
        scheduler.request(3)
