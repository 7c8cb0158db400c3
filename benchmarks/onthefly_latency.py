"""On-the-fly latency: time from a slice change to the output layer showing it.

Opens the demo (napari + phantom T1 + Translate widget, on-the-fly on) for each
demo translator and drives the slider the way a user does:

- ``scroll``: one slice every 120 ms through the volume and back (prefetch and
  cache help, as when scrolling with the mouse wheel);
- ``jump``: to 24 different slices, one a second, with prefetch off (nothing
  cached: the raw translation time plus scheduling and display).

For each change it records when the current slice was first shown (a bf16
preview, when the widget decided one is needed, or the exact result) and when
the exact (fp32) result was shown, from the widget's ``slice_shown`` signal,
which is emitted after the layer was updated. Needs a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/onthefly_latency.py

Results go to ``benchmarks/results/onthefly_latency.md`` (and are printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import napari
import numpy as np
import torch
from _machine import load_note, write_result

from napari_medtrans._widgets._wait import wait, wait_until
from napari_medtrans._widgets.demo import open_demo
from napari_medtrans.phantom import generate_subject

MODELS = ("t1-ct-resnet", "t1-ct-uapi-supervised", "t1-ct-reggan")
RESULTS = Path(__file__).resolve().parent / "results" / "onthefly_latency.md"


def _percentiles(values: list[float]) -> str:
    if not values:
        return "– | –"
    p50, p95 = np.percentile(np.asarray(values) * 1000, (50, 95))
    return f"{p50:.0f} | {p95:.0f}"


def measure(model: str, scenario: str, subject) -> dict:
    """Drive one demo viewer through ``scenario``; return latencies in seconds."""
    viewer = napari.Viewer(show=True)
    widget = open_demo(viewer, model, subject=subject, device="cpu")
    wait_until(lambda: widget.session is not None, what="the translator")
    scheduler = widget.session.scheduler
    n = scheduler.n_slices
    wait_until(lambda: scheduler.cached(widget.current_index()) is not None, what="the first slice")
    translator = widget.session.translator
    uncached = translator.prepare(widget.session.volume.array, cache_size=0)
    slice_s = []
    for index in range(6):  # raw single-slice time, for reference (the first one warms up)
        start = time.perf_counter()
        translator.translate_slice(uncached, index, precision="fp32")
        slice_s.append(time.perf_counter() - start)
    if scenario == "scroll":
        step_index = list(range(n // 2 + 1, n)) + list(range(n - 2, -1, -1))
        interval = 0.12
    else:
        step_index = [int(i) for i in np.random.default_rng(0).permutation(n) if i != n // 2][:24]
        interval = 1.0
        scheduler.prefetch = 0
    first: dict[int, float] = {}
    exact: dict[int, float] = {}
    current = {"step": 0}

    def on_shown(index: int, precision: str, seconds: float) -> None:
        step = current["step"]
        if index != step_index[step]:
            return
        first.setdefault(step, seconds)
        if precision == scheduler.final_precision:
            exact.setdefault(step, seconds)

    widget.slice_shown.connect(on_shown)
    for step, index in enumerate(step_index):
        current["step"] = step
        viewer.dims.set_current_step(0, index)
        wait(interval)
    widget.close_session()
    viewer.close()
    return {
        "first": list(first.values()),
        "exact": list(exact.values()),
        "missed": len(step_index) - len(first),
        "changes": len(step_index),
        "previews": sum(1 for job in scheduler.computed if job.precision != scheduler.final_precision),
        "slice_ms": 1000 * float(np.median(slice_s[1:])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--scenarios", nargs="+", default=["scroll", "jump"], choices=["scroll", "jump"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    subject = generate_subject(0)
    load_before = os.getloadavg()[0]
    rows = []
    for model in args.models:
        for scenario in args.scenarios:
            r = measure(model, scenario, subject)
            rows.append(
                f"| {model} | {scenario} | {r['changes']} | {_percentiles(r['first'])} | {_percentiles(r['exact'])} "
                f"| {r['missed']} | {r['previews']} | {r['slice_ms']:.0f} |"
            )
            print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# On-the-fly latency (slice change → output layer updated)",
            "",
            (
                f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
                f"`benchmarks/onthefly_latency.py` under Xvfb; {platform.processor() or platform.machine()}, "
                f"{load_note(load_before, os.getloadavg()[0])} torch {torch.__version__}, phantom T1 "
                f"{subject.shape}, device cpu, on-the-fly workers with 1 torch thread. Goal: p95 ≤ 250 ms."
            ),
            "",
            "*first* = the current slice first shown (bf16 preview or exact); *exact* = fp32 result shown;",
            "*not shown* = changes the user scrolled past before their slice was displayed (dropped as stale);",
            "*previews* = bf16 previews computed; *slice* = warm fp32 time of one slice alone (no repaint running).",
            "The clock starts in the widget's dims-event handler, after napari re-sliced the other layers.",
            "",
            (
                "| translator | scenario | changes | first p50 (ms) | first p95 (ms) | exact p50 (ms) "
                "| exact p95 (ms) | not shown | previews | slice (ms) |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    write_result(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
