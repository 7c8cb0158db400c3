"""napari sample-data contributions: phantom heads placed in physical space."""

from __future__ import annotations

from napari.types import LayerDataTuple

from napari_medtrans.io import layer_geometry
from napari_medtrans.label_names import as_features
from napari_medtrans.phantom import TISSUES, PhantomSubject, generate_subject, misalign

SAMPLE_SEED = 0
MISALIGNMENT_LEVEL = 3

_DISPLAY = {  # image -> layer keyword arguments beyond geometry
    "t1": {"colormap": "gray"},
    "t2": {"colormap": "gray", "visible": False},
    "ct": {"colormap": "gray", "contrast_limits": (-1000.0, 2000.0), "visible": False},
}


def _image(subject: PhantomSubject, image: str, name: str, **display) -> LayerDataTuple:
    volume = subject.volume(image)
    return (volume.array, {"name": name, **layer_geometry(volume), **_DISPLAY[image], **display}, "image")


def _labels(subject: PhantomSubject, name: str) -> LayerDataTuple:
    volume = subject.volume("labels")
    return (
        volume.array,
        {"name": name, **layer_geometry(volume), "opacity": 0.35, "features": as_features(TISSUES)},
        "labels",
    )


def phantom_head() -> list[LayerDataTuple]:
    """T1, T2, CT and tissue labels of one phantom subject (T2 and CT start hidden)."""
    subject = generate_subject(SAMPLE_SEED, name="phantom")
    return [
        _image(subject, "t1", "phantom T1"),
        _image(subject, "t2", "phantom T2"),
        _image(subject, "ct", "phantom CT"),
        _labels(subject, "phantom labels"),
    ]


def phantom_misaligned() -> list[LayerDataTuple]:
    """T1 of one phantom subject and its CT moved at misalignment level 3 (bone shown in magenta)."""
    subject = generate_subject(SAMPLE_SEED, name="phantom")
    moved = misalign(subject, MISALIGNMENT_LEVEL, seed=SAMPLE_SEED)
    overlay = {"visible": True, "colormap": "magenta", "blending": "additive", "contrast_limits": (100.0, 1500.0)}
    return [
        _image(subject, "t1", "phantom T1"),
        _image(moved, "ct", f"phantom CT (misaligned, level {MISALIGNMENT_LEVEL})", **overlay),
    ]
