"""Distributed resume: each rank's RNG streams, sampler state and image pools travel in the
checkpoint and come back to that rank; per-rank seeds of different runs never collide."""

from __future__ import annotations

import random

import numpy as np
import torch

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
    path.write_bytes(checkpoint_bytes(method=method, scaler=scaler, sampler_state={"position": 0}, iteration=4,
                                      config={}, best=None, method_generator=rank0_generator, elapsed=1.0,
                                      other_ranks=[rank1]))
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
