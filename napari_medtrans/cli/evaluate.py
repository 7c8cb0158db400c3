"""``medtrans evaluate [--model NAME...] [--translated DIR...] (--data DIR | --phantom [N]) --out DIR``.

Translates the test inputs of every scenario (GN0 clean, GN5/10/20 Gaussian
noise, IP2/5/10 impulse noise on the source image) with each model and writes
``metrics.json``, ``report.md`` and PNG plots to ``--out``. ``--data DIR`` holds
``DIR/<source>/NAME.nii.gz``, ``DIR/<target>/NAME.nii.gz`` and ``DIR/labels/NAME.nii.gz``
(modality folder names in lower case, e.g. ``t1``, ``ct``). Dice uses the shipped
segmenter of the target modality unless ``--segmenter`` names one; FID/KID need
``--fid-weights`` (a local TorchScript feature extractor). Metrics that cannot be
computed are null, with the reason in the report.

``--translated DIR`` (repeatable) scores volumes translated elsewhere (a SynthRAD
submission, a colleague's model): ``DIR/<case>.nii.gz`` or ``.mha``, matched to the
cases of ``--data`` by name and required to lie on the target's grid. Each folder is a
row named after it (or ``--name``, one per folder), scored under GN0 with every metric
but those that need a model (noise scenarios, σ). ``--target`` gives the modality when
no ``--model`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_medtrans.cli import CommandError
from napari_medtrans.metrics import SCENARIOS
from napari_medtrans.progress import Progress
from napari_medtrans.rundir import require_writable_folder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate translators: paired, distribution, Dice, robustness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", nargs="+", default=[], metavar="NAME", help="translator names or paths")
    parser.add_argument(
        "--translated",
        nargs="+",
        default=[],
        type=Path,
        metavar="DIR",
        action="extend",
        help="folders of volumes translated elsewhere (DIR/<case>.nii.gz or .mha); needs --data",
    )
    parser.add_argument(
        "--name",
        nargs="+",
        default=[],
        metavar="NAME",
        help="row names for the --translated folders (default: the folder names)",
    )
    parser.add_argument("--target", metavar="MODALITY", help="target modality (e.g. CT) when no --model gives it")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", type=Path, metavar="DIR", help="test data folder (see above)")
    data.add_argument(
        "--phantom", type=int, nargs="?", const=2, metavar="N", help="N held-out phantom subjects (default 2)"
    )
    parser.add_argument("--scenarios", default="all", help=f"'all' or a comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--segmenter", type=Path, help="target-modality segmenter (default: the shipped one)")
    parser.add_argument("--fid-weights", type=Path, help="local TorchScript feature extractor for FID/KID")
    parser.add_argument("--no-frd", action="store_true", help="skip FRD (radiomics extraction is the slow part)")
    parser.add_argument(
        "--frd-original-only",
        action="store_true",
        help="FRD on original-image features only (faster than Original+LoG+Wavelet)",
    )
    parser.add_argument(
        "--set-bootstrap",
        type=int,
        default=50,
        metavar="N",
        help="subject resamples for the SWD/FRD intervals (default 50; 0: no interval)",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(32, 128, 128),
        metavar=("Z", "Y", "X"),
        help="phantom volume shape (default 32 128 128)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument(
        "--pcc-min-foreground",
        type=float,
        default=0.1,
        metavar="F",
        help="σ–error correlation over slices whose body covers ≥ F of the slice (0: all; "
        "default 0.1, the trainer's slice selection)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing metrics.json/report.md")
    parser.set_defaults(func=run)


def _scenarios(text: str) -> list[str]:
    if text == "all":
        return list(SCENARIOS)
    names = [s.strip().upper() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names:
        raise CommandError(f"unknown scenario(s) {', '.join(unknown) or text!r}; choose from {', '.join(SCENARIOS)}")
    return names


def _rows(args: argparse.Namespace) -> dict[str, Path]:
    """Row name → translated folder; names from --name or the folder names, all distinct."""
    if args.name and len(args.name) != len(args.translated):
        raise CommandError(f"--name gives {len(args.name)} name(s) for {len(args.translated)} --translated folder(s)")
    names = args.name or [folder.resolve().name for folder in args.translated]
    if len(set(names)) != len(names):
        raise CommandError(f"row names must differ, got {names}; give --name")
    return dict(zip(names, args.translated))


def run(args: argparse.Namespace) -> int:
    """Load models, segmenter and cases; evaluate; write the report."""
    from napari_medtrans import evaluation
    from napari_medtrans.checkpoint import CheckpointError
    from napari_medtrans.evaluation_report import write_report
    from napari_medtrans.inference import load_translator
    from napari_medtrans.io import GridMismatch, VolumeReadError
    from napari_medtrans.segmenter import load_segmenter, shipped_segmenter

    scenarios = _scenarios(args.scenarios)
    if not args.model and not args.translated:
        raise CommandError("give --model NAME... and/or --translated DIR...")
    if args.translated and args.data is None:
        raise CommandError("--translated needs --data DIR (the reference volumes to compare with)")
    rows = _rows(args)
    if not args.model:
        scenarios = ["GN0"]
    elif rows and "GN0" not in scenarios:
        raise CommandError("--translated rows are scored under GN0; include GN0 in --scenarios")
    if (args.out / "metrics.json").exists() and not args.overwrite:
        raise CommandError(f"{args.out / 'metrics.json'} exists; pass --overwrite to replace it")
    try:
        require_writable_folder(args.out)  # before the work, not after it
    except OSError as exc:
        raise CommandError(exc.strerror) from exc
    try:
        translators = {Path(str(m)).name.split(".")[0]: load_translator(m, device=args.device) for m in args.model}
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        raise CommandError(f"cannot load model: {exc}") from exc
    directions = {(t.metadata.source, t.metadata.target) for t in translators.values()}
    if len(directions) > 1:
        raise CommandError(f"all models must translate the same way, got {sorted(directions)}")
    source, target = directions.pop() if directions else (None, args.target)
    if target is None:
        raise CommandError("without --model, give the target modality with --target (e.g. --target CT)")
    if args.target and args.target != target:
        raise CommandError(f"--target {args.target} but the models translate to {target}")
    segmenter_path = args.segmenter or shipped_segmenter(target)
    try:
        segmenter = load_segmenter(segmenter_path, device=args.device) if segmenter_path else None
    except CheckpointError as exc:
        raise CommandError(str(exc)) from exc
    if segmenter is not None and segmenter.metadata.modality != target:
        raise CommandError(f"segmenter {segmenter_path} segments {segmenter.metadata.modality}, models output {target}")
    try:
        if args.phantom is None:
            cases = evaluation.folder_cases(args.data, source, target)
        elif source is None:
            raise CommandError("--phantom makes the models' source images: give at least one --model")
        else:
            cases = evaluation.phantom_cases(args.phantom, source, target, shape=tuple(args.shape))
        translated = {name: evaluation.translated_volumes(folder, cases) for name, folder in rows.items()}
    except (FileNotFoundError, GridMismatch, VolumeReadError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    settings = evaluation.EvalSettings(
        scenarios=scenarios,
        seed=args.seed,
        segmenter=segmenter,
        label_names={k: v for k, v in segmenter.metadata.labels.items() if k} if segmenter else {},
        fid_weights=args.fid_weights,
        frd=not args.no_frd,
        frd_image_types=["Original"] if args.frd_original_only else None,
        pcc_min_foreground=args.pcc_min_foreground,
        set_bootstrap=args.set_bootstrap,
    )
    result = evaluation.evaluate(
        translators,
        cases,
        settings,
        progress=Progress(sys.stderr),
        translated=translated,
        modality=target,
    )
    written = write_report(result, args.out)
    print("\n".join(summary_lines(result.to_json(), target)))
    print(f"wrote {', '.join(path.name for path in written)} to {args.out}")
    return 0


def summary_lines(doc: dict, modality: str) -> list[str]:
    """The headline numbers of ``metrics.json`` for a person: per row and scenario MAE (HU for CT), SSIM, mean Dice."""
    unit = " HU" if modality == "CT" else ""
    rows = [
        (name, scenario, values) for name, scenarios in doc["models"].items() for scenario, values in scenarios.items()
    ]
    width = max(len(f"{name} {scenario}") for name, scenario, _ in rows)
    lines = []
    for name, scenario, values in rows:
        shown = [
            f"{label} {'n/a' if values.get(key) is None else f'{values[key]:{form}}'}{suffix}"
            for label, key, form, suffix in (
                ("MAE", "mae", ".1f", unit),
                ("SSIM", "ssim", ".3f", ""),
                ("Dice", "dice_mean", ".3f", ""),
            )
        ]
        lines.append(f"  {f'{name} {scenario}':<{width}}  " + ", ".join(shown))
    ceiling = doc["reference"].get("dice_mean")
    if ceiling is not None:
        lines.append(f"  Dice ceiling (the segmenter on the real images) {ceiling:.3f}")
    return [f"{len(rows)} row(s) evaluated; the full report is report.md"] + lines
