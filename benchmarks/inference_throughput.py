"""Inference throughput benchmark (issues 3 and 23): engine vs bare network, precision, memory.

Measures, on this machine, with ``--threads`` torch threads (default 2), in one
run of a few minutes (progress on stderr):

1. Engine overhead, for every shipped translator at 128² and 256²: the bare
   generator slice by slice (normalised tensors ready, ``inference_mode``,
   fp32; for a translator with a scale head also with it) against
   ``translate_volume`` fp32 with its measured batch size (measured on the first
   call into a fresh cache folder, then read from it); goal ≥ 0.95×.
2. Whole volume: 200 × 256² MR (a phantom tiled along z) through every shipped
   translator, fp32, end of ``translate_volume`` (batch size from the cache).
3. ResNet-9 ngf 64 at 256² (seeded random weights): raw batched network, end to
   end (read NIfTI → translate → write), a naive per-slice loop as in public
   test scripts, and ``translate_volume`` fp32 and bf16. bf16 only where the CPU
   has bf16 instructions; elsewhere it is timed on one slice to record how much
   slower the emulation is.
4. bf16 vs fp32 output differences of the shipped translators (HU), where bf16
   is native.
5. Peak RSS of a subprocess translating a 300×512×512 int16 volume.

Run: ``python benchmarks/inference_throughput.py [--threads N] [--slices N] [--repeats N]``.
Writes ``benchmarks/results/inference_throughput_<cpu kind>.{json,md}`` (e.g.
``intel-amx``, ``amd-no-bf16``), so runs on different CPU kinds sit side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import load_note, write_result
from skimage.metrics import structural_similarity

from napari_medtrans import cpu_features
from napari_medtrans.checkpoint import TranslatorMetadata, save_translator
from napari_medtrans.inference import BATCH_SIZES, Translator, load_translator
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.nets import build_network
from napari_medtrans.phantom import generate_subject
from napari_medtrans.shipped import shipped_dir

RESULTS = Path(__file__).resolve().parent / "results"
RESNET9 = {"arch": "resnet", "ngf": 64, "n_blocks": 9}
RSS_GENERATOR = {"arch": "resnet", "ngf": 8, "n_blocks": 1}
SIZES = (128, 256)
WHOLE_VOLUME = (200, 256, 256)
#: CPU flags worth recording next to the numbers.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "asimd", "bf16")
START = time.perf_counter()


def say(text: str) -> None:
    """Progress on stderr with the elapsed time."""
    elapsed = time.perf_counter() - START
    print(f"[{elapsed // 60:02.0f}:{elapsed % 60:04.1f}] {text}", file=sys.stderr, flush=True)


def make_translator(path: Path, spec: dict[str, Any], name: str) -> Path:
    """A T1→CT translator with seeded random weights."""
    torch.manual_seed(0)
    metadata = TranslatorMetadata(
        name=name,
        method="benchmark",
        source="T1",
        target="CT",
        networks={"generator": spec},
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
    )
    return save_translator(path, {"generator": build_network(spec)}, metadata, overwrite=True)


def phantom_t1(seed: int, slices: int, size: int) -> Volume:
    """The central ``slices`` slices of a phantom T1 head at ``size``²."""
    t1 = generate_subject(seed, shape=(max(slices, 8), size, size)).volume("t1")
    start = (t1.array.shape[0] - slices) // 2
    return t1.with_array(np.ascontiguousarray(t1.array[start : start + slices]))


def measure(jobs: dict[str, Callable[[], Any]], repeats: int, label: str) -> dict[str, dict[str, Any]]:
    """Run the jobs interleaved ``repeats`` times; best wall and process-CPU seconds of each.

    Interleaving spreads the load of other processes over all jobs; CPU time
    (all threads of this process) is the steadier figure on shared cores.
    """
    best = {name: {"wall_s": float("inf"), "cpu_s": float("inf"), "out": None} for name in jobs}
    for repeat in range(repeats):
        for name, job in jobs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            out = job()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            entry = best[name]
            entry.update(wall_s=min(entry["wall_s"], wall), cpu_s=min(entry["cpu_s"], cpu), out=out)
        say(f"{label}: round {repeat + 1}/{repeats} " + ", ".join(f"{n} {e['wall_s']:.2f} s" for n, e in best.items()))
    return best


def bare_generator(translator: Translator, volume: np.ndarray, *, scale: bool) -> Callable[[], None]:
    """The bare generator, one normalised slice at a time (fp32, ``inference_mode``)."""
    x = translator.prepare(volume).network_input(0, volume.shape[0]).contiguous()
    forward = translator.generator.forward_with_scale if scale else translator.generator

    def run() -> None:
        with torch.inference_mode():
            for index in range(len(x)):
                forward(x[index : index + 1])

    return run


def engine_overhead(translator: Translator, volume: np.ndarray, repeats: int) -> dict[str, Any]:
    """Bare generator vs translate_volume fp32 (measured batch size), with and without a scale head."""
    label = f"{translator.metadata.name} {volume.shape[1]}²"
    translator.translate_volume(volume)  # measures the batch size (fresh cache folder) and warms up
    batch = _cached_batch(translator, volume)
    jobs = {
        "bare": bare_generator(translator, volume, scale=False),
        "engine": lambda: translator.translate_volume(volume, scale=False),
    }
    if translator.provides_scale:
        jobs["bare_scale"] = bare_generator(translator, volume, scale=True)
        jobs["engine_scale"] = lambda: translator.translate_volume(volume)
    times = measure(jobs, repeats, label)
    out: dict[str, Any] = {"slices": volume.shape[0], "size": volume.shape[1], "batch_size": batch}
    for name, entry in times.items():
        out[f"{name}_s"], out[f"{name}_cpu_s"] = entry["wall_s"], entry["cpu_s"]
    for engine, bare in (("engine", "bare"), ("engine_scale", "bare_scale")):
        if engine in times:
            out[f"{engine}_ratio"] = times[bare]["wall_s"] / times[engine]["wall_s"]
            out[f"{engine}_ratio_cpu"] = times[bare]["cpu_s"] / times[engine]["cpu_s"]
    return out


def _cached_batch(translator: Translator, volume: np.ndarray) -> int | None:
    """The batch size measured for ``volume``'s slices (fp32)."""
    return BATCH_SIZES.get(translator.batch_key(*volume.shape[1:], "fp32"))


def whole_volume(translator: Translator, volume: np.ndarray) -> dict[str, Any]:
    """One timed translate_volume of the whole volume (fp32, batch size from the cache)."""
    wall, cpu = time.perf_counter(), time.process_time()
    translator.translate_volume(volume)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    say(f"whole volume {translator.metadata.name}: {wall:.1f} s")
    return {"shape": list(volume.shape), "wall_s": wall, "cpu_s": cpu, "batch_size": _cached_batch(translator, volume)}


def naive_loop(translator: Translator, volume: np.ndarray) -> np.ndarray:
    """One slice at a time, fp32, eager, no_grad, per-slice conversion (public test scripts)."""
    source = translator.source_model.fit(volume)
    target = translator.output_mapping
    out = np.empty(volume.shape, np.float32)
    with torch.no_grad():
        for index in range(volume.shape[0]):
            x = torch.from_numpy(source.to_network(volume[index]))[None, None]
            out[index] = target.from_network(translator.generator(x)[0, 0].cpu().numpy())
    return out


def resnet9(translator: Translator, volume: Volume, tmp: Path, repeats: int, bf16: bool) -> dict[str, Any]:
    """Raw, end to end, naive and translate_volume fp32 (and bf16 where native) for the ResNet-9."""
    array = volume.array
    source = write_volume(volume, tmp / "t1.nii.gz")
    x = translator.prepare(array).network_input(0, len(array)).contiguous()
    translator.translate_volume(np.resize(array, (32, *array.shape[1:])))  # measures the batch size (≥ 30 slices)
    batch = _cached_batch(translator, array)

    def raw() -> None:
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                translator.generator(x[i : i + batch])

    def end_to_end() -> None:
        read = read_volume(source)
        write_volume(
            read.with_array(translator.translate_volume(read).image, modality="CT"), tmp / "ct.nii.gz", overwrite=True
        )

    jobs = {
        "raw": raw,
        "end_to_end": end_to_end,
        "naive": lambda: naive_loop(translator, array),
        "fp32": lambda: translator.translate_volume(array).image,
    }
    if bf16:
        jobs["bf16"] = lambda: translator.translate_volume(array, precision="bf16").image
    times = measure(jobs, repeats, "ResNet-9 ngf 64 256²")
    out: dict[str, Any] = {"slices": len(array), "batch_size": batch}
    for name, entry in times.items():
        out[f"{name}_slices_per_s"] = len(array) / entry["wall_s"]
        out[f"{name}_cpu_s_per_slice"] = entry["cpu_s"] / len(array)
    out["end_to_end_over_raw"] = times["raw"]["wall_s"] / times["end_to_end"]["wall_s"]
    out["fp32_vs_naive"] = times["naive"]["wall_s"] / times["fp32"]["wall_s"]
    out["naive_equals_fp32_max_abs"] = float(np.abs(times["naive"]["out"] - times["fp32"]["out"]).max())
    if bf16:
        out["bf16_vs_naive"] = times["naive"]["wall_s"] / times["bf16"]["wall_s"]
    else:
        say("bf16 is emulated here: timing it on one slice")
        one = array[len(array) // 2 : len(array) // 2 + 1]
        fp32 = measure(
            {
                "fp32": lambda: translator.translate_volume(one, batch_size=1),
                "bf16": lambda: translator.translate_volume(one, batch_size=1, precision="bf16"),
            },
            1,
            "ResNet-9 one slice",
        )
        out["emulated_bf16_over_fp32_one_slice"] = fp32["bf16"]["wall_s"] / fp32["fp32"]["wall_s"]
    return out


def bf16_differences(translator: Translator, volume: np.ndarray) -> dict[str, float]:
    """bf16 − fp32 in target units (HU) and SSIM, over ``volume``."""
    fp32 = translator.translate_volume(volume).image
    bf16 = translator.translate_volume(volume, precision="bf16").image
    diff = np.abs(bf16 - fp32)
    window = translator.output_mapping
    return {
        "mean_abs": float(diff.mean()),
        "p99_abs": float(np.percentile(diff, 99)),
        "max_abs": float(diff.max()),
        "ssim": float(
            np.mean([structural_similarity(a, b, data_range=window.hi - window.lo) for a, b in zip(fp32, bf16)])
        ),
    }


def rss_child(model: str, shape: tuple[int, int, int], threads: int) -> None:
    """(Subprocess) translate a random int16 volume; print RSS figures as JSON."""
    import psutil

    torch.set_num_threads(threads)
    translator = load_translator(model, device="cpu")
    volume = np.random.default_rng(0).integers(0, 1200, size=shape, dtype=np.int16)
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    translator.translate_volume(volume)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "rss_before_bytes": before,
                "peak_rss_bytes": peak,
                "seconds": seconds,
                "input_bytes": volume.nbytes,
                "output_bytes": volume.size * 4,
            }
        )
    )


def peak_rss(model: Path, shape: tuple[int, int, int], threads: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--rss-child",
        str(model),
        "--rss-shape",
        *map(str, shape),
        "--threads",
        str(threads),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    say(f"peak RSS {data['peak_rss_bytes'] / 2**20:.0f} MiB")
    return {"shape": list(shape), "generator": RSS_GENERATOR, **data}


def cpu_kind() -> str:
    """A file-name tag of this CPU: vendor and its bf16 support (``intel-amx``, ``amd-no-bf16``, …)."""
    model = cpu_features.cpu_model().lower()
    vendor = next((v for v in ("intel", "amd", "apple", "ampere") if v in model), platform.machine().lower())
    flags = cpu_features.cpu_flags()
    bf16 = (
        "amx"
        if "amx_bf16" in flags
        else "avx512-bf16"
        if "avx512_bf16" in flags
        else "bf16"
        if "bf16" in flags
        else "no-bf16"
    )
    return f"{vendor}-{bf16}"


def machine(threads: int) -> dict[str, Any]:
    flags = cpu_features.cpu_flags()
    return {
        "cpu": cpu_features.cpu_model(),
        "kind": cpu_kind(),
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "flags": [f for f in FLAGS if f in flags],
        "bf16_native": cpu_features.precision_support("bf16", "cpu").native,
        "load_average_at_start": os.getloadavg(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine(args.threads),
        "repeats": args.repeats,
        "engine": {},
        "whole_volume": {},
        "bf16_differences": {},
    }
    bf16 = report["machine"]["bf16_native"]
    say(
        f"{report['machine']['cpu']} ({report['machine']['kind']}), {args.threads} threads, "
        f"load {report['machine']['load_average_at_start'][0]:.1f}"
    )
    models = [load_translator(p, device="cpu") for p in sorted((shipped_dir() / "models").glob("*.safetensors"))]
    volumes = {size: phantom_t1(11, args.slices, size).array for size in SIZES}
    for size in SIZES:
        for translator in models:
            report["engine"][f"{translator.metadata.name}@{size}"] = engine_overhead(
                translator, volumes[size], args.repeats
            )
    tiled = np.ascontiguousarray(np.resize(volumes[256], WHOLE_VOLUME))  # the 256² phantom repeated along z
    for translator in models:
        report["whole_volume"][translator.metadata.name] = whole_volume(translator, tiled)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        resnet = load_translator(make_translator(tmp / "resnet9.safetensors", RESNET9, "resnet9-ngf64"), device="cpu")
        report["resnet9_ngf64_256"] = resnet9(resnet, phantom_t1(7, args.resnet_slices, 256), tmp, args.repeats, bf16)
        if bf16:
            for translator in models:
                size = translator.metadata.size  # the training size (128² or 64² for the shipped demos)
                volume = volumes[size] if size in volumes else phantom_t1(11, args.slices, size).array
                report["bf16_differences"][translator.metadata.name] = bf16_differences(translator, volume)
                say(f"bf16 differences {translator.metadata.name}")
        report["peak_rss"] = peak_rss(
            make_translator(tmp / "rss.safetensors", RSS_GENERATOR, "rss"), tuple(args.rss_shape), args.threads
        )
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - START
    return report


def markdown(report: dict[str, Any], command: str) -> str:
    m, r9, rss = report["machine"], report["resnet9_ngf64_256"], report["peak_rss"]
    lines = [
        f"# Inference throughput on {m['cpu']} ({m['kind']})",
        "",
        f"Command: `{command}` ({report['seconds'] / 60:.1f} min)  ",
        (
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, torch {m['torch']}; flags "
            f"{', '.join(m['flags']) or 'none of ' + ', '.join(FLAGS)}; bf16 "
            f"{'native' if m['bf16_native'] else 'emulated'}. "
            f"{load_note(m['load_average_at_start'][0], m['load_average_at_end'][0])} "
            f"Jobs ran interleaved; each figure is the best of {report['repeats']} runs; ratios on wall time "
            "and, in brackets, on process CPU time: with one thread the CPU time is the clean figure on shared "
            "cores (no spinning threads, waiting for a core does not count); with more threads than free cores it "
            "counts the threads' spinning too."
        ),
        "",
        "## Engine vs bare generator (fp32)",
        "",
        (
            "Bare generator: one normalised slice at a time, `inference_mode`. `translate_volume`: intensity fit, "
            "normalisation, padding, batches of the measured size, mapping to HU, output assembly. "
            '"+σ": with the UAPI scale head on both sides. Goal ≥ 0.95×.'
        ),
        "",
        "| translator | slices | batch (measured) | bare generator, slice by slice | `translate_volume` fp32 | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in report["engine"].items():
        name, size = key.split("@")
        for suffix, tag in (("", ""), ("_scale", " +σ")):
            if f"engine{suffix}_s" in r:
                lines.append(
                    f"| {name}{tag} | {r['slices']} × {size}² | {r['batch_size']} | {r[f'bare{suffix}_s']:.2f} s | "
                    f"{r[f'engine{suffix}_s']:.2f} s | **{r[f'engine{suffix}_ratio']:.2f}×** "
                    f"({r[f'engine{suffix}_ratio_cpu']:.2f}×) |"
                )
    lines += [
        "",
        f"## Whole volume: {'×'.join(map(str, WHOLE_VOLUME))} MR, fp32, {m['threads']} threads",
        "",
        "| translator | batch | seconds (wall) | CPU s |",
        "|---|---|---|---|",
    ]
    for name, r in report["whole_volume"].items():
        lines.append(f"| {name} | {r['batch_size']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    lines += [
        "",
        f"## ResNet-9 ngf 64, {r9['slices']} × 256² (random seeded weights, batch {r9['batch_size']})",
        "",
        "| measurement | slices/s (wall) | CPU s/slice |",
        "|---|---|---|",
    ]
    for name, label in (
        ("raw", "raw network (fp32, batched tensors)"),
        ("end_to_end", "read→translate→write fp32"),
        ("naive", "naive per-slice loop fp32"),
        ("fp32", "translate_volume fp32"),
        ("bf16", "translate_volume bf16"),
    ):
        if f"{name}_slices_per_s" in r9:
            lines.append(f"| {label} | {r9[f'{name}_slices_per_s']:.2f} | {r9[f'{name}_cpu_s_per_slice']:.2f} |")
    lines += [
        "",
        (
            f"End to end is {r9['end_to_end_over_raw']:.0%} of raw; translate_volume fp32 is "
            f"{r9['fp32_vs_naive']:.2f}× the naive loop and agrees with it to "
            f"{r9['naive_equals_fp32_max_abs']:.3g} HU. "
        )
        + (
            f"bf16: {r9['bf16_vs_naive']:.2f}× the naive loop."
            if "bf16_vs_naive" in r9
            else f"bf16 is emulated on this CPU: one slice took {r9['emulated_bf16_over_fp32_one_slice']:.0f}× "
            "as long as in fp32, so the CLI, widgets and trainer refuse or hide it (issue 23)."
        ),
    ]
    if report["bf16_differences"]:
        lines += [
            "",
            "## bf16 − fp32 of the shipped translators (HU)",
            "",
            "| translator | mean abs | p99 | max | SSIM |",
            "|---|---|---|---|---|",
        ]
        for name, d in report["bf16_differences"].items():
            lines.append(
                f"| {name} | {d['mean_abs']:.1f} | {d['p99_abs']:.1f} | {d['max_abs']:.1f} | {d['ssim']:.4f} |"
            )
    lines += [
        "",
        f"## Peak RSS, {'×'.join(map(str, rss['shape']))} int16 volume",
        "",
        (
            f"Generator {rss['generator']} ({rss['seconds']:.0f} s). Input {rss['input_bytes'] / 2**20:.0f} MiB, "
            f"float32 output {rss['output_bytes'] / 2**20:.0f} MiB; RSS after loading model and input "
            f"{rss['rss_before_bytes'] / 2**20:.0f} MiB; **peak RSS {rss['peak_rss_bytes'] / 2**20:.0f} MiB**."
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--slices", type=int, default=32, help="slices per engine-overhead measurement")
    parser.add_argument("--resnet-slices", type=int, default=8, help="slices per ResNet-9 measurement")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per figure (best counts)")
    parser.add_argument("--rss-shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--rss-child", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, tuple(args.rss_shape), args.threads)
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MEDTRANS_CACHE_DIR"] = cache  # measure batch sizes afresh, leave the user's cache alone
        report = run(args)
    stem = RESULTS / f"inference_throughput_{report['machine']['kind']}"
    command = ("python benchmarks/inference_throughput.py " + " ".join(sys.argv[1:])).strip()
    write_result(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_result(stem.with_suffix(".md"), markdown(report, command))
    print(markdown(report, command))


if __name__ == "__main__":
    main()
