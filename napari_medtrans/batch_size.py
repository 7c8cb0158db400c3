"""Batch size by measurement, cached per machine (issue 23).

Which number of slices per batch translates fastest depends on the network, the
slice size, the device, its caches and the number of threads; a formula guessed
from cache sizes was off by up to 20 % on a CPU it was not tuned on. So the
first whole-volume translation for a (translator, slice size, device,
threads, precision) runs its first slices in batches of :data:`CANDIDATES`
(:data:`ROUNDS` times, interleaved; no work is thrown away: these are slices
of the volume being translated), keeps the batch size with the least time per
slice and stores it in ``batch_sizes.json`` in the user's cache folder
(:func:`cache_dir`). Later translations read it from there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from napari_medtrans.rundir import atomic_write_json

#: Batch sizes tried, each :data:`ROUNDS` times (best time per slice counts: the first round warms up).
CANDIDATES = (1, 2, 4, 8)
ROUNDS = 2
#: Environment variable naming the cache folder (tests point it at a temporary folder).
CACHE_ENV = "MEDTRANS_CACHE_DIR"
CACHE_FILE = "batch_sizes.json"
#: The clock measurements use (tests replace it with a fake one).
timer: Callable[[], float] = time.perf_counter


def cache_dir() -> Path:
    r"""The user's cache folder for napari-medtrans (``platformdirs.user_cache_dir``).

    ``$MEDTRANS_CACHE_DIR`` if set; else ``$XDG_CACHE_HOME/napari-medtrans`` or
    ``~/.cache/napari-medtrans`` on Linux, ``~/Library/Caches/napari-medtrans``
    on macOS, ``%LOCALAPPDATA%\\napari-medtrans`` on Windows.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("napari-medtrans", appauthor=False, opinion=False))


@dataclass(frozen=True)
class BatchKey:
    """What the fastest batch size depends on."""

    network: str
    """Translator name and a digest of its network specs (architecture and widths)."""
    height: int
    width: int
    device: str
    """Device type and model (CPU model name or GPU name)."""
    threads: int
    precision: str

    def text(self) -> str:
        """The key as one string (a JSON object key)."""
        return "|".join(
            str(v)
            for v in (
                self.network,
                f"{self.height}x{self.width}",
                self.device,
                f"{self.threads} threads",
                self.precision,
            )
        )


def network_id(name: str, networks: dict, context_slices: int) -> str:
    """``name`` plus a short digest of the network specs (a retrained, wider model is a new key)."""
    spec = json.dumps({"networks": networks, "context": context_slices}, sort_keys=True)
    return f"{name}#{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


class BatchSizeCache:
    """Measured batch sizes in ``cache_dir()/batch_sizes.json`` (read each time; written atomically).

    An unreadable or malformed file counts as empty (it is a cache) and is
    replaced by the next measurement; a cache folder that cannot be written is
    skipped silently (the batch size is then measured again next time).
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path or cache_dir() / CACHE_FILE

    def get(self, key: BatchKey) -> int | None:
        value = self._read().get(key.text())
        return value if isinstance(value, int) and value >= 1 else None

    def put(self, key: BatchKey, batch_size: int) -> None:
        with self._lock:
            entries = self._read()
            entries[key.text()] = int(batch_size)
            try:
                atomic_write_json(self.path, entries)
            except OSError:
                pass

    def _read(self) -> dict:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}


class MeasuredBatches:
    """The (start, stop) batches of a volume; without a known size, measure it on the first slices.

    Iterating yields batches; the time from one yield to the next is the time
    of that batch (translation and storing its result). With ``batch_size``
    None, the batches follow :data:`CANDIDATES` × :data:`ROUNDS`; once all of
    them ran, the size with the least time per slice (the smaller one on a tie)
    is passed to ``on_measured`` and used for the rest of the volume. A volume
    too short for the whole plan is translated without deciding anything.
    """

    def __init__(self, total: int, batch_size: int | None, on_measured: Callable[[int], None]) -> None:
        self.total = total
        self.batch_size = batch_size
        self.on_measured = on_measured
        self.seconds_per_slice: dict[int, float] = {}

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = 0
        if self.batch_size is None:
            for size in CANDIDATES * ROUNDS:
                if start >= self.total:
                    return
                stop = min(start + size, self.total)
                began = timer()
                yield start, stop
                if stop - start == size:
                    per_slice = (timer() - began) / size
                    self.seconds_per_slice[size] = min(self.seconds_per_slice.get(size, math.inf), per_slice)
                start = stop
            if set(CANDIDATES) - self.seconds_per_slice.keys():
                return  # the volume ended within the plan
            self.batch_size = min(CANDIDATES, key=lambda size: (self.seconds_per_slice[size], size))
            self.on_measured(self.batch_size)
        for first in range(start, self.total, self.batch_size):
            yield first, min(first + self.batch_size, self.total)
