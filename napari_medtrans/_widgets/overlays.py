"""napari layers of the Translate widget: outputs, uncertainty, field, comparisons.

Every layer made here is placed with :func:`napari_medtrans.io.layer_geometry`
of the input volume, so it lines up with the input in world (physical) space.

One layer per *role* (translation, uncertainty, difference, ...) and input
layer: its ``metadata`` records ``medtrans_role``, ``medtrans_source`` (the
input layer's name) and ``medtrans_translator``. Functions create that layer
the first time and afterwards replace its data and name, so the user's display
settings (opacity, colormap) survive recomputation and copies do not pile up.
Names are short and distinct: what the layer shows, its units, the translator
(``"CT (HU) · t1-ct-uapi"``, ``"σ (HU) · t1-ct-uapi"``). :func:`show_value_units`
adds the units to napari's status bar readout.
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


def modality_of(layer: napari.layers.Layer) -> str | None:
    """The modality recorded in a layer's ``metadata["medtrans"]`` (by the reader or this module)."""
    return (layer.metadata.get("medtrans") or {}).get("modality")


def ct_layers(viewer: napari.Viewer) -> list[napari.layers.Image]:
    """Image layers holding CT in HU: opened CT volumes, references and translations to CT."""
    return [layer for layer in viewer.layers if isinstance(layer, napari.layers.Image) and modality_of(layer) == "CT"]


class LinkedContrast:
    """While enabled, a contrast change of one CT layer is copied to every other CT layer of the viewer.

    Parameters:
        viewer: The viewer whose CT layers (:func:`ct_layers`) are linked.
    """

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer
        self.enabled = False
        self._copying = False

    def watch(self, layer: napari.layers.Layer) -> None:
        """Follow ``layer``'s contrast changes (call for every layer added to the viewer)."""
        if isinstance(layer, napari.layers.Image):
            layer.events.contrast_limits.connect(self._changed)

    def set_enabled(self, on: bool) -> None:
        """Link (copying the active CT layer's limits, else the first's) or unlink."""
        self.enabled = on
        layers = ct_layers(self.viewer)
        if on and layers:
            active = self.viewer.layers.selection.active
            self._copy(active if active in layers else layers[0])

    def _changed(self, event: Any) -> None:
        if self.enabled and not self._copying and modality_of(event.source) == "CT":
            self._copy(event.source)

    def _copy(self, source: napari.layers.Image) -> None:
        self._copying = True
        try:
            for layer in ct_layers(self.viewer):
                if layer is not source:
                    layer.contrast_limits = tuple(source.contrast_limits)
        finally:
            self._copying = False


def units_of(modality: str | None) -> str:
    """Display units of a modality: HU for CT, arbitrary units otherwise."""
    return "HU" if modality == "CT" else "a.u."


def short_name(what: str, translator: str, units: str | None = None) -> str:
    """A layer name: what it shows, its units, the translator (``"σ (HU) · t1-ct-uapi"``)."""
    return f"{what} ({units}) · {translator}" if units else f"{what} · {translator}"


def role_layer(viewer: napari.Viewer, role: str, source: str) -> napari.layers.Layer | None:
    """The layer playing ``role`` for input layer ``source``, if there is one."""
    for layer in viewer.layers:
        if layer.metadata.get("medtrans_role") == role and layer.metadata.get("medtrans_source") == source:
            return layer
    return None


def remove_other_translators(viewer: napari.Viewer, source: str, translator: str) -> None:
    """Remove the derived layers of ``source`` made by another translator (the translation itself is reused)."""
    stale = [
        layer
        for layer in viewer.layers
        if layer.metadata.get("medtrans_source") == source
        and layer.metadata.get("medtrans_role") != "translation"
        and layer.metadata.get("medtrans_translator") not in (None, translator)
    ]
    for layer in stale:
        viewer.layers.remove(layer)


def _tag(layer: napari.layers.Layer, name: str, role: str, source: str, translator: str) -> None:
    if layer.name != name:
        layer.name = name
    layer.metadata.update(medtrans_role=role, medtrans_source=source, medtrans_translator=translator)


def upsert_image(
    viewer: napari.Viewer,
    name: str,
    array: np.ndarray,
    volume: Volume,
    *,
    role: str,
    source: str,
    translator: str,
    **style: Any,
) -> napari.layers.Image:
    """Show ``array`` with ``volume``'s geometry in the ``role`` layer of ``source`` (created or updated).

    ``style`` (napari image options, and ``modality``) applies when the layer is created.
    """
    layer = role_layer(viewer, role, source)
    if layer is not None:
        layer.data = array
    else:
        geometry = layer_geometry(volume.with_array(array, modality=style.pop("modality", None)))
        layer = viewer.add_image(array, name=name, **geometry, **style)
    _tag(layer, name, role, source, translator)
    return layer


def add_translation_layer(
    viewer: napari.Viewer,
    array: np.ndarray,
    volume: Volume,
    *,
    source: str,
    translator: str,
    target: str,
    window: str = "soft tissue",
) -> napari.layers.Image:
    """The translated image; CT gets a named HU window, MR its data range."""
    limits = window_limits(window) if target == "CT" else (float(np.min(array)), float(np.max(array)) or 1.0)
    units = units_of(target)
    layer = upsert_image(
        viewer,
        short_name(target, translator, units),
        array,
        volume,
        role="translation",
        source=source,
        translator=translator,
        modality=target,
        colormap="gray",
    )
    layer.metadata["medtrans"]["modality"] = target
    layer.contrast_limits = limits
    layer.metadata["units"] = units
    show_value_units(layer, units)
    return layer


def add_uncertainty_layer(
    viewer: napari.Viewer, sigma: np.ndarray, volume: Volume, *, source: str, translator: str, units: str
) -> napari.layers.Image:
    """The uncertainty (σ) map: inferno fading in with σ, translucent, colorbar on."""
    layer = upsert_image(
        viewer,
        short_name("σ", translator, units),
        sigma,
        volume,
        role="uncertainty",
        source=source,
        translator=translator,
        colormap=fading_colormap("inferno"),
        blending="translucent",
        opacity=0.8,
        contrast_limits=(0.0, 1.0),
    )
    layer.metadata["units"] = units
    show_value_units(layer, units)
    layer.colorbar.visible = True
    return layer


def show_value_units(layer: napari.layers.Layer, units: str) -> None:
    """Append ``units`` to the value napari shows in the status bar for ``layer`` (e.g. ``40.2 HU``).

    napari has no setting for value units, so the layer's ``get_status`` is
    wrapped (on the layer itself: plugin widgets get a proxy of it).
    """
    layer = getattr(layer, "__wrapped__", layer)
    if layer.metadata.get("status_units") == units:
        return
    status_of = type(layer).get_status

    def get_status(*args: Any, **kwargs: Any) -> dict[str, str]:
        status = status_of(layer, *args, **kwargs)
        if status.get("value"):
            status["value"] += f" {units}"
            status["coordinates"] += f" {units}"
        return status

    layer.get_status = get_status
    layer.metadata["status_units"] = units


def fit_uncertainty_limits(layer: napari.layers.Image, sigma: np.ndarray, source: np.ndarray) -> None:
    """Set contrast limits to [0, 99th percentile of σ] inside the body of ``source``.

    Background artefacts thus do not set the scale (see :func:`comparison.body_mask`).
    """
    values = sigma[comparison.body_mask(source) & (sigma > 0)]
    if values.size:
        layer.contrast_limits = (0.0, float(np.percentile(values, 99)) or 1.0)


def add_field_layers(
    viewer: napari.Viewer,
    field_mm: np.ndarray,
    warped: np.ndarray,
    volume: Volume,
    step: int,
    *,
    source: str,
    translator: str,
) -> dict[str, napari.layers.Layer]:
    """Deformation overlays: vectors (mm, coloured by length), magnitude, warped grid and image."""
    magnitude = comparison.field_magnitude(field_mm)
    spacing_zyx = tuple(volume.spacing[::-1])
    top = float(np.percentile(magnitude, 99.5)) or 1.0
    owner = {"source": source, "translator": translator}
    layers: dict[str, napari.layers.Layer] = {
        "warped": upsert_image(
            viewer,
            short_name("warped", translator),
            warped,
            volume,
            role="warped",
            **owner,
            colormap="gray",
            visible=False,
        ),
        "magnitude": upsert_image(
            viewer,
            short_name("|field|", translator, "mm"),
            magnitude,
            volume,
            role="magnitude",
            **owner,
            colormap="viridis",
            blending="additive",
            opacity=0.5,
            contrast_limits=(0.0, top),
            visible=False,
        ),
        "grid": upsert_image(
            viewer,
            short_name("warped grid", translator),
            comparison.warped_grid(field_mm, spacing_zyx),
            volume,
            role="grid",
            **owner,
            colormap="cyan",
            blending="additive",
            opacity=0.7,
            contrast_limits=(0.0, 1.0),
        ),
    }
    layers["magnitude"].colorbar.visible = True
    show_value_units(layers["magnitude"], "mm")
    layers["vectors"] = upsert_vectors(viewer, field_mm, volume, step, **owner)
    return layers


def upsert_vectors(
    viewer: napari.Viewer, field_mm: np.ndarray, volume: Volume, step: int, *, source: str, translator: str
) -> napari.layers.Vectors:
    """Vectors of ``field_mm`` every ``step`` pixels, drawn at true length in mm (×1), coloured by length."""
    data, magnitude = comparison.field_vectors(field_mm, tuple(volume.spacing[::-1]), step)
    features = {"magnitude_mm": magnitude}
    limits = (0.0, float(magnitude.max()) or 1.0)
    name = short_name("field ×1", translator, "mm")
    layer = role_layer(viewer, "field", source)
    if layer is not None:
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
    _tag(layer, name, "field", source, translator)
    layer.metadata.update(units="mm", step=step)
    return layer
