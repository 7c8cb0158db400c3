"""Record data regime, deviations and name in the shipped translators' metadata headers.

``python sample_data/relabel_translators.py`` rewrites only the JSON header of
each file listed in :data:`LABELS` (the tensor bytes are copied unchanged),
atomically, then checks that the file still loads and that every tensor is
bit-identical. The demos were trained before the methods followed their papers
(issue 13), so their deviations also name what the code then did differently
(``code_before_issue_13``); the values below are read from each file's
``provenance.config``. ``t1-ct-uapi-unpaired`` was trained with the issue-13
code; its deviations are the options of its recipe that differ from the
defaults (CPU sizing; no supervised term).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SMALL_CPU_NETS = {"ngf": 16, "n_blocks": 4, "ndf": 16, "lr_decay_start": 0.7}

LABELS: dict[str, dict[str, Any]] = {
    "t1-ct-uapi-unpaired": {  # its recipe changed on resume (n_critic 5 → 1), which the trainer cannot know
        "regime": "unpaired",
        "deviations": {"ngf": 16, "generator_options": {"depth": 4}, "ndf": 16,
                       "n_critic": "5 for iterations 1–929, then 1 (resumed) up to 1080", "critic_warmup": 20,
                       "lr_critic": 4e-5, "lr": 1e-4,
                       "init_he_std": "0.88·√(2/fan_in): trained before the Keras truncation correction"},
    },
    "t1-ct-resnet": {
        "regime": "paired",
        "deviations": {**SMALL_CPU_NETS, "lr": 3e-4, "data.min_foreground": 0.0,
                       "code_before_issue_13": "G updated before D; PyTorch default initialisation"},
    },
    "t1-ct-uapi-supervised": {
        "name": "t1-ct-uapi-supervised",  # was t1-ct-uapi: a supervised variant must say so in its name
        "regime": "paired",
        "deviations": {
            "lambda_paired": 10.0, "lambda_paired_l1": 10.0, "nll_beta": 1.0, "n_critic": 1,
            "lambda_pi": 10.0, "critic": "patch", "n_layers_d": 3, "ndf": 16, "ngf": 16,
            "generator_options": {"depth": 4}, "lr": 2e-4, "lr_critic": 2e-4, "lr_decay_start": 0.7,
            "code_before_issue_13": "supervised UAPI variant: Laplace NLL against aligned CT; gradient penalty "
                                    "on the sum of patch scores; no drift term, image pool or one-sided "
                                    "penalty; one bilinear crop per batch; σ trained only through G(P(x)); "
                                    "PyTorch default initialisation",
        },
    },
    "t1-ct-reggan": {
        "regime": "misaligned",
        "deviations": {**SMALL_CPU_NETS, "reg_nf": 8, "lr": 3e-4, "reg_lr": 6e-4,
                       "code_before_issue_13": "D trained on the translation before the G update; "
                                               "learning rate decayed after 70 %"},
    },
}


def rewrite_header(path: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into the translator metadata of ``path``; tensor bytes unchanged."""
    from napari_medtrans.checkpoint import METADATA_KEY
    from napari_medtrans.rundir import atomic_write_bytes

    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    metadata = json.loads(header["__metadata__"][METADATA_KEY])
    metadata.update(update)
    header["__metadata__"][METADATA_KEY] = json.dumps(metadata)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep the tensor data 8-byte aligned
    atomic_write_bytes(path, struct.pack("<Q", len(encoded)) + encoded + raw[8 + length:])


def check_unchanged(path: Path, before: dict[str, Any]) -> None:
    """The file loads as a translator and holds the same tensors as ``before``."""
    import torch
    from safetensors.torch import load_file

    from napari_medtrans.inference import load_translator

    load_translator(path, device="cpu")
    after = load_file(str(path))
    if set(after) != set(before) or any(not torch.equal(after[k], before[k]) for k in before):
        raise SystemExit(f"{path}: tensors changed while rewriting the header")


def main() -> int:
    from safetensors.torch import load_file

    for stem, update in LABELS.items():
        path = HERE / "models" / f"{stem}.safetensors"
        before = load_file(str(path))
        rewrite_header(path, update)
        check_unchanged(path, before)
        print(f"{path.name}: {json.dumps(update)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
