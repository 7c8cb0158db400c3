"""Shared pytest fixtures: small phantom data that every test module can reuse.

The fixtures are session-scoped (generated once per test run) and must be
treated as read-only: copy an array before changing it. No Qt import here.
"""

from __future__ import annotations

import pytest

SMALL_SHAPE = (16, 64, 64)


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Measured batch sizes go to a temporary cache folder, never the user's (also in subprocesses)."""
    import os

    os.environ["MEDTRANS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def small_subject():
    """One phantom head of shape (16, 64, 64), seed 0 (a ``PhantomSubject``)."""
    from napari_medtrans.phantom import generate_subject

    return generate_subject(0, shape=SMALL_SHAPE)


@pytest.fixture(scope="session")
def small_cohort():
    """Four aligned phantom pairs of shape (16, 64, 64), seed 0 (``list[PhantomPair]``)."""
    from napari_medtrans.phantom import generate_cohort

    return generate_cohort(4, "paired", seed=0, shape=SMALL_SHAPE)


def _fake_cpu(monkeypatch, flags: set[str]) -> None:
    from napari_medtrans import cpu_features

    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(cpu_features, "cpu_model", lambda: "Fake CPU")


@pytest.fixture()
def native_bf16(monkeypatch):
    """Fake a CPU with AMX-BF16 (bf16 is offered and chosen; on a CPU without it, it runs emulated)."""
    _fake_cpu(monkeypatch, {"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"})


@pytest.fixture()
def emulated_bf16(monkeypatch):
    """Fake an AVX-512 CPU without bf16 or fp16 instructions (bf16 is emulated there)."""
    _fake_cpu(monkeypatch, {"avx512f", "avx2"})


@pytest.fixture
def one_thread():
    """Tiny networks: one intra-op thread (on a shared CPU, spinning OpenMP threads make a step ~50× slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
