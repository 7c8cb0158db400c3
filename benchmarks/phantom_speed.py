"""Time the phantom generator: one subject, one misaligned copy, and a written cohort.

Run: ``python benchmarks/phantom_speed.py [--repeats 5] [--shape 32 128 128]``.
Prints wall-clock and CPU seconds per operation (median over repeats); CPU time
is what to compare on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from napari_medtrans.phantom import generate_subject, misalign, write_cohort


def _time(operation: Callable[[int], object], repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for i in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        operation(i)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=3, default=(32, 128, 128))
    args = parser.parse_args()
    shape = tuple(args.shape)
    generate_subject(0, shape)  # warm up imports and caches
    subject = generate_subject(0, shape)

    def write(i: int) -> None:
        with tempfile.TemporaryDirectory() as folder:
            write_cohort(folder, 1, "paired", seed=i, shape=shape)

    operations = {
        "generate_subject": lambda i: generate_subject(i + 1, shape),
        "misalign (level 3)": lambda i: misalign(subject, 3, seed=i),
        "write_cohort (1 paired subject, 4 .nii.gz)": write,
    }
    print(f"shape {shape}, median of {args.repeats}")
    for name, operation in operations.items():
        wall, cpu = _time(operation, args.repeats)
        print(f"{name:45s} wall {wall:6.3f} s   cpu {cpu:6.3f} s")


if __name__ == "__main__":
    main()
