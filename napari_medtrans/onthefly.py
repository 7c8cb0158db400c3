"""Scheduling of on-the-fly slice translation, free of Qt and napari.

The viewer asks for the slice the user looks at (:meth:`SliceScheduler.request`)
and, when :meth:`SliceScheduler.claim` says so, starts one worker running
:meth:`SliceScheduler.run`. The worker always computes the most useful job
*now*: a fast preview of the current slice (when the translator is slow), then
its exact result, then neighbouring slices in the scroll direction, and ends
when nothing is left (no thread waits idle). Jobs are planned from the current
index each time the worker is free, so requests the user scrolled past are
dropped without ever being queued. Results are kept in a small LRU cache keyed
by ``(index, precision)``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from napari_medtrans import cpu_features

R = TypeVar("R")
PreviewMode = Literal["auto", "always", "never"]

LATENCY_GOAL_S = 0.25
"""On-the-fly goal: the current slice shown within this time (p95, ``benchmarks/results/onthefly_latency.md``)."""


class SampleBudget:
    """How many samples of a stochastic translator (SynDiff, UNSB) on-the-fly translation affords.

    The first slice is drawn with one sample and timed; from then on a slice gets
    the ``requested`` samples (mean as the translation, spread as the uncertainty)
    only while ``requested`` × the measured time per sample stays within ``goal_s``,
    else one sample, and :attr:`note` says so (the whole-volume translation still
    draws all of them).
    """

    def __init__(self, requested: int, goal_s: float = LATENCY_GOAL_S) -> None:
        if requested < 1:
            raise ValueError(f"requested samples must be ≥ 1, got {requested}")
        self.requested = requested
        self.goal_s = goal_s
        self.per_sample: float | None = None

    def samples(self) -> int:
        """Samples for the next slice."""
        if self.per_sample is None or self.requested * self.per_sample > self.goal_s:
            return 1
        return self.requested

    def record(self, seconds: float, samples: int) -> None:
        """Time one slice of ``samples`` samples took (moving average per sample)."""
        per = seconds / max(samples, 1)
        self.per_sample = per if self.per_sample is None else 0.7 * self.per_sample + 0.3 * per

    @property
    def note(self) -> str | None:
        """Why on-the-fly slices get one sample, or None when they get all."""
        if self.requested == 1 or self.per_sample is None or self.samples() > 1:
            return None
        wanted = self.requested * self.per_sample * 1000
        return (
            f"on the fly: 1 sample ({self.requested} would take ≈{wanted:.0f} ms, goal "
            f"{self.goal_s * 1000:.0f} ms); translate the whole volume for the mean and spread of {self.requested}"
        )


@dataclass(frozen=True)
class SliceJob:
    """One unit of work: translate slice ``index`` at ``precision``."""

    index: int
    precision: str
    prefetch: bool


@dataclass(frozen=True)
class SliceOutcome(Generic[R]):
    """A finished job with its result and the time the computation took."""

    job: SliceJob
    result: R
    seconds: float
    final: bool


class SliceScheduler(Generic[R]):
    """Plan and run slice translations for a viewer that scrolls.

    Parameters
    ----------
    compute
        ``compute(index, precision) -> result``; called from the worker thread.
    n_slices
        Number of slices along the translated axis.
    final_precision, preview_precision
        Precision of the exact result and of the fast preview.
    preview
        ``"always"``/``"never"`` show a preview first, or ``"auto"``: only when
        the exact computation takes longer than ``preview_threshold_s`` and the
        preview is not measured to be slower than 0.7× the exact one
        (exponential moving averages of measured times; on some CPUs bf16 is
        slower than fp32). A preview precision that ``device`` only emulates
        (:func:`napari_medtrans.cpu_features.precision_support`) is never used.
    device
        The device ``compute`` runs on.
    prefetch
        How many slices ahead of the scroll direction (and behind it) to
        translate once the current slice is done.
    cache_size
        Number of results kept (least recently used are evicted).
    """

    def __init__(
        self,
        compute: Callable[[int, str], R],
        n_slices: int,
        *,
        final_precision: str = "fp32",
        preview_precision: str = "bf16",
        preview: PreviewMode = "auto",
        preview_threshold_s: float = 0.12,
        prefetch: int = 2,
        cache_size: int = 64,
        device: str = "cpu",
    ) -> None:
        self._compute = compute
        self.n_slices = int(n_slices)
        self.final_precision = final_precision
        self.preview_precision = preview_precision
        self.preview = preview
        self.preview_native = cpu_features.precision_support(preview_precision, device).native
        self.preview_threshold_s = preview_threshold_s
        self.prefetch = prefetch
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, str], R] = OrderedDict()
        self._lock = threading.RLock()
        self._current: int | None = None
        self._direction = 1
        self._paused = False
        self._stopped = False
        self._running = False
        self._seconds: dict[str, float] = {}
        self.computed: list[SliceJob] = []

    # -- requests (any thread; normally the GUI thread) ---------------------
    @property
    def current(self) -> int | None:
        """The slice the viewer shows now (``None`` before the first request)."""
        return self._current

    def request(self, index: int) -> R | None:
        """Make ``index`` the current slice; return its exact result if cached."""
        if not 0 <= index < self.n_slices:
            raise IndexError(f"slice {index} outside 0..{self.n_slices - 1}")
        with self._lock:
            if self._current is not None and index != self._current:
                self._direction = 1 if index > self._current else -1
            self._current = index
            return self._lookup(index, self.final_precision)

    def cached(self, index: int, precision: str | None = None) -> R | None:
        """Return the cached result for ``index`` (exact one unless ``precision``)."""
        with self._lock:
            return self._lookup(index, precision or self.final_precision)

    def set_paused(self, paused: bool) -> None:
        """Pause or resume planning (e.g. while a whole volume is translated)."""
        with self._lock:
            self._paused = paused

    def stop(self) -> None:
        """Plan nothing any more: :meth:`run` returns after the job in flight."""
        with self._lock:
            self._stopped = True

    def claim(self) -> bool:
        """Reserve the single runner: True when there is work and none runs.

        The caller must then start :meth:`run` (in a worker thread).
        """
        with self._lock:
            if self._running or self.next_job() is None:
                return False
            self._running = True
            return True

    @property
    def uses_preview(self) -> bool:
        """Whether the current slice gets a preview before its exact result."""
        if not self.preview_native:
            return False
        if self.preview != "auto":
            return self.preview == "always"
        final = self._seconds.get(self.final_precision)
        preview = self._seconds.get(self.preview_precision)
        return final is not None and final > self.preview_threshold_s and (preview is None or preview < 0.7 * final)

    # -- planning and work (worker thread) -----------------------------------
    def prefetch_order(self, index: int) -> list[int]:
        """Neighbours of ``index`` to prefetch: ahead in the scroll direction first."""
        d = self._direction
        ahead = [index + d * k for k in range(1, self.prefetch + 1)]
        behind = [index - d * k for k in range(1, self.prefetch + 1)]
        return [i for i in ahead + behind if 0 <= i < self.n_slices]

    def next_job(self) -> SliceJob | None:
        """The most useful job now, or ``None`` when there is nothing to do."""
        with self._lock:
            if self._paused or self._stopped or self._current is None:
                return None
            index, final = self._current, self.final_precision
            if (index, final) not in self._cache:
                if self.uses_preview and (index, self.preview_precision) not in self._cache:
                    return SliceJob(index, self.preview_precision, prefetch=False)
                return SliceJob(index, final, prefetch=False)
            for neighbour in self.prefetch_order(index):
                if (neighbour, final) not in self._cache:
                    return SliceJob(neighbour, final, prefetch=True)
            return None

    def step(self) -> SliceOutcome[R] | None:
        """Run the next job in the calling thread; ``None`` when idle."""
        job = self.next_job()
        return None if job is None else self._execute(job)

    def run(self) -> Iterator[SliceOutcome[R]]:
        """Work until nothing is left to do, yielding each outcome.

        Releases the runner reserved by :meth:`claim` in the same locked step
        that finds no job, so a request made meanwhile is never lost.
        """
        try:
            while True:
                with self._lock:
                    job = self.next_job()
                    if job is None:
                        self._running = False
                        return
                yield self._execute(job)
        except BaseException:
            with self._lock:
                self._running = False
            raise

    def _execute(self, job: SliceJob) -> SliceOutcome[R]:
        start = time.perf_counter()
        result = self._compute(job.index, job.precision)
        seconds = time.perf_counter() - start
        final = job.precision == self.final_precision
        with self._lock:
            self.computed.append(job)
            if final:
                self._cache.pop((job.index, self.preview_precision), None)
            previous = self._seconds.get(job.precision)
            self._seconds[job.precision] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
            self._cache[(job.index, job.precision)] = result
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return SliceOutcome(job, result, seconds, final)

    def _lookup(self, index: int, precision: str) -> R | None:
        result = self._cache.get((index, precision))
        if result is not None:
            self._cache.move_to_end((index, precision))
        return result
