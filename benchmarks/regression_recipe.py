"""Which regression recipe learns fastest? Variants at an equal iteration budget, scored on VALIDATION subjects.

    python benchmarks/regression_recipe.py [--iterations 300] [--variants lr3e-4,lr1e-3]

Trains ``regression`` on the paired phantom (16 subjects, 128² slices, batch 4, the small network of
``benchmarks/regression_context.py``) once per variant of ``VARIANTS``, everything else equal, then
translates three validation subjects of their own cohort (phantom cohort seed 77: seen by no run and
distinct from the test seeds 1000–1002 that the shipped numbers use) and records body-mask MAE,
through-plane error, hot voxels in air and the bone mean. Recipes are chosen here, never on test
subjects. Writes ``benchmarks/results/regression_recipe.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note
from benchmarks.time_to_quality import held_out
from napari_medtrans.phantom.cohort import subject_seed
from napari_medtrans.rundir import atomic_write_bytes
from training.cli import main as train_main

_ARGS = (
    "--method regression --phantom paired --size 128 --subjects 16 --batch-size 4 --threads 1 --log-every 25"
    " --checkpoint-every 5000 --preview-every 5000 --set data.phantom_depth=32 --set model.ngf=16"
    " --set model.depth=4 --set model.encoder_blocks=1"
)
ARGS = _ARGS.split()
VARIANTS = {
    "lr3e-4": ["--lr", "3e-4"],  # the method's previous default (Adam, linear decay from the start)
    "lr1e-3": ["--lr", "1e-3"],
    "lr1e-3-median": ["--lr", "1e-3", "--set", "data.source_intensity=median"],  # scanner-robust normalisation
}
VALIDATION_COHORT_SEED = 77
RESULTS = Path(__file__).resolve().parent / "results" / "regression_recipe.md"


def validation_scores(path: Path) -> dict[str, float]:
    """Mean body-mask MAE, through-plane error, hot air voxels and bone mean on three validation subjects."""
    return held_out(path, "cpu", [subject_seed(VALIDATION_COHORT_SEED, index) for index in range(3)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work-dir", type=Path, default=Path("build/regression_recipe"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    lines = [
        "# Regression recipe: variants at an equal budget, validation subjects",
        "",
        f"`python benchmarks/regression_recipe.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Training: `python -m training {' '.join(ARGS)} --iterations {args.iterations}` plus the variant's "
        f"arguments. Scored on three validation subjects (phantom cohort seed {VALIDATION_COHORT_SEED}, shape "
        f"(32, 128, 128)), body mask.",
        "",
        "| variant | arguments | train wall (s) | MAE (HU) | through-plane (HU) | hot voxels in air | bone mean (truth) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.variants.split(","):
        run = args.work_dir / name
        start = time.perf_counter()
        code = train_main(
            [*ARGS, *VARIANTS[name], "--iterations", str(args.iterations), "--run-dir", str(run), "--overwrite"]
        )
        wall = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"{name} failed; see {run / 'log.txt'}")
        s = validation_scores(run / "translator.safetensors")
        lines.append(
            f"| {name} | `{' '.join(VARIANTS[name]) or '(defaults)'}` | {wall:.0f} | {s['mae']:.1f} | "
            f"{s['through_plane']:.1f} | {s['hot_voxels']:.0f} | {s['bone_mean']:.0f} ({s['true_bone_mean']:.0f}) |"
        )
    lines += ["", load_note(load_start, os.getloadavg()[0]), ""]
    atomic_write_bytes(args.out, "\n".join(lines).encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
