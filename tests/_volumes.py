"""Small volumes with known geometry for the IO tests (not a test module)."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from napari_medtrans.io import Volume

SPACING = (0.75, 0.8125, 2.5)
ORIGIN = (-100.5, 20.25, 33.0)


def oblique_direction() -> tuple[float, ...]:
    """A proper rotation about all three axes, row-major (x, y, z)."""
    a, b, c = np.deg2rad([20.0, -10.0, 35.0])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return tuple((rz @ ry @ rx).ravel())


def oblique_volume(dtype=np.int16, shape=(6, 7, 8), modality="CT", seed=0) -> Volume:
    """A random integer (HU-like) volume with oblique geometry."""
    array = np.random.default_rng(seed).integers(-1024, 2000, shape).astype(dtype)
    return Volume(array, SPACING, ORIGIN, oblique_direction(), modality=modality)


def write_dicom_series(folder: Path, volume: Volume, *, description: str, uid: str) -> list[Path]:
    """Write ``volume`` as one DICOM file per slice with SimpleITK (tags as a scanner would)."""
    folder.mkdir(parents=True, exist_ok=True)
    saved_locale = locale.setlocale(locale.LC_ALL)  # GDCM resets it to "C"
    image = volume.to_sitk()
    d = volume.direction
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(volume.array.shape[0]):
        slice_ = image[:, :, k]
        tags = {
            "0008|0060": volume.modality or "OT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.{k + 1}",
            "0008|103e": description,
            "0010|0020": "PHANTOM",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
            "0020|0037": "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7]))),
            "0018|0050": str(volume.spacing[2]),
        }
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        path = folder / f"{description}_{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_)
        paths.append(path)
    locale.setlocale(locale.LC_ALL, saved_locale)
    return paths
