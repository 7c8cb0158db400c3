"""Training toolkit of napari-medtrans: one loop, methods registered by name.

``python -m training --method pix2pix --phantom paired --run-dir runs/demo``
(≡ ``medtrans train …``) trains a translator and writes a run directory (see
:mod:`napari_medtrans.rundir`). Never imports Qt or napari.

Modules: :mod:`training.config` (typed configs), :mod:`training.data` (volumes →
slices → batches), :mod:`training.methods` (the registry and one module per
method), :mod:`training.loop` (the trainer), :mod:`training.checkpointing`
(resumable safetensors checkpoints), :mod:`training.distributed` (torchrun),
:mod:`training.cli` (the command line).
"""

from __future__ import annotations

from typing import Any

__all__ = ["main", "train"]


def train(cfg: Any, *, resume: bool = False) -> int:
    """Run one training job (see :func:`training.loop.train`)."""
    from training.loop import train as _train

    return _train(cfg, resume=resume)


def main(argv: Any = None) -> int:
    """The command line (see :func:`training.cli.main`)."""
    from training.cli import main as _main

    return _main(argv)
