"""Preview layers of the Train widget: the latest validation translation of a run.

Input, output and target are laid side by side (in that order, then the
misaligned target of registration methods and the uncertainty), so all are
visible at once; the displacement field that registers the output to the
misaligned target is drawn as vectors over the output, at true scale (an arrow
is as long as the displacement in pixels; the layer name says so): a field that
is still near zero early in training looks near zero, not like a deformation.

Keeping the viewer responsive while a run is followed: creating a napari layer
costs a few hundred milliseconds (vispy visuals, layer controls), updating one
a few (and showing, moving or resizing one makes napari recompute the scene).
So :meth:`PreviewLayers.prepare` creates the layers a run will need, blank and
in place, when the user starts it; a new preview is then applied one layer per
:meth:`PreviewLayers.step` (the widget calls it once per poll), so no poll
blocks the event loop for more than one small update.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import numpy as np
from napari.layers import Image, Layer, Vectors
from napari.viewer import Viewer

from napari_medtrans.runwatch import Preview

PREFIX = "preview: "
"""Start of the names of the preview layers."""

IMAGE_ROLES = {"input": "gray", "output": "gray", "target": "gray", "registration_target": "gray", "scale": "magma"}
"""Preview arrays shown as images, left to right, with their colormaps."""

OUTPUT_ROLES = {"scale": ("scale",), "field": ("registration_target", "field")}
"""Preview arrays that come with each optional translator output."""

LABELS = {"scale": "uncertainty", "registration_target": "misaligned target", "field": "field (×1, px)"}
GAP = 4  # pixels between neighbouring previews
VECTORS_PER_SIDE = 16


def as_slices(array: np.ndarray) -> np.ndarray:
    """A preview image as (H, W) or a stack (N, H, W).

    (N, C, H, W) keeps the centre channel (2.5D inputs carry neighbouring slices).
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 4:
        array = array[:, array.shape[1] // 2]
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def field_vectors(field: np.ndarray) -> np.ndarray:
    """napari vectors (M, 2, D) of a displacement field on a coarse grid, drawn at true scale.

    Parameters
    ----------
    field : numpy.ndarray
        (2, H, W) or (N, 2, H, W): Δrow, Δcol in pixels.

    Returns
    -------
    vectors : numpy.ndarray
        Grid positions and displacements in pixels.
    """
    field = np.asarray(field, dtype=np.float32)
    stack = field.ndim == 4 and field.shape[0] > 1
    field = field.reshape((-1,) + field.shape[-3:])
    height, width = field.shape[-2:]
    step = max(1, max(height, width) // VECTORS_PER_SIDE)
    rows, cols = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    vectors = []
    for index, slice_field in enumerate(field):
        d_row = slice_field[0, rows, cols].ravel()
        d_col = slice_field[1, rows, cols].ravel()
        position = [rows.ravel(), cols.ravel()]
        direction = [d_row, d_col]
        if stack:
            position.insert(0, np.full(d_row.shape, index))
            direction.insert(0, np.zeros_like(d_row))
        vectors.append(np.stack([np.stack(position, -1), np.stack(direction, -1)], 1))
    return np.concatenate(vectors).astype(np.float32)


def layer_name(role: str) -> str:
    """Name of the preview layer showing ``role``."""
    return PREFIX + LABELS.get(role, role)


class PreviewLayers:
    """Keeps the preview layers of one viewer in step with a run's latest preview.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Where the layers live.

    Attributes
    ----------
    iteration : int or None
        Iteration of the latest preview (shown once :attr:`pending` is 0).
    """

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.iteration: int | None = None
        self._pending: deque[Callable[[], None]] = deque()
        self._prepared: set[str] = set()
        self._filled: set[str] = set()

    @property
    def pending(self) -> int:
        """Layer updates still to apply."""
        return len(self._pending)

    def prepare(self, outputs: Iterable[str], size: int) -> None:
        """Create, in place and blank, the layers a run with these translator ``outputs`` will fill."""
        roles = ["input", "output", "target"]
        for output in outputs:
            roles += OUTPUT_ROLES.get(output, ())
        placeholder = np.zeros((size, size), np.float32)
        offsets = dict(zip([r for r in IMAGE_ROLES if r in roles], np.arange(len(roles)) * (size + GAP)))
        for role in roles:
            name = layer_name(role)
            if name in self.viewer.layers:
                continue
            if role == "field":
                layer = Vectors(np.zeros((0, 2, 2), np.float32), name=name, edge_color="yellow", edge_width=1.0)
            else:
                layer = Image(placeholder, name=name, colormap=IMAGE_ROLES[role], translate=(0.0, float(offsets[role])))
            self.viewer.add_layer(layer)
            self._prepared.add(role)
        self.viewer.reset_view()
        self._filled.clear()

    def show(self, preview: Preview) -> None:
        """Queue the layer updates of ``preview`` (replacing those of an older one not yet applied)."""
        self._pending.clear()
        offset = 0.0
        for role, colormap in IMAGE_ROLES.items():
            if role not in preview.arrays:
                continue
            data = as_slices(preview.arrays[role])
            translate = (0.0,) * (data.ndim - 1) + (offset,)
            self._pending.append(
                lambda r=role, d=data, t=translate, c=colormap: self._set(Image, r, d, translate=t, colormap=c)
            )
            if role == "output" and "field" in preview.arrays:
                vectors = field_vectors(preview.arrays["field"])
                vectors[:, 0, -1] += offset
                self._pending.append(
                    lambda v=vectors: self._set(Vectors, "field", v, edge_color="yellow", edge_width=1.0, length=1.0)
                )
            offset += data.shape[-1] + GAP
        self.iteration = preview.iteration

    def step(self) -> None:
        """Apply one queued layer update."""
        if self._pending:
            self._pending.popleft()()

    def flush(self) -> None:
        """Apply every queued update."""
        while self._pending:
            self.step()

    def discard_unfilled(self) -> None:
        """Remove prepared layers that no preview filled (the run ended without them)."""
        for role in self._prepared - self._filled:
            if layer_name(role) in self.viewer.layers:
                self.viewer.layers.remove(layer_name(role))
        self._prepared.clear()

    def _set(
        self, kind: type[Layer], role: str, data: np.ndarray, *, translate: tuple[float, ...] | None = None, **options
    ) -> None:
        """Put ``data`` into the layer for ``role`` (created if missing or of another shape)."""
        name = layer_name(role)
        layer = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (LayerList has no get)
        ndim = data.shape[-1] if kind is Vectors else data.ndim
        if layer is not None and (not isinstance(layer, kind) or layer.ndim != ndim):
            self.viewer.layers.remove(name)
            layer = None
        if layer is None:
            layer = kind(data, name=name, **options)
            self.viewer.add_layer(layer)
            self.viewer.reset_view()
        elif (
            isinstance(layer, Image)
            and layer.data.shape == data.shape
            and layer.data.dtype == data.dtype
            and layer.data.flags.writeable
        ):
            layer.data[...] = data  # in place + refresh: napari need not recompute the scene
            layer.refresh()
        else:
            layer.data = data
            if isinstance(layer, Vectors):  # new vectors get no colour
                for key, value in options.items():
                    setattr(layer, key, value)
        if translate is not None and not np.array_equal(layer.translate, translate):
            layer.translate = translate
        if isinstance(layer, Image):
            layer.reset_contrast_limits()
        self._filled.add(role)
