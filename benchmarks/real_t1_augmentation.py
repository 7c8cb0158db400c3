"""Source augmentations for real T1s: fine-tune the shipped regression, score validation phantoms and real T1s.

    python benchmarks/real_t1_augmentation.py [--iterations 800] [--variants all] [--jobs 2] [--init FILE]
        [--seeds 0] [--soup] [--score-only]

Issue 18 item 2 / issue 17's MNI152 goal. Each variant of ``VARIANTS`` fine-tunes
``--init`` (default ``sample_data/models/t1-ct-regression.safetensors``) with the demo recipe of
``sample_data/make_demo_models.py`` (same cohort, network and normalisation) plus its ``data.augment_*``
options (:mod:`training.augment`), ``--iterations`` long (Adam, learning rate ``--lr`` decaying linearly
from the start), one thread per run, ``--jobs`` runs at a time (they inherit this script's niceness: start
it with ``nice -n 10``). Then every variant and the
shipped model are scored on three VALIDATION phantom subjects (cohort seed 77, as
``benchmarks/regression_recipe.py``; never the test seeds 1000–1002) and on the two real T1s of
``benchmarks/real_t1_normalisation.py`` (MNI152 brain, grey and white matter; the ``anatomical.nii``
crop), and so is the starting translator when it is not the shipped one. ``--seeds 1,2`` runs each variant once
per training seed (data order, augmentation draws, train/validation split; run ``<variant>-seed<k>``, seed 0 keeps
the plain name); ``--soup`` also scores the uniform average of each variant's runs (:mod:`training.weight_average`). The real T1s are a plausibility check, not a test set: the number of variants tried is
printed with the results. Writes ``--out`` (default ``benchmarks/results/real_t1_augmentation.md``, replaced:
earlier rounds were gathered there by hand, each with its command).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note, run_process
from benchmarks.real_t1_normalisation import COLD_HU, HOT_HU, RIM_VOXELS, RealT1, in_range, real_t1s
from benchmarks.regression_recipe import validation_scores
from napari_medtrans.inference import load_translator
from napari_medtrans.rundir import atomic_write_bytes
from sample_data.make_demo_models import (
    AUGMENT_FOR_REAL_T1,
    COMMON,
    POOLS_FOR_REAL_T1,
    REGRESSION_ARGS,
    REGRESSION_TUNING,
)
from training.weight_average import average_translators

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "sample_data" / "models" / "t1-ct-regression.safetensors"
RESULTS = Path(__file__).resolve().parent / "results" / "real_t1_augmentation.md"
SHIPPED_AUGMENTATIONS = AUGMENT_FOR_REAL_T1[1::2]
"""The augmentations of every fine-tuning stage of the shipped regression (``make_demo_models``), without their
``--set`` flags; its later stages add ``POOLS_FOR_REAL_T1`` (variant ``pools-contrast``; the fourth also dark
pools: ``dark-pools-always``; the fifth those with pools in every view and white-matter septa: ``septum``)."""
POOLS_EVERY_VIEW = [
    *SHIPPED_AUGMENTATIONS,
    "data.augment_tissue_contrast=0.5",
    "data.augment_csf_pools=1",
    "data.augment_dark_pools=1",
]
"""The shipped augmentations with dark CSF pools in every view (variant ``dark-pools-often``, and the base of the
septum variants)."""
VARIANTS: dict[str, list[str]] = {
    "none": [],  # the same fine-tuning without augmentation: what the extra iterations alone do
    "all": SHIPPED_AUGMENTATIONS,
    "strip-fov": ["data.augment_skull_strip=0.3", "data.augment_fov_crop=0.3"],
    "heavy": ["data.augment_skull_strip=0.5", "data.augment_fov_crop=0.5", "data.augment_intensity=0.8"],
    "all-contrast": [*SHIPPED_AUGMENTATIONS, "data.augment_tissue_contrast=0.5"],
    "pools": [*SHIPPED_AUGMENTATIONS, "data.augment_csf_pools=0.5"],
    "pools-contrast": [*SHIPPED_AUGMENTATIONS, *POOLS_FOR_REAL_T1[1::2]],
    "pools-contrast-often": [*SHIPPED_AUGMENTATIONS, "data.augment_tissue_contrast=0.5", "data.augment_csf_pools=0.8"],
    "dark-pools": [*SHIPPED_AUGMENTATIONS, *POOLS_FOR_REAL_T1[1::2], "data.augment_dark_pools=0.5"],
    "dark-pools-always": [*SHIPPED_AUGMENTATIONS, *POOLS_FOR_REAL_T1[1::2], "data.augment_dark_pools=1"],
    "dark-pools-often": POOLS_EVERY_VIEW,
    "septum": [*POOLS_EVERY_VIEW, "data.augment_pool_septum=1"],
    "grey-septum": [*POOLS_EVERY_VIEW, "data.augment_pool_septum=1", "data.augment_grey_septum=0.5"],
    "septum-contrast-always": [*POOLS_EVERY_VIEW, "data.augment_pool_septum=1", "data.augment_tissue_contrast=1"],
    "septum-1mm": [*POOLS_EVERY_VIEW, "data.augment_pool_septum=1", "data.phantom_depth=128"],  # MNI152 slice spacing
    "septum-1mm-mixed": [  # context slices 1 mm apart (the MNI152's) or 4 mm apart (the test phantoms')
        *POOLS_EVERY_VIEW,
        "data.augment_pool_septum=1",
        "data.phantom_depth=128",
        "data.context_strides=[1,4]",
    ],
    "dark-pools-fov": [
        "data.augment_skull_strip=0.3",
        "data.augment_fov_crop=0.6",
        "data.augment_intensity=0.5",
        *POOLS_FOR_REAL_T1[1::2],
        "data.augment_dark_pools=1",
    ],
}
"""Variant name → ``--set`` overrides on top of the shipped regression's recipe."""


def run_name(variant: str, seed: int) -> str:
    """The run directory's name of ``variant`` trained with ``seed`` (seed 0: the variant's own name)."""
    return variant if seed == 0 else f"{variant}-seed{seed}"


def train_command(name: str, iterations: int, lr: float, work: Path, init: Path = SHIPPED, seed: int = 0) -> list[str]:
    """``python -m training`` arguments that fine-tune ``init`` (a regression of the demo recipe) as variant ``name``
    with training seed ``seed``.
    """
    args = [*COMMON, *REGRESSION_ARGS, *REGRESSION_TUNING, "--lr", str(lr)]
    for override in VARIANTS[name]:
        args += ["--set", override]
    run = run_name(name, seed)
    args += ["--init", str(init), "--run-dir", str(work / run), "--iterations", str(iterations)]
    args += ["--seed", str(seed)] if seed else []
    return [*args, "--name", f"t1-ct-regression-{run}", "--threads", "1", "--overwrite"]


def train_all(
    runs: list[tuple[str, int]], iterations: int, lr: float, work: Path, jobs: int, init: Path = SHIPPED
) -> dict[str, dict[str, float]]:
    """Run the fine-tunings (variant, seed), ``jobs`` at a time (subprocesses); wall and CPU seconds per run."""
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))

    def one(run: tuple[str, int]) -> dict[str, float]:
        command = [sys.executable, "-m", "training", *train_command(run[0], iterations, lr, work, init, run[1])]
        return run_process(command, work / f"{run_name(*run)}.log", cwd=ROOT, env=env)

    with ThreadPoolExecutor(jobs) as pool:
        results = {run_name(*run): result for run, result in zip(runs, pool.map(one, runs))}
    for name, result in results.items():
        if result["exit"]:
            raise SystemExit(f"run {name} failed; see {work / f'{name}.log'}")
    return {name: {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"]} for name, r in results.items()}


def real_scores(path: Path | str, real: RealT1) -> dict[str, float]:
    """HU of the MNI152 brain, grey and white matter and of the anatomical.nii crop through one translator."""
    translator = load_translator(path, device="cpu")
    out = translator.translate_volume(real.mni, batch_size=8).image
    crop = translator.translate_volume(real.crop, batch_size=8).image
    brain, inside = out[real.brain], out[real.brain_interior]
    return {
        "brain_mean": float(brain.mean()),
        "brain_in_range": in_range(brain),
        "brain_hot": float((brain > HOT_HU).mean()),
        "interior_hot": float((inside > HOT_HU).sum()),
        "interior_cold": float((inside < COLD_HU).sum()),
        "gm": float(out[real.gm].mean()),
        "wm": float(out[real.wm].mean()),
        "crop_mean": float(crop.mean()),
        "crop_in_range": in_range(crop),
        "crop_hot": float((crop > HOT_HU).mean()),
        "crop_hot_voxels": float((crop > HOT_HU).sum()),
    }


def verdict(r: dict[str, float]) -> str:
    """Which goals a row meets: issue 18 (MNI152 brain and crop 0–80 HU, none > 300) and issue 17 (GM/WM)."""
    checks = {
        "brain 0–80": 0 <= r["brain_mean"] <= 80,
        "brain none > 300": r["brain_hot"] == 0,
        "interior none > 300": r["interior_hot"] == 0,
        "crop 0–80": 0 <= r["crop_mean"] <= 80,
        "crop none > 300": r["crop_hot"] == 0,
        "GM 25–55": 25 <= r["gm"] <= 55,
        "WM 15–45": 15 <= r["wm"] <= 45,
        "GM > WM": r["gm"] > r["wm"],
    }
    met = [k for k, ok in checks.items() if ok]
    return f"{len(met)}/{len(checks)}" + (
        f" (misses {', '.join(k for k, ok in checks.items() if not ok)})" if len(met) < len(checks) else ""
    )


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate (linear decay to 0)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "build" / "real_t1_augmentation")
    parser.add_argument("--init", type=Path, default=SHIPPED, help="the translator every variant starts from")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds; each variant runs once per seed")
    parser.add_argument("--soup", action="store_true", help="also score each variant's runs averaged (weights)")
    parser.add_argument("--score-only", action="store_true", help="score the translators already in --work-dir")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the Markdown report (replaced)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = [(name, seed) for name in names for seed in seeds]
    if args.soup and len(seeds) < 2:
        parser.error("--soup averages the runs of several seeds: give --seeds two or more")
    load_start, start = os.getloadavg()[0], time.time()
    cost = {} if args.score_only else train_all(runs, args.iterations, args.lr, args.work_dir, args.jobs, args.init)
    train_load = os.getloadavg()[0]
    real = real_t1s()
    models: dict[str, Path] = {"shipped t1-ct-regression": SHIPPED}
    if args.init.resolve() != SHIPPED:
        models[f"start: {args.init}"] = args.init
    for run in runs:
        models[f"{run_name(*run)} (+{args.iterations} it)"] = args.work_dir / run_name(*run) / "translator.safetensors"
    for name in names if args.soup else []:
        soup = args.work_dir / f"{name}-soup" / "translator.safetensors"
        parts = [args.work_dir / run_name(name, seed) / "translator.safetensors" for seed in seeds]
        average_translators(parts, soup, overwrite=True)
        models[f"{name}: weights of seeds {args.seeds} averaged"] = soup
    lines = [
        "# Source augmentations for real T1s: fine-tuned regression variants",
        "",
        f"`python benchmarks/real_t1_augmentation.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"Each variant fine-tunes `{args.init}` (`--init`) for {args.iterations} iterations at "
        f"learning rate {args.lr} (linear decay), with the demo recipe plus its `data.augment_*` options: "
        + "; ".join(f"`{n}`: {', '.join(VARIANTS[n]) or 'no augmentation'}" for n in names)
        + f". {len(VARIANTS)} variants are defined here; these {len(names)} were run, with training seed(s) "
        f"{args.seeds}. Phantom: three VALIDATION "
        "subjects (cohort seed 77), body-mask MAE, hot voxels (air above −500 HU) and bone mean. Real T1s: "
        "nilearn's MNI152 (brain, grey, white matter) and nibabel's `anatomical.nii` crop, as in "
        "`real_t1_normalisation.md`; the MNI152 brain's interior (voxels more than "
        f"{RIM_VOXELS} mm inside its mask) counted apart, since the phantom's true CT has bone HU in the brain's rim. Goals: brain and crop 0–80 HU with no "
        "voxel above 300 HU (issue 18); "
        "GM 25–55, WM 15–45, GM > WM (issue 17); the phantom not worse than the shipped model.",
        "",
        "| model | val MAE (HU) | val hot voxels | val bone (truth) | MNI brain mean | in 0–80 | > 300 HU "
        "| interior > 300 HU | interior < −100 HU | GM | WM | crop mean | crop in 0–80 | crop > 300 HU | goals met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, path in models.items():
        v, r = validation_scores(path), real_scores(path, real)
        lines.append(
            f"| {label} | {v['mae']:.1f} | {v['hot_voxels']:.0f} | {v['bone_mean']:.0f} ({v['true_bone_mean']:.0f}) | "
            f"{r['brain_mean']:.0f} | {100 * r['brain_in_range']:.0f} % | {100 * r['brain_hot']:.2f} % | "
            f"{r['interior_hot']:.0f} | {r['interior_cold']:.0f} | {r['gm']:.0f} | {r['wm']:.0f} | {r['crop_mean']:.0f} | "
            f"{100 * r['crop_in_range']:.0f} % | {100 * r['crop_hot']:.2f} % ({r['crop_hot_voxels']:.0f}) | "
            f"{verdict(r)} |"
        )
        print(lines[-1], flush=True)
    if cost:
        runs = ", ".join(f"{n}: {c['wall_s']:.0f} s wall, {c['cpu_s']:.0f} CPU s" for n, c in cost.items())
        lines += ["", f"Training (1 thread each, {args.jobs} at a time): {runs}."]
    lines += ["", f"{time.time() - start:.0f} s in all. " + load_note(load_start, train_load), ""]
    text = "\n".join(lines)
    atomic_write_bytes(args.out, text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
