"""The Translate widget's shared state: what its panels read and the events they follow.

The Translate widget owns a :class:`TranslateState` and keeps it current (the
translator chosen, the loaded :class:`Session`, the reference layer); its panels
(:mod:`._panels`) get the state, not the widget: they read it, subscribe to its
psygnal events and ask for work through it (``volume_requested``,
``load_requested``) or report through it (``status``). So a panel never
touches the widget's members or its status label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import napari
import numpy as np
from psygnal import Signal

from napari_medtrans.checkpoint import TranslatorMetadata
from napari_medtrans.comparison import resample_like
from napari_medtrans.inference import PreparedVolume, Translator
from napari_medtrans.io import Volume, volume_from_layer
from napari_medtrans.onthefly import SampleBudget, SliceScheduler

from . import overlays


@dataclass
class Session:
    """A translator applied to one input layer, with the layers it fills."""

    translator: Translator
    prepared: PreparedVolume
    input_layer: napari.layers.Image
    volume: Volume
    output: napari.layers.Image
    uncertainty: napari.layers.Image | None
    scheduler: SliceScheduler
    complete: bool = False
    uncertainty_fitted: bool = False
    key: tuple = field(default_factory=tuple)
    budget: SampleBudget | None = None
    """Samples per on-the-fly slice of a stochastic translator (None: a deterministic one)."""

    @property
    def axis(self) -> int:
        """Array axis the translator works along."""
        return self.translator.metadata.slice_axis

    def input_slice(self, index: int) -> np.ndarray:
        """Slice ``index`` of the input along the translator's axis."""
        return np.take(self.volume.array, index, axis=self.axis)

    @property
    def owner(self) -> dict[str, str]:
        """Who the session's layers belong to: ``source`` (input layer name) and ``translator`` (its name)."""
        return {"source": self.input_layer.name, "translator": self.translator.metadata.name}

    @property
    def units(self) -> str:
        """Units of the translated image (HU for CT)."""
        return overlays.units_of(self.translator.metadata.target)


def layer_volume(layer: napari.layers.Image) -> Volume:
    """The volume of an image layer, with the physical geometry of its transform."""
    return volume_from_layer(
        layer.data, layer.metadata, scale=layer.scale, translate=layer.translate, affine=layer.affine.affine_matrix
    )


class TranslateState:
    """Evented state of one Translate widget.

    Attributes:
        viewer: The napari viewer the layers live in.
        chosen: Metadata of the translator picked in the widget (loaded or not), or None.
        session: The loaded session, or None.
        reference: The reference (real target) layer, or None.
    """

    chosen_changed = Signal(object)
    """A translator was picked (its ``TranslatorMetadata``, or None)."""
    session_changed = Signal(object)
    """A session was loaded (the ``Session``) or closed (None)."""
    reference_changed = Signal(object)
    """The reference layer changed (the layer, or None)."""
    slice_shown = Signal(int)
    """An on-the-fly slice (its index) was written into the session's layers."""
    volume_finished = Signal(bool)
    """A whole-volume job ended: True when finished, False when cancelled or failed."""
    status = Signal(str)
    """A message for the widget's status line."""
    volume_requested = Signal()
    """A panel asks for the whole volume to be translated (loading the translator first)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.chosen: TranslatorMetadata | None = None
        self.session: Session | None = None
        self.reference: napari.layers.Image | None = None
        self._reference_cache: dict[tuple, np.ndarray] = {}

    def choose(self, metadata: TranslatorMetadata | None) -> None:
        """Record the picked translator and tell the panels."""
        self.chosen = metadata
        self.chosen_changed.emit(metadata)

    def set_session(self, session: Session | None) -> None:
        """Record the loaded session (None when closed) and tell the panels."""
        self.session = session
        self._reference_cache.clear()
        self.session_changed.emit(session)

    def set_reference(self, layer: napari.layers.Image | None) -> None:
        """Record the reference layer and tell the panels."""
        self.reference = layer
        self._reference_cache.clear()
        self.reference_changed.emit(layer)

    def reference_array(self) -> np.ndarray | None:
        """The reference resampled onto the session's input grid (cached per layer and geometry)."""
        layer, session = self.reference, self.session
        if layer is None or session is None or layer not in self.viewer.layers:
            return None
        key = (id(layer), id(layer.data), session.key)
        if key not in self._reference_cache:
            self._reference_cache = {key: resample_like(layer_volume(layer), session.volume)}
        return self._reference_cache[key]

    def current_index(self) -> int | None:
        """Slice index of the session's input shown in the viewer now."""
        session = self.session
        if session is None:
            return None
        point = session.input_layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(np.round(point[session.axis]), 0, session.scheduler.n_slices - 1))
