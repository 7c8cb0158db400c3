"""Uniform weight averaging of translators fine-tuned from one start ("model soup", Wortsman et al., ICML 2022).

Runs that start from the same weights and differ only in their random stream (seed: data order, augmentation
draws, train/validation split) end in one basin of the loss, so the mean of their weights is a network of its
own, often better than each run; it costs no inference time. The averaged file records its parts in
``provenance['averaged_from']`` and the number of runs in ``deviations['weight_average']``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from napari_medtrans.checkpoint import CheckpointError, TranslatorMetadata, load_modules, save_translator

SAME_FIELDS = (
    "method",
    "source",
    "target",
    "networks",
    "source_intensity",
    "target_intensity",
    "slice_axis",
    "size",
    "context_slices",
    "outputs",
    "patch",
)
"""Metadata fields that every averaged translator must share: the same networks on the same inputs."""


def average_translators(
    paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, overwrite: bool = False
) -> TranslatorMetadata:
    """Write to ``out`` the translator whose floating-point tensors are the mean of those of ``paths`` (two or
    more translators with the same networks); integer tensors must be equal. Metadata: the first file's, with
    the parts listed. Raises :class:`CheckpointError` naming the file that does not fit.
    """
    if len(paths) < 2:
        raise CheckpointError(f"weight averaging needs at least two translators, got {len(paths)}")
    first_modules, first = load_modules(paths[0])
    sums = {
        role: {k: v.double() if v.is_floating_point() else v for k, v in m.state_dict().items()}
        for role, m in first_modules.items()
    }
    for path in paths[1:]:
        modules, metadata = load_modules(path)
        for key in SAME_FIELDS:
            if getattr(metadata, key) != getattr(first, key):
                raise CheckpointError(f"{path}: its {key} differs from {paths[0]}'s; only the same networks average")
        for role, module in modules.items():
            for name, tensor in module.state_dict().items():
                if tensor.is_floating_point():
                    sums[role][name] += tensor.double()
                elif not torch.equal(tensor, sums[role][name]):
                    raise CheckpointError(f"{path}: integer tensor {role}.{name} differs from {paths[0]}'s")
    for role, module in first_modules.items():
        state = module.state_dict()
        module.load_state_dict(
            {k: (v / len(paths)).to(state[k].dtype) if v.is_floating_point() else v for k, v in sums[role].items()}
        )
    metadata = replace(
        first,
        provenance={**first.provenance, "averaged_from": [str(Path(p)) for p in paths]},
        deviations={**first.deviations, "weight_average": len(paths)},
    )
    save_translator(out, first_modules, metadata, overwrite=overwrite)
    return metadata
