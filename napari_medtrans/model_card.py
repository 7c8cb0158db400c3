"""Model cards: what a translator was trained on, how well it did, and what it is for.

A card is a JSON object under the ``card`` key of a translator's metadata,
built by :func:`build_card` from the rest of the metadata (provenance written
by the trainer; the top-level ``regime`` and ``deviations`` where the method
records them) plus held-out numbers measured elsewhere. ``medtrans models
--card NAME`` and the Translate widget show it as text (:func:`card_lines`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medtrans.input_check import build_signature, training_geometry

if TYPE_CHECKING:
    from napari_medtrans.checkpoint import TranslatorMetadata

PHANTOM_LIMIT = "research use only; trained on a procedural phantom"
FOLDER_LIMIT = "research use only; not validated on patient data"
PHANTOM_ONLY_LIMIT = (
    "trained on phantom images only, without the source augmentations for real scans (data.augment_*): "
    "expect wrong HU on real scans"
)
INTENDED_USE = (
    "research and teaching: trying translation methods on images like its training data; "
    "not for diagnosis or treatment planning"
)
COMMON_LIMITS = (
    "output on inputs unlike the training data is wrong or unpredictable; run the input check",
    "the uncertainty map is not calibrated on inputs unlike the training data",
)
#: Held-out metrics copied onto the card (key in an evaluation → label).
HELD_OUT_KEYS = {
    "mae": "MAE",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "bone_mean_hu": "bone mean (HU)",
    "air_mean_hu": "air mean (HU)",
    "sigma_error_pcc": "σ–error correlation",
    "field_mean_mm": "mean |field| (mm)",
}


def training_data_text(data: Mapping[str, Any]) -> str:
    """One sentence describing the training data from the provenance ``data`` entry."""
    if "phantom" in data:
        shape = "×".join(str(n) for n in data.get("shape", []))
        return (
            f"procedural phantom heads (napari_medtrans.phantom): {data.get('subjects')} subjects, "
            f"{data['phantom']} regime, cohort seed {data.get('seed')}"
            + (f", misalignment level {data.get('level')}" if data["phantom"] == "misaligned" else "")
            + (f", volumes {shape} (z×y×x)" if shape else "")
        )
    if "source" in data:
        return (
            f"volumes from {data['source']} ({data.get('source_subjects')} subjects) and "
            f"{data.get('target')} ({data.get('target_subjects')} subjects), "
            + ("paired" if data.get("paired") else "unpaired")
        )
    return "not recorded"


def deviation_texts(deviations: Any) -> list[str]:
    """Deviations from the paper as text, whether recorded as a list, a mapping or one string."""
    if not deviations:
        return []
    if isinstance(deviations, str):
        return [deviations]
    if isinstance(deviations, Mapping):
        return [f"{key}: {value}" for key, value in deviations.items()]
    return [str(item) for item in deviations]


def input_text(metadata: Mapping[str, Any]) -> str:
    """What the translator takes: 2-D crops (with context slices) or 3-D patches."""
    axis = metadata.get("slice_axis")
    if metadata.get("patch"):
        patch = "×".join(map(str, metadata["patch"]))
        return f"3-D patches of {patch} voxels (array axis {axis} first), translated by blended sliding windows"
    size, context = metadata.get("size"), metadata.get("context_slices", 1)
    return f"{size}² training crops, slices along array axis {axis}, {context} context slice(s)"


def build_card(
    metadata: Mapping[str, Any],
    *,
    held_out: Mapping[str, Any] | None = None,
    held_out_data: str | None = None,
    parameters: int | None = None,
) -> dict[str, Any]:
    """A card for the translator whose metadata dict (``TranslatorMetadata.to_dict()``) is ``metadata``.

    ``held_out`` holds metrics (keys of :data:`HELD_OUT_KEYS`; others are
    ignored) measured on ``held_out_data`` (a description); ``parameters`` is
    the number of weights. Without held-out numbers the card says so.
    """
    provenance = metadata.get("provenance") or {}
    data = provenance.get("data") or {}
    phantom = "phantom" in data
    regime = metadata.get("regime") or data.get("phantom") or ("paired" if data.get("paired") else None)
    numbers = {
        label: round(float(held_out[key]), 4)
        for key, label in HELD_OUT_KEYS.items()
        if held_out and held_out.get(key) is not None
    }
    signature = metadata.get("input_signature") or {}
    return {
        "summary": f"{metadata.get('method')} translator, {metadata.get('source')} → {metadata.get('target')}",
        "training_data": training_data_text(data),
        "regime": regime or "not recorded",
        "training_size": data.get("subjects", data.get("source_subjects")),
        "input": input_text(metadata),
        "parameters": parameters,
        "iterations": provenance.get("total_iterations", provenance.get("iterations")),
        "fine_tuned": provenance.get("iterations") if "init" in provenance else None,
        "deviations": deviation_texts(metadata.get("deviations")),
        "held_out": {"data": held_out_data, "metrics": numbers}
        if numbers
        else {"data": None, "metrics": {}, "note": "no held-out evaluation recorded"},
        "intended_use": INTENDED_USE,
        "limits": [
            PHANTOM_LIMIT if phantom else FOLDER_LIMIT,
            *([PHANTOM_ONLY_LIMIT] if phantom and not provenance.get("augmentation") else []),
            *COMMON_LIMITS,
        ],
        "input_check": (
            f"signature of {signature.get('volumes')} training volumes, "
            f"threshold {signature.get('threshold')} training standard deviations"
            if signature
            else "no training signature: header modality only"
        ),
    }


def card_lines(card: Mapping[str, Any]) -> list[str]:
    """The card as human-readable lines (``medtrans models --card``, the widget's card panel)."""
    if not card:
        return ["no model card in this translator's metadata"]
    held = card.get("held_out") or {}
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (held.get("metrics") or {}).items())
    lines = [
        card.get("summary", ""),
        f"Trained on: {card.get('training_data')}",
        (
            f"Regime: {card.get('regime')}; training subjects: {card.get('training_size')}; "
            f"iterations: {card.get('iterations')}"
            + (f" (the last {card['fine_tuned']} fine-tuning an earlier translator)" if card.get("fine_tuned") else "")
            + f"; weights: {card.get('parameters') or 'not recorded'}"
        ),
        f"Input: {card.get('input')}",
        "Deviations from the paper: " + ("; ".join(card.get("deviations") or []) or "none recorded"),
        f"Held-out: {metrics} on {held.get('data')}" if metrics else f"Held-out: {held.get('note', 'none')}",
        f"Intended use: {card.get('intended_use')}",
        "Limits: " + "; ".join(card.get("limits") or []),
        f"Input check: {card.get('input_check')}",
    ]
    return lines


def annotate(
    metadata: TranslatorMetadata,
    volumes: Iterable[np.ndarray],
    *,
    held_out: Mapping[str, Any] | None = None,
    held_out_data: str | None = None,
    parameters: int | None = None,
) -> None:
    """Fill ``metadata.input_signature`` and ``metadata.card`` in place.

    ``volumes`` are the normalised source training volumes, slice axis first
    (what the trainer holds); the signature's geometry comes from the
    provenance's data description (:func:`~napari_medtrans.input_check.training_geometry`).
    """
    description = metadata.provenance.get("data") or {}
    metadata.input_signature = build_signature(
        volumes,
        geometry=training_geometry(description, metadata.slice_axis),
        source=training_data_text(description),
    )
    metadata.card = build_card(
        metadata.to_dict(), held_out=held_out, held_out_data=held_out_data, parameters=parameters
    )
