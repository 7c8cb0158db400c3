"""Distributed resume: each rank's RNG streams, sampler state and image pools travel in the
checkpoint and come back to that rank; per-rank seeds of different runs never collide."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _training_helpers import REPO, subprocess_env, tiny_args
from safetensors.torch import load_file

from napari_medtrans.rundir import RunDir
from training.checkpointing import checkpoint_bytes, load_checkpoint, rank_state
from training.distributed import rank_seeds
from training.methods import get_method


def make_cyclegan():
    cls = get_method("cyclegan")
    options = cls.Options(ngf=4, n_blocks=1, ndf=4, pool_size=3)
    return cls(options, in_channels=1, out_channels=1, lr=2e-4, device=torch.device("cpu"))


def test_each_rank_restores_its_own_state(tmp_path):
    method = make_cyclegan()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    # rank 1's state: its own pool, RNG streams and sampler position
    method.pool_a.images = [torch.full((1, 1, 4, 4), 7.0)]
    random.seed(11)
    rank1_generator = torch.Generator().manual_seed(5)
    rank1 = rank_state(method, {"position": 1}, rank1_generator)
    rank1_python = random.random()
    # rank 0's state
    method.pool_a.images = [torch.full((1, 1, 4, 4), 3.0)]
    random.seed(22)
    rank0_generator = torch.Generator().manual_seed(9)
    path = tmp_path / "last.safetensors"
    path.write_bytes(
        checkpoint_bytes(
            method=method,
            scaler=scaler,
            sampler_state={"position": 0},
            iteration=4,
            config={},
            best=None,
            method_generator=rank0_generator,
            elapsed=1.0,
            other_ranks=[rank1],
        )
    )
    expected_draw = torch.rand(1, generator=torch.Generator().manual_seed(5)).item()

    resumed = make_cyclegan()
    generator = torch.Generator().manual_seed(0)
    meta = load_checkpoint(path, method=resumed, scaler=scaler, method_generator=generator, rank=1)
    assert meta["rng"]["sampler"] == {"position": 1}
    assert [float(i.mean()) for i in resumed.pool_a.images] == [7.0]
    assert random.random() == rank1_python
    assert torch.rand(1, generator=generator).item() == expected_draw

    meta = load_checkpoint(path, method=resumed, scaler=scaler, method_generator=generator, rank=0)
    assert meta["rng"]["sampler"] == {"position": 0}
    assert [float(i.mean()) for i in resumed.pool_a.images] == [3.0]

    meta = load_checkpoint(path, method=resumed, scaler=scaler, method_generator=generator, rank=2)
    assert meta["rng"] is None and resumed.pool_a.images == []


def test_rank_seeds_do_not_collide_across_runs():
    states = {(seed, rank): tuple(rank_seeds(seed, rank).generate_state(2)) for seed in range(4) for rank in range(4)}
    assert len(set(states.values())) == len(states)
    assert states[(0, 1)] != states[(1, 0)]
    assert not np.array_equal(rank_seeds(0, 1, 10).generate_state(2), rank_seeds(0, 1).generate_state(2))


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun not installed"
)
def test_torchrun_checkpoint_holds_every_ranks_state_and_resumes(tmp_path):
    from training.checkpointing import read_checkpoint_metadata

    run = RunDir(tmp_path / "run")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    for iterations, extra in ((3, []), (6, ["--resume"])):
        cmd = [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "training",
            *tiny_args("cyclegan", run.path, iterations=iterations),
            *extra,
        ]
        out = subprocess.run(
            cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    checkpoint = run.checkpoints_dir / "last.safetensors"
    meta = read_checkpoint_metadata(checkpoint)
    assert meta["iteration"] == 6 and set(meta["ranks"]) == {"1"}
    assert meta["ranks"]["1"]["sampler"] != meta["rng"]["sampler"]
    tensors = load_file(str(checkpoint))
    assert {"rank1.extra.pool_A", "rank1.rng.torch", "rank1.rng.method"} <= set(tensors)
    assert not torch.equal(tensors["rank1.rng.method"], tensors["rng.method"])
    assert "resumed from" in run.log_path.read_text()
