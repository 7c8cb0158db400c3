"""Add the input-check signature and a model card to translator files (weights untouched).

    python sample_data/annotate_models.py                       # the shipped models
    python sample_data/annotate_models.py run/translator.safetensors --results results.json

For each file the script rebuilds the source volumes of its training data from
the provenance the trainer recorded: a phantom cohort is regenerated from its
description (regime, subjects, seed, level, shape; all subjects, training and
validation), a folder cohort is read again from its source folder. It then
writes ``input_signature`` and ``card`` into the JSON header
(:func:`napari_medtrans.checkpoint.update_metadata`: the tensor bytes are
copied unchanged, the file is replaced atomically). Held-out numbers come from
``--results`` (``results.json`` of ``make_demo_models.py``: ``models.<name>.
metrics.mean``), by default the ``results.json`` next to the file. Running it
again gives the same header, so it is safe to re-run after retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from napari_medtrans.checkpoint import (
    TranslatorMetadata,
    read_metadata,
    update_metadata,
)
from napari_medtrans.input_check import normalised_slices
from napari_medtrans.intensity import IntensityModel
from napari_medtrans.model_card import annotate

#: Held-out subjects of make_demo_models.py (seeds never used in training).
HELD_OUT_DATA = "held-out phantom subjects, seeds 1000–1002, 32×128×128, in the body mask"


def training_volumes(metadata: TranslatorMetadata) -> Iterator[np.ndarray]:
    """The translator's normalised source training volumes, slice axis first."""
    data = metadata.provenance.get("data") or {}
    model = IntensityModel.from_dict(metadata.source_intensity)
    if "phantom" in data:
        from napari_medtrans.phantom import generate_cohort

        pairs = generate_cohort(int(data["subjects"]), data["phantom"], seed=int(data["seed"]),
                                level=int(data.get("level", 3)), shape=tuple(data["shape"]))
        for pair in pairs:
            yield normalised_slices(getattr(pair.source, metadata.source.lower()), model, metadata.slice_axis)
    elif "source" in data:
        from napari_medtrans.io import read_volume, volume_files

        for path in volume_files(data["source"]).values():
            yield normalised_slices(read_volume(path).array, model, metadata.slice_axis)
    else:
        raise SystemExit(f"{metadata.name}: the provenance records no training data; cannot build a signature")


def parameter_count(path: Path) -> int:
    """Number of weights in a safetensors file, from its header."""
    length = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + length])
    return int(sum(np.prod(v["shape"]) for k, v in header.items() if k != "__metadata__"))


def held_out_numbers(results: Path | None, name: str) -> dict[str, Any] | None:
    if results is None or not results.is_file():
        return None
    entry = json.loads(results.read_text()).get("models", {}).get(name)
    return entry["metrics"]["mean"] if entry else None


def annotate_file(path: Path, results: Path | None) -> TranslatorMetadata:
    """Write signature + card into ``path``; returns the new metadata."""
    metadata = read_metadata(path)
    held_out = held_out_numbers(results if results else path.parent / "results.json", metadata.name)
    annotate(metadata, training_volumes(metadata), held_out=held_out,
             held_out_data=HELD_OUT_DATA if held_out else None, parameters=parameter_count(path))
    return update_metadata(path, {"input_signature": metadata.input_signature, "card": metadata.card})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="translator files (default: sample_data/models/*)")
    parser.add_argument("--results", type=Path, help="held-out results JSON (default: results.json next to each file)")
    args = parser.parse_args(argv)
    for path in args.files or sorted((HERE / "models").glob("*.safetensors")):
        metadata = annotate_file(path, args.results)
        print(f"{path}: signature of {metadata.input_signature['volumes']} volumes, card: {metadata.card['summary']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
