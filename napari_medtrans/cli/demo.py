"""``medtrans demo``: the main job — a phantom T1 head translated to CT.

With a display, napari opens with the phantom T1, its real CT as reference, a
demo translator selected and on-the-fly translation with its uncertainty
overlay on. Without one (``$DISPLAY`` unset, or ``--headless``), the same
phantom is translated in full and NIfTI volumes plus a PNG montage are written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from napari_medtrans.cli import CommandError
from napari_medtrans.constants import DEVICES

DEFAULT_MODEL = "t1-ct-uapi-supervised"
DEFAULT_OUT = "medtrans-demo"
MONTAGE_WINDOW_HU = (-160.0, 240.0)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="open napari with a phantom translated on the fly (headless: write outputs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"translator name or path (default {DEFAULT_MODEL})")
    parser.add_argument("--seed", type=int, default=0, help="phantom subject seed (default 0)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--headless", action="store_true", help="never open a window, write files instead")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"headless output folder (default ./{DEFAULT_OUT})")
    parser.add_argument("--overwrite", action="store_true", help="write into --out even if it holds a previous demo")
    parser.set_defaults(func=run)


def has_display() -> bool:
    """Whether a window can be opened (X11/Wayland on Linux; always elsewhere)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    """Run the demo in a window, or headless when there is no display."""
    _check_model(args.model)
    if args.headless or not has_display():
        return run_headless(
            args.model, seed=args.seed, device=args.device, out=Path(args.out), overwrite=args.overwrite
        )
    from napari_medtrans._widgets.demo import run_viewer

    return run_viewer(args.model, seed=args.seed, device=args.device)


def _check_model(model: str) -> None:
    from napari_medtrans import registry

    try:
        registry.resolve(model)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        names = ", ".join(info.name for info in registry.list_translators()) or "none"
        raise CommandError(f"translator {model!r} not found ({exc}); available: {names}") from exc


def output_folder(out: Path, overwrite: bool) -> Path:
    """``out``, or a fresh timestamped folder inside it when ``out`` is not empty."""
    if overwrite or not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return out
    fresh = out / time.strftime("run-%Y%m%d-%H%M%S")
    suffix = 1
    while fresh.exists():
        fresh = out / f"{time.strftime('run-%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    fresh.mkdir(parents=True)
    return fresh


def run_headless(model: str, *, seed: int, device: str, out: Path, overwrite: bool) -> int:
    """Translate the phantom T1 to CT, write NIfTI files and a montage, say where."""
    from napari_medtrans.inference import load_translator
    from napari_medtrans.io import write_volume
    from napari_medtrans.phantom import generate_subject

    subject = generate_subject(seed)
    t1, ct = subject.volume("t1"), subject.volume("ct")
    translator = load_translator(model, device=device)
    meta = translator.metadata
    print(f"demo: {meta.name} ({meta.method}, {meta.source} → {meta.target}) on {subject.name} {t1.array.shape}")
    uncertainty = None if "scale" in meta.outputs else "tta"
    start = time.perf_counter()
    result = translator.translate_volume(t1, uncertainty=uncertainty)
    seconds = time.perf_counter() - start
    sigma = result.scale if result.scale is not None else result.uncertainty
    folder = output_folder(out, overwrite)
    outputs = {
        "input_t1.nii.gz": t1,
        "synthetic_ct.nii.gz": t1.with_array(result.image.astype(np.float32), modality=meta.target),
        "reference_ct.nii.gz": ct,
    }
    if sigma is not None:
        outputs["uncertainty_sigma.nii.gz"] = t1.with_array(sigma.astype(np.float32), modality=None)
    written = [write_volume(volume, folder / name, overwrite=overwrite) for name, volume in outputs.items()]
    montage = write_montage(folder / "montage.png", t1.array, result.image, ct.array, sigma)
    head = ct.array > -500
    mae = float(np.abs(result.image - ct.array)[head].mean())
    print(f"demo: translated {t1.array.shape[0]} slices in {seconds:.1f} s; MAE in the head {mae:.0f} HU")
    for path in [*written, montage]:
        print(f"demo: wrote {path}")
    print(f"demo: outputs are in {folder.resolve()}")
    return 0


def write_montage(
    path: Path, t1: np.ndarray, synthetic: np.ndarray, reference: np.ndarray, sigma: np.ndarray | None
) -> Path:
    """PNG: rows of slices; columns input T1, synthetic CT, real CT, σ (with colorbars)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = [
        ("input T1", t1, "gray", None),
        ("synthetic CT (HU)", synthetic, "gray", MONTAGE_WINDOW_HU),
        ("real CT (HU)", reference, "gray", MONTAGE_WINDOW_HU),
    ]
    if sigma is not None:
        columns.append(("uncertainty σ (HU)", sigma, "inferno", (0.0, float(np.percentile(sigma, 99)) or 1.0)))
    rows = [int(t1.shape[0] * f) for f in (0.35, 0.5, 0.65)]
    figure = Figure(figsize=(3 * len(columns), 3 * len(rows)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for r, index in enumerate(rows):
        for c, (title, volume, cmap, limits) in enumerate(columns):
            ax = axes[r, c]
            vmin, vmax = limits if limits else np.percentile(volume[index], (1, 99))
            image = ax.imshow(volume[index], cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_axis_off()
            ax.set_title(f"{title}, slice {index}" if r == 0 else f"slice {index}", fontsize=9)
            if limits:
                figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    figure.tight_layout()
    figure.savefig(path)
    return path
