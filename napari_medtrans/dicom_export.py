r"""Write a synthetic CT as a new DICOM CT series of the source MR study (MRI-only planning).

:func:`export_dicom` writes one CT Image Storage file per slice:

- Modality ``CT``, ImageType ``DERIVED\\SECONDARY``, a new SeriesInstanceUID
  and new SOPInstanceUIDs, a SeriesDescription naming the translator;
- the patient and study identity (PatientName/ID/BirthDate/Sex, Study UID,
  date, time, ID, accession number, description) and the FrameOfReferenceUID
  of the ``like`` series, so that the sCT joins the MR's study in the same frame;
  without ``like`` a new study and frame are made and the patient is left empty;
- HU stored as unsigned 16-bit integers with RescaleSlope/RescaleIntercept
  (:data:`RESCALE_SLOPE` HU per step, intercept the lower of −1024 and the
  image minimum): a read-back value differs from the written one by at most
  half a step;
- geometry slice by slice: with ``like``, every slice takes the
  ImagePositionPatient, ImageOrientationPatient and PixelSpacing of the MR
  slice it was translated from (the sCT must lie on that grid, which
  ``medtrans translate`` guarantees; a mismatch is refused); without it, they
  are computed from the volume's origin, spacing and direction.

The series is written into a temporary folder next to ``out`` and moved into
place at the end; an existing ``out`` is only replaced with ``overwrite``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from napari_medtrans.constants import AIR_HU
from napari_medtrans.io import GRID_TOLERANCES, Volume, list_dicom_series, read_volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RESCALE_SLOPE = 1.0
IDENTITY_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PatientPosition",
)
SERIES_NUMBER_OFFSET = 1000


class DicomExportError(ValueError):
    """The sCT cannot be written as asked; the message says why."""


@dataclass(frozen=True)
class SliceGeometry:
    """Where one slice lies: position of its first pixel (x, y, z), row and column directions, pixel
    spacing (between rows, between columns) and thickness, in mm.
    """

    position: tuple[float, ...]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, ...]
    thickness: float


def volume_slices(volume: Volume) -> list[SliceGeometry]:
    """Slice geometry along array axis 0 computed from the volume's origin, spacing and direction."""
    d = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    sx, sy, sz = volume.spacing
    origin = np.asarray(volume.origin, dtype=float)
    orientation = (*d[:, 0], *d[:, 1])
    return [
        SliceGeometry(tuple(origin + k * sz * d[:, 2]), orientation, (sy, sx), sz) for k in range(volume.array.shape[0])
    ]


def _like_slices(folder: Path, volume: Volume) -> tuple[list[SliceGeometry], Dataset]:
    """Per-slice geometry and first header of the ``like`` series; refuses a grid other than the sCT's."""
    source = read_volume(folder)
    uid = source.metadata.get("SeriesInstanceUID")
    files = next(s.files for s in list_dicom_series(folder) if s.uid == uid)
    if source.array.shape != volume.array.shape:
        raise DicomExportError(
            f"{folder}: the series has {source.array.shape} voxels (z, y, x), the sCT "
            f"{volume.array.shape}; translate this series to get an sCT on its grid"
        )
    mismatch = {
        name: float(np.max(np.abs(np.subtract(getattr(source, name), getattr(volume, name)))))
        for name in GRID_TOLERANCES
    }
    for name, tolerance in GRID_TOLERANCES.items():  # those of io.require_same_grid
        if mismatch[name] > tolerance:
            raise DicomExportError(
                f"{folder}: the sCT's {name} differs from the series by {mismatch[name]:.3g} "
                f"(tolerance {tolerance}); translate this series to get an sCT on its grid"
            )
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    slices = [
        SliceGeometry(
            tuple(float(v) for v in h.ImagePositionPatient),
            tuple(float(v) for v in h.ImageOrientationPatient),
            tuple(float(v) for v in h.PixelSpacing),
            float(getattr(h, "SliceThickness", None) or source.spacing[2]),
        )
        for h in headers
    ]
    return slices, headers[0]


def _ds(values: Sequence[float] | float) -> list[DSfloat] | DSfloat:
    """Decimal strings that fit DICOM's 16 characters at the highest precision that fits."""
    if isinstance(values, (int, float)):
        return DSfloat(float(values), auto_format=True)
    return [DSfloat(float(v), auto_format=True) for v in values]


def _series_dataset(like: Dataset | None, description: str, intercept: float, derivation: str) -> Dataset:
    """The tags every slice of the new series shares."""
    ds = Dataset()
    now = datetime.datetime.now()
    if like is not None:
        for tag in IDENTITY_TAGS:
            if tag in like:
                setattr(ds, tag, like[tag].value)
        number = int(getattr(like, "SeriesNumber", 0) or 0) + SERIES_NUMBER_OFFSET
    else:
        ds.PatientName, ds.PatientID = "", ""
        ds.StudyInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid()
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        number = SERIES_NUMBER_OFFSET
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = number
    ds.SeriesDescription = description[:64]
    ds.SeriesDate, ds.SeriesTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.Manufacturer = "napari-medtrans"
    ds.DerivationDescription = derivation[:1024]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(RESCALE_SLOPE)
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    return ds


def _slice_file(shared: Dataset, geometry: SliceGeometry, pixels: np.ndarray, number: int) -> Dataset:
    ds = Dataset()
    ds.update(shared)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = number
    ds.ImagePositionPatient = _ds(geometry.position)
    ds.ImageOrientationPatient = _ds(geometry.orientation)
    ds.PixelSpacing = _ds(geometry.pixel_spacing)
    ds.SliceThickness = _ds(geometry.thickness)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def hu_to_stored(hu: np.ndarray) -> tuple[np.ndarray, float]:
    """(uint16 stored values, intercept): HU = stored × RESCALE_SLOPE + intercept, to half a step."""
    hu = np.asarray(hu, dtype=np.float64)
    intercept = float(min(AIR_HU, np.floor(hu.min())))
    steps = np.rint((hu - intercept) / RESCALE_SLOPE)
    if steps.max() > np.iinfo(np.uint16).max:
        raise DicomExportError(
            f"the sCT spans {hu.min():.0f} to {hu.max():.0f} HU, more than 16 bits at {RESCALE_SLOPE} HU per step"
        )
    return steps.astype(np.uint16), intercept


def export_dicom(
    volume: Volume,
    out: str | os.PathLike[str],
    *,
    like: str | os.PathLike[str] | None = None,
    translator: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``volume`` (a synthetic CT in HU) as a new CT series in folder ``out``; returns the files.

    ``like`` is the folder of the MR series it was translated from (identity and
    per-slice geometry are taken from it), ``translator`` the translator's name
    for the series description.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass overwrite to replace it")
    if like is not None:
        slices, like_header = _like_slices(Path(like), volume)
    else:
        slices, like_header = volume_slices(volume), None
    stored, intercept = hu_to_stored(volume.array)
    name = translator or "translator not recorded"
    source = f"MR series {like_header.SeriesInstanceUID}" if like_header is not None else "an MR volume"
    shared = _series_dataset(
        like_header,
        f"synthetic CT ({name})",
        intercept,
        f"synthetic CT translated from {source} by {name} (napari-medtrans); not a measured CT",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        names = []
        for k, geometry in enumerate(slices):
            ds = _slice_file(shared, geometry, stored[k], k + 1)
            names.append(f"CT_{k + 1:04d}.dcm")
            ds.save_as(tmp / names[-1], enforce_file_format=True)
        _replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / n for n in names]


def _replace_folder(new: Path, out: Path) -> None:
    """Move folder ``new`` to ``out``; an existing ``out`` is removed only after the move succeeded."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old)
