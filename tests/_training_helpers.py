"""Tiny training runs shared by the tests/test_training_*.py modules (seconds each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Per-method options that keep networks tiny (ngf 8, 2 residual blocks, small U-Nets).
TINY_MODEL = {
    "pix2pix": ["model.n_blocks=2", "model.ndf=8"],
    "cyclegan": ["model.n_blocks=2", "model.ndf=8", "model.pool_size=4"],
    "reggan": ["model.n_blocks=2", "model.ndf=8", "model.reg_nf=8", "model.reg_depth=3"],
    "pi": ["model.ndf=8", "model.n_critic=2", "model.generator_options.depth=3"],
    "uapi": [
        "model.ndf=8",
        "model.n_critic=2",
        "model.generator_options.depth=3",
        "model.lambda_paired=1",
        "model.nll_beta=1",
    ],
    "cut": [
        "model.n_blocks=2",
        "model.ndf=8",
        "model.num_patches=32",
        "model.nce_features=32",
        "model.nce_layers=[0,4,7,10,11]",
    ],
    "gcgan": ["model.n_blocks=2", "model.ndf=8", "model.pool_size=4"],
    "ugac": [
        "model.ndf=8",
        "model.n_layers_d=3",
        "model.generator_options.depth=2",
        "model.generator_options.cascade=2",
    ],
    "shape-cyclegan": [
        "model.n_blocks=2",
        "model.ndf=8",
        "model.pool_size=4",
        "model.seg_features=8",
        "model.seg_depth=2",
    ],
    "fastcut": [
        "model.n_blocks=2",
        "model.ndf=8",
        "model.num_patches=32",
        "model.nce_features=32",
        "model.nce_layers=[0,4,7,10,11]",
    ],
    "regression": ["model.depth=3", "model.encoder_blocks=1"],
    "nicegan": ["model.ndf=8", "model.n_blocks=2", "model.n_dis=6", "model.img_size=64", "data.size=64"],
    "maskgan": ["model.n_blocks=2", "model.ndf=8", "model.pool_size=4", "model.n_attentions=3"],
    "spade": ["model.ngf=2", "model.n_up=3", "model.hidden=8", "model.ndf=8", "model.n_layers_d=3"],
    "unit": ["model.n_res=2", "model.ndf=8", "model.n_layers_d=3", "model.num_scales=2"],
    "munit": ["model.n_res=2", "model.ndf=8", "model.n_layers_d=3", "model.num_scales=2", "model.mlp_dim=16"],
    "unsb": [
        "model.n_blocks=2",
        "model.ndf=8",
        "model.num_patches=32",
        "model.nce_features=32",
        "model.nce_layers=[0,4,7,10,11]",
        "model.num_timesteps=3",
    ],
    "syndiff": [
        "model.n_blocks=2",
        "model.ndf=8",
        "model.nf=8",
        "model.ch_mult=[1,2]",
        "model.num_res_blocks=1",
        "model.attn_levels=[1]",
        "model.nz=8",
        "model.z_emb_dim=16",
    ],
}

REGIME = {
    "pix2pix": "paired",
    "reggan": "misaligned",
    "cyclegan": "unpaired",
    "pi": "unpaired",
    "uapi": "paired",
    "cut": "unpaired",
    "fastcut": "unpaired",
    "gcgan": "unpaired",
    "ugac": "unpaired",
    "shape-cyclegan": "unpaired",
    "regression": "paired",
    "nicegan": "unpaired",
    "maskgan": "unpaired",
    "spade": "paired",
    "unit": "unpaired",
    "munit": "unpaired",
    "unsb": "unpaired",
    "syndiff": "unpaired",
}


def tiny_args(
    method: str, run_dir: Path, *, iterations: int = 6, regime: str | None = None, extra: list[str] | None = None
) -> list[str]:
    """Command-line arguments of a tiny phantom run (32² slices, 3 subjects of 6 slices)."""
    args = [
        "--method",
        method,
        "--phantom",
        regime or REGIME[method],
        "--run-dir",
        str(run_dir),
        "--iterations",
        str(iterations),
        "--size",
        "32",
        "--subjects",
        "3",
        "--threads",
        "1",
        "--log-every",
        "2",
        "--checkpoint-every",
        "3",
        "--preview-every",
        "3",
        "--set",
        "data.phantom_depth=6",
        "--set",
        "data.val_slices=2",
        "--set",
        "data.min_foreground=0.0",
        "--set",
        "model.ngf=8",
    ]
    for item in TINY_MODEL[method]:
        args += ["--set", item]
    return args + (extra or [])


def tiny_config(method: str, run_dir: Path, **kwargs):
    from training.cli import build_config, build_parser

    argv = tiny_args(method, run_dir, **kwargs)
    return build_config(build_parser().parse_args(argv))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_training(args: list[str], log: Path) -> subprocess.Popen:
    """``python -m training ARGS`` as a real subprocess, output to ``log``."""
    handle = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env=subprocess_env(),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def run_training(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m training ARGS`` as a real subprocess run to its end, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
