"""Distributed training on 2 CPU processes (gloo): torchrun end to end, and the
gradient averaging that keeps ranks in step."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _training_helpers import REPO, subprocess_env, tiny_args

from napari_medtrans.rundir import RunDir

pytestmark = pytest.mark.slow  # starts torchrun


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    from torch import nn

    from training.distributed import DistInfo, average_gradients, broadcast_modules

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    info = DistInfo(rank, 2, rank)
    torch.manual_seed(rank)  # different initial weights on purpose
    net = nn.Linear(3, 2)
    broadcast_modules([net], info)
    for p in net.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    average_gradients(list(net.parameters()), info)
    torch.save({"weight": net.weight.detach().clone(), "grad": net.weight.grad.clone()}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


def test_gradients_averaged_and_weights_broadcast(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    torch.testing.assert_close(r0["weight"], r1["weight"])
    torch.testing.assert_close(r0["grad"], torch.full_like(r0["grad"], 1.5))
    torch.testing.assert_close(r1["grad"], r0["grad"])


@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun not installed"
)
def test_torchrun_two_processes_only_rank0_writes(tmp_path):
    run = RunDir(tmp_path / "run")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training",
        *tiny_args("pix2pix", run.path, iterations=6),
    ]
    out = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    status = run.read_status()
    assert status["state"] == "finished" and status["world_size"] == 2 and status["iteration"] == 6
    log = run.log_path.read_text()
    assert log.count("finished 6 iterations") == 1 and log.count("data: ") == 1  # rank 1 wrote nothing
    records, _ = run.read_metrics()
    steps = [r["iteration"] for r in records if "it_per_s" in r]
    assert steps == sorted(set(steps))
    assert run.translator_path.is_file()
