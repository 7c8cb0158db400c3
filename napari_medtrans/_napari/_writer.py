"""napari writer contributions: image and labels layers as NIfTI, MetaImage or NRRD.

The geometry written is the layer's own transform (scale, translate, rotate,
shear and affine, composed as napari does), which for a layer opened by this
plugin equals the geometry kept in ``metadata["medtrans"]``; that stored
geometry is then written bit for bit. The modality in ``metadata["medtrans"]``
is written for images; labels are written without one (a labels layer drawn on
a CT carries the CT's metadata, but its values are not HU). Name labels files
``*_labels.nii.gz`` so that they reopen as Labels; tissue names (a ``tissue``
feature column) go to the ``.names.json`` sidecar.

Overwriting: these writers never replace an existing file. napari's save
dialog asks before choosing an existing name, but ``viewer.layers.save`` and
scripts do not, and the writer cannot tell them apart; an existing path raises
``FileExistsError`` (napari shows the message). To replace a file, delete it
first or call :func:`napari_medtrans.io.write_volume` with ``overwrite=True``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from napari.utils.transforms import Affine

from napari_medtrans.io import Volume, volume_from_layer, write_volume
from napari_medtrans.label_names import from_features, write_label_names


def layer_volume(data: Any, meta: dict) -> Volume:
    """The volume a layer (``data`` + napari's ``meta`` state dict) represents in physical space."""
    array = np.asarray(data)
    if array.ndim != 3 or meta.get("rgb"):
        raise ValueError(
            f"layer {meta.get('name', '')!r} has shape {array.shape}; only 3-D single-channel "
            "layers can be saved as medical volumes"
        )
    ndim = array.ndim
    data_to_physical = Affine(
        scale=meta.get("scale", np.ones(ndim)),
        translate=meta.get("translate", np.zeros(ndim)),
        rotate=meta.get("rotate"),
        shear=meta.get("shear"),
        ndim=ndim,
    ).affine_matrix
    physical_to_world = np.asarray(meta.get("affine", np.eye(ndim + 1)), dtype=float)
    return volume_from_layer(
        array,
        meta.get("metadata"),
        scale=np.ones(ndim),
        translate=np.zeros(ndim),
        affine=physical_to_world @ data_to_physical,
    )


def write_image_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write an image layer to ``path`` (.nii.gz, .nii, .mha, .nrrd); never overwrites."""
    return [str(write_volume(layer_volume(data, meta), path))]


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write a labels layer to ``path`` keeping its integer type, without a modality; never overwrites.

    Tissue names in the layer's features are written to the sidecar as well.
    """
    written = write_volume(replace(layer_volume(data, meta), modality=None), path)
    names = from_features(meta.get("features"))
    if names:
        return [str(written), str(write_label_names(written, names))]
    return [str(written)]
