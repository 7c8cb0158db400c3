"""napari layers of the Translate widget: outputs, uncertainty, field, comparisons.

Every layer made here is placed with :func:`napari_medtrans.io.layer_geometry`
of the input volume, so it lines up with the input in world (physical) space.
Functions create a layer the first time and update its data afterwards, so the
user's display settings (opacity, colormap, contrast) survive recomputation.
"""

from __future__ import annotations

from typing import Any

import napari
import numpy as np
from napari.utils.colormaps import AVAILABLE_COLORMAPS, Colormap

from napari_medtrans import comparison
from napari_medtrans.io import Volume, layer_geometry

#: CT display windows as (level, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "soft tissue": (40.0, 400.0),
    "bone": (600.0, 2800.0),
}
#: Perceptual colormaps offered for the uncertainty overlay.
UNCERTAINTY_COLORMAPS = ("inferno", "magma", "viridis", "plasma")


def window_limits(window: str) -> tuple[float, float]:
    """Contrast limits (HU) of a named CT window."""
    level, width = CT_WINDOWS[window]
    return level - width / 2, level + width / 2


def fading_colormap(name: str) -> Colormap:
    """``name`` with opacity rising from 0 (low values see-through) to 1, for overlays."""
    colors = np.array(AVAILABLE_COLORMAPS[name].map(np.linspace(0.0, 1.0, 64)))
    colors[:, 3] = np.sqrt(np.linspace(0.0, 1.0, len(colors)))
    return Colormap(colors, name=f"{name} (fading)")


def units_of(modality: str | None) -> str:
    """Display units of a modality: HU for CT, arbitrary units otherwise."""
    return "HU" if modality == "CT" else "a.u."


def upsert_image(
    viewer: napari.Viewer, name: str, array: np.ndarray, volume: Volume, **style: Any
) -> napari.layers.Image:
    """Show ``array`` with ``volume``'s geometry in layer ``name`` (created or updated)."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = array
        return layer
    geometry = layer_geometry(volume.with_array(array, modality=style.pop("modality", None)))
    return viewer.add_image(array, name=name, **geometry, **style)


def add_translation_layer(
    viewer: napari.Viewer, name: str, array: np.ndarray, volume: Volume, target: str, window: str = "soft tissue"
) -> napari.layers.Image:
    """The translated image; CT gets a named HU window, MR its data range."""
    limits = window_limits(window) if target == "CT" else (float(np.min(array)), float(np.max(array)) or 1.0)
    layer = upsert_image(
        viewer, name, array, volume, modality=target, colormap="gray", contrast_limits=limits
    )
    layer.metadata["medtrans_role"] = "translation"
    return layer


def add_uncertainty_layer(
    viewer: napari.Viewer, name: str, sigma: np.ndarray, volume: Volume, units: str
) -> napari.layers.Image:
    """The uncertainty (σ) map: inferno fading in with σ, translucent, colorbar on."""
    layer = upsert_image(
        viewer,
        name,
        sigma,
        volume,
        colormap=fading_colormap("inferno"),
        blending="translucent",
        opacity=0.8,
        contrast_limits=(0.0, 1.0),
    )
    layer.metadata.update(medtrans_role="uncertainty", units=units)
    layer.colorbar.visible = True
    return layer


def fit_uncertainty_limits(layer: napari.layers.Image, sigma: np.ndarray, source: np.ndarray) -> None:
    """Set contrast limits to [0, 99th percentile of σ] inside the body of ``source``.

    Background artefacts thus do not set the scale (see :func:`comparison.body_mask`).
    """
    values = sigma[comparison.body_mask(source) & (sigma > 0)]
    if values.size:
        layer.contrast_limits = (0.0, float(np.percentile(values, 99)) or 1.0)


def add_field_layers(
    viewer: napari.Viewer,
    prefix: str,
    field_mm: np.ndarray,
    warped: np.ndarray,
    volume: Volume,
    step: int,
) -> dict[str, napari.layers.Layer]:
    """Deformation overlays: vectors (mm, coloured by length), magnitude, warped grid and image."""
    magnitude = comparison.field_magnitude(field_mm)
    spacing_zyx = tuple(volume.spacing[::-1])
    top = float(np.percentile(magnitude, 99.5)) or 1.0
    layers: dict[str, napari.layers.Layer] = {
        "warped": upsert_image(viewer, f"{prefix} warped onto target", warped, volume, colormap="gray", visible=False),
        "magnitude": upsert_image(
            viewer,
            f"{prefix} |field| (mm)",
            magnitude,
            volume,
            colormap="viridis",
            blending="additive",
            opacity=0.5,
            contrast_limits=(0.0, top),
            visible=False,
        ),
        "grid": upsert_image(
            viewer,
            f"{prefix} warped grid",
            comparison.warped_grid(field_mm, spacing_zyx),
            volume,
            colormap="cyan",
            blending="additive",
            opacity=0.7,
            contrast_limits=(0.0, 1.0),
        ),
    }
    layers["magnitude"].colorbar.visible = True
    layers["vectors"] = upsert_vectors(viewer, f"{prefix} field (mm)", field_mm, volume, step)
    return layers


def upsert_vectors(
    viewer: napari.Viewer, name: str, field_mm: np.ndarray, volume: Volume, step: int
) -> napari.layers.Vectors:
    """Vectors of ``field_mm`` every ``step`` pixels, drawn in mm, coloured by length."""
    data, magnitude = comparison.field_vectors(field_mm, tuple(volume.spacing[::-1]), step)
    features = {"magnitude_mm": magnitude}
    limits = (0.0, float(magnitude.max()) or 1.0)
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.features = features
        layer.edge_color = "magnitude_mm"
        layer.edge_contrast_limits = limits
    else:
        geometry = layer_geometry(volume)
        layer = viewer.add_vectors(
            data,
            name=name,
            features=features,
            edge_color="magnitude_mm",
            edge_colormap="plasma",
            edge_contrast_limits=limits,
            edge_width=min(volume.spacing[:2]) * 0.5,
            length=1.0,
            vector_style="arrow",
            scale=geometry["scale"],
            translate=geometry["translate"],
            affine=geometry["affine"],
        )
    layer.metadata.update(medtrans_role="field", units="mm", step=step)
    return layer
