"""Medical volumes with exact physical geometry: read, write, and napari layer geometry.

Formats (all through SimpleITK): NIfTI (``.nii``, ``.nii.gz``), MetaImage
(``.mha``, ``.mhd``), NRRD (``.nrrd``, ``.nhdr``) and DICOM series (a folder, or
any file of the series). Writing supports ``.nii``, ``.nii.gz``, ``.mha`` and
``.nrrd``.

Documented choices:

- Arrays are (z, y, x) with the dtype of the file (integer CT stays integer HU).
- A 4-D (or higher) image: the first volume (index 0 along every axis beyond z)
  is read, with a ``UserWarning`` saying how many were skipped.
- A 2-D image is refused with a ``VolumeReadError`` (a volume is 3-D; a
  single-slice 3-D file is fine).
- Vector/RGB images (several components per voxel) are refused.
- NaN or infinite voxels are refused with the count of bad voxels.
- Before any voxel is read, the header's size × dtype is checked against the
  available memory (twice the volume: SimpleITK's buffer plus the numpy copy).
- Modality: the caller's ``modality`` wins; otherwise the DICOM Modality tag
  (``"CT"``, ``"MR"``, ...) or the tag this module writes (``medtrans_modality``
  in MetaImage/NRRD, ``modality=<tag>`` in the NIfTI description).
- NIfTI stores geometry in float32: a volume read from NIfTI round-trips exactly,
  arbitrary float64 geometry written to NIfTI is kept to float32 precision
  (~1e-7 relative). MetaImage and NRRD keep float64.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import locale
import os
import re
import tempfile
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import SimpleITK as sitk

from napari_medtrans.constants import READ_SUFFIXES, WRITE_SUFFIXES  # file endings read / written


def volume_suffix(name: str) -> str | None:
    """The volume file ending of ``name`` from READ_SUFFIXES (``ct.nii.gz`` → ``.nii.gz``), or None."""
    lower = name.lower()
    return next((s for s in READ_SUFFIXES if lower.endswith(s)), None)


def volume_stem(name: str) -> str:
    """``name`` without its volume file ending (``ct.nii.gz`` → ``ct``); other names unchanged."""
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else name


def volume_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Volumes in ``folder`` keyed by name without ending, the way paired data are matched.

    NIfTI, MetaImage and NRRD files, and sub-folders (DICOM series); single
    DICOM files are slices, not volumes, and are skipped.
    """
    found: dict[str, Path] = {}
    for entry in sorted(Path(folder).iterdir()):
        suffix = volume_suffix(entry.name)
        if entry.is_dir():
            found[entry.name] = entry
        elif suffix and suffix not in (".dcm", ".ima"):
            found[entry.name[: -len(suffix)]] = entry
    return found


IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

_MODALITY_KEY = "medtrans_modality"
_NIFTI_NOTE_PREFIX = "modality="
_DICOM_TAGS = {
    "Modality": "0008|0060",
    "SeriesDescription": "0008|103e",
    "SeriesInstanceUID": "0020|000e",
    "PatientID": "0010|0020",
    "StudyInstanceUID": "0020|000d",
}


class VolumeReadError(ValueError):
    """A file or folder cannot be read as a volume; the message names it and the problem."""


@dataclass
class Volume:
    """A 3-D image in array order (z, y, x) with SimpleITK geometry in (x, y, z) order."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    modality: str | None = None
    path: str | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(f"a Volume array must be 3-D (z, y, x), got shape {self.array.shape}")
        self.spacing = _floats(self.spacing, 3, "spacing")
        self.origin = _floats(self.origin, 3, "origin")
        self.direction = _floats(self.direction, 9, "direction")
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    def with_array(self, array: np.ndarray, modality: str | None = None) -> Volume:
        """A new volume with the same geometry; ``modality`` defaults to this one's."""
        return Volume(
            array=array,
            spacing=self.spacing,
            origin=self.origin,
            direction=self.direction,
            modality=modality if modality is not None else self.modality,
            metadata=dict(self.metadata),
        )

    def to_sitk(self) -> sitk.Image:
        """The volume as a SimpleITK image (bool becomes uint8, float16 float32)."""
        widened = {np.dtype(bool): np.uint8, np.dtype(np.float16): np.float32}
        array = self.array.astype(widened.get(self.array.dtype, self.array.dtype), copy=False)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a folder."""

    uid: str
    description: str
    modality: str | None
    files: tuple[str, ...]

    @property
    def n_files(self) -> int:
        """Number of files (usually slices) in the series."""
        return len(self.files)


def _floats(values: Any, n: int, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.asarray(values, dtype=float).ravel())
    if len(out) != n:
        raise ValueError(f"{name} needs {n} values, got {len(out)}")
    return out


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _reason(exc: Exception) -> str:
    """The informative line of a SimpleITK exception (its messages span many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            return re.sub(r"^\w+ \(0x[0-9a-f]+\):\s*", "", line.split("ERROR:", 1)[1].strip())
    return lines[-1] if lines else type(exc).__name__


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes_per_voxel(pixel_id: int) -> int:
    probe = sitk.Image([1, 1, 1], pixel_id)
    return sitk.GetArrayViewFromImage(probe).itemsize


def _check_memory(path: Path, size_xyz: tuple[int, ...], pixel_id: int) -> None:
    nbytes = int(np.prod(size_xyz, dtype=np.float64)) * _bytes_per_voxel(pixel_id)
    free = available_memory()
    if free is not None and 2 * nbytes > free:
        raise VolumeReadError(
            f"{path}: header says {' x '.join(map(str, size_xyz))} voxels of "
            f"{sitk.GetPixelIDValueAsString(pixel_id)} ({nbytes / 2**30:.1f} GiB); reading needs "
            f"about {2 * nbytes / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is available"
        )


def _header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise VolumeReadError(f"{path}: not a readable NIfTI, MetaImage, NRRD or DICOM file ({_reason(exc)})") from exc
    return reader


def _tag(reader: sitk.ImageFileReader, key: str) -> str | None:
    """A header entry, stripped; None when absent or empty."""
    if not reader.HasMetaDataKey(key):
        return None
    return reader.GetMetaData(key).strip() or None


def _file_modality(reader: sitk.ImageFileReader) -> str | None:
    """The modality this module wrote into a NIfTI/MetaImage/NRRD header, if any."""
    tagged = _tag(reader, _MODALITY_KEY)
    if tagged:
        return tagged
    note = _tag(reader, "descrip") or ""
    if note.startswith(_NIFTI_NOTE_PREFIX):
        return note[len(_NIFTI_NOTE_PREFIX) :].strip() or None
    return None


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}  # float32/64, complex64/128


def _nifti_chunks(path: Path, offset: int, nbytes: int, chunk: int = 1 << 22):
    """Yield the ``nbytes`` bytes at ``offset`` of a (gzipped) NIfTI file, decompressed."""
    with gzip.open(path, "rb") if _suffix(path) == ".nii.gz" else open(path, "rb") as handle:
        handle.seek(offset)
        while nbytes > 0:
            data = handle.read(min(chunk, nbytes))
            if not data:
                return
            nbytes -= len(data)
            yield data


def _nifti_voxel_bytes(path: Path, reader: sitk.ImageFileReader) -> tuple[int, int, int]:
    """(bytes of voxel data present, bytes the header needs, NaN/inf voxels) of a NIfTI file."""
    datatype = int(reader.GetMetaData("datatype"))
    bitpix = int(reader.GetMetaData("bitpix"))
    offset = int(float(reader.GetMetaData("vox_offset")))
    with gzip.open(path, "rb") if _suffix(path) == ".nii.gz" else open(path, "rb") as handle:
        head = handle.read(4)
    order = "<" if int.from_bytes(head, "little") in (348, 540) else ">"
    expected = int(np.prod(reader.GetSize()[:3], dtype=np.int64)) * reader.GetNumberOfComponents() * bitpix // 8
    kind = _NIFTI_FLOAT_TYPES.get(datatype)
    got = bad = 0
    carry = b""
    try:
        for data in _nifti_chunks(path, offset, expected):
            got += len(data)
            if kind:
                data = carry + data
                usable = len(data) - len(data) % int(kind[1])
                values = np.frombuffer(data[:usable], dtype=order + kind)
                bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                carry = data[usable:]
    except (OSError, EOFError, zlib.error) as exc:
        raise VolumeReadError(f"{path}: the compressed voxel data is corrupt or truncated ({exc})") from exc
    return got, expected, bad


def _scan_nifti(path: Path, reader: sitk.ImageFileReader) -> None:
    """Check the voxel bytes of a NIfTI file are all there and finite.

    The NIfTI library under SimpleITK silently zero-fills a truncated file and
    replaces NaN/inf with 0, so both are checked on the raw bytes here.
    """
    got, expected, bad = _nifti_voxel_bytes(path, reader)
    if got < expected:
        raise VolumeReadError(
            f"{path}: truncated, the header needs {expected} bytes of voxel data but the file holds {got}"
        )
    if bad:
        bitpix = int(reader.GetMetaData("bitpix"))
        raise VolumeReadError(_nonfinite_message(path, bad, expected * 8 // bitpix))


def _nonfinite_message(path: Path, bad: int, total: int) -> str:
    return (
        f"{path}: {bad} of {total} voxels are NaN or infinite; "
        "replace them (e.g. numpy.nan_to_num) before using the volume"
    )


def _to_volume(path: Path, image: sitk.Image, modality: str | None, metadata: dict) -> Volume:
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind in "fc":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise VolumeReadError(_nonfinite_message(path, bad, array.size))
    return Volume(
        array=array,
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
        modality=modality,
        path=str(path),
        metadata=metadata,
    )


SPACING_RANGE_MM = (1e-6, 1e6)
"""Voxel sizes a NIfTI header may give (mm); outside it (or 0, NaN, inf) the file is refused."""

_QFORM_SFORM_TOLERANCE = 1e-3  # mm, on the entries of the two 4 × 4 affines


def _nifti1_header(path: Path) -> dict[str, Any] | None:
    """pixdim, qform/sform codes and affines (RAS) of a NIfTI-1 header; None for NIfTI-2."""
    with gzip.open(path, "rb") if _suffix(path) == ".nii.gz" else open(path, "rb") as handle:
        raw = handle.read(348)
    if len(raw) < 348:
        return None
    order = next((o for o in "<>" if int.from_bytes(raw[:4], "little" if o == "<" else "big") == 348), None)
    if order is None:
        return None
    pixdim = np.frombuffer(raw, order + "f4", 8, 76).astype(float)
    qform_code, sform_code = np.frombuffer(raw, order + "i2", 2, 252)
    b, c, d, *offset = np.frombuffer(raw, order + "f4", 6, 256).astype(float)
    a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    rotation = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    )
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    qform = np.eye(4)
    with np.errstate(all="ignore"):
        qform[:3, :3] = rotation * np.array([pixdim[1], pixdim[2], pixdim[3] * qfac])
    qform[:3, 3] = offset
    sform = np.eye(4)
    sform[:3] = np.frombuffer(raw, order + "f4", 12, 280).astype(float).reshape(3, 4)
    return {
        "pixdim": pixdim,
        "qform_code": int(qform_code),
        "sform_code": int(sform_code),
        "qform": qform,
        "sform": sform,
    }


def _check_nifti_geometry(path: Path) -> dict[str, Any] | None:
    """Refuse a NIfTI-1 header whose voxel size is 0, NaN, inf or absurd (ITK would use 1 mm or it)."""
    header = _nifti1_header(path)
    if header is None:
        return None
    low, high = SPACING_RANGE_MM
    for axis, value in zip("xyz", header["pixdim"][1:4]):
        if not (np.isfinite(value) and low <= abs(value) <= high):
            raise VolumeReadError(
                f"{path}: the header's {axis} voxel size (pixdim) is {value:g}; a voxel size must be a finite "
                f"number between {low:g} and {high:g} mm. Fix the header (e.g. nibabel's set_zooms)"
            )
    return header


def _warn_qform_sform(path: Path, header: dict[str, Any] | None, image_geometry: tuple) -> None:
    """One warning when the qform and the sform disagree, naming the one ITK used."""
    if header is None or header["qform_code"] <= 0 or header["sform_code"] <= 0:
        return
    qform, sform = header["qform"], header["sform"]
    if not np.all(np.isfinite(sform)) or np.abs(qform - sform).max() <= _QFORM_SFORM_TOLERANCE:
        return
    spacing, origin, direction = image_geometry
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    used = np.eye(4)
    used[:3, :3] = lps_to_ras @ np.asarray(direction).reshape(3, 3) @ np.diag(spacing)
    used[:3, 3] = lps_to_ras @ np.asarray(origin)
    chosen = "sform" if np.abs(used - sform).max() < np.abs(used - qform).max() else "qform"
    warnings.warn(
        f"{path}: the qform and the sform of the header disagree (by up to {np.abs(qform - sform).max():.3g} mm); "
        f"the {chosen} was used. Check the geometry against the scanner's",
        UserWarning,
        stacklevel=5,
    )


def _read_file(path: Path, reader: sitk.ImageFileReader, modality: str | None) -> Volume:
    dim, size = reader.GetDimension(), reader.GetSize()
    if dim < 3:
        raise VolumeReadError(
            f"{path}: is a {dim}-D image ({' x '.join(map(str, size))}); napari-medtrans reads 3-D volumes"
        )
    if reader.GetNumberOfComponents() != 1:
        raise VolumeReadError(
            f"{path}: has {reader.GetNumberOfComponents()} components per voxel "
            "(vector/RGB image); only scalar volumes are supported"
        )
    _check_memory(path, size[:3], reader.GetPixelID())
    if dim > 3:
        skipped = int(np.prod(size[3:])) - 1
        if skipped:
            warnings.warn(
                f"{path}: {dim}-D image of size {size}; reading only the first 3-D volume ({skipped} more skipped)",
                UserWarning,
                stacklevel=3,
            )
        reader.SetExtractIndex([0] * dim)
        reader.SetExtractSize(list(size[:3]) + [0] * (dim - 3))
    nifti = _suffix(path) in (".nii", ".nii.gz")
    header = _check_nifti_geometry(path) if nifti else None
    if nifti:
        _scan_nifti(path, reader)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError(
            f"{path}: could not read the voxel data, the file is truncated or corrupt ({_reason(exc)})"
        ) from exc
    _warn_qform_sform(path, header, (image.GetSpacing(), image.GetOrigin(), image.GetDirection()))
    return _to_volume(path, image, modality or _file_modality(reader), {})


_F = TypeVar("_F", bound=Callable[..., Any])


@contextlib.contextmanager
def _itk_warnings_off() -> Iterator[None]:
    """Silence ITK's warnings (printed to stderr, several lines each) inside the block."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _keeps_locale(func: _F) -> _F:
    """Restore the process locale after ``func``: GDCM (SimpleITK's DICOM IO) resets
    it to "C", after which Python opens text files as ASCII (seen breaking PyRadiomics).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        saved = locale.setlocale(locale.LC_ALL)
        try:
            return func(*args, **kwargs)
        finally:
            locale.setlocale(locale.LC_ALL, saved)

    return wrapper  # type: ignore[return-value]


def _folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(regular files, entries that are no readable file: dangling or looping links, FIFOs…) of ``folder``."""
    good, bad = [], []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            continue
        (good if entry.is_file() else bad).append(entry)
    return good, bad


def _gdcm_series(folder: Path, files: list[Path]) -> dict[str, tuple[str, ...]]:
    """UID → sorted file names of each series among ``files``, by GDCM.

    GDCM scans a whole folder and drops real slices when the folder holds a
    dangling link, so a folder with any unreadable entry is scanned through a
    temporary folder of links to its readable files only.
    """
    if len(files) == sum(1 for p in folder.iterdir() if not p.is_dir()):
        scan, back = folder, {}
    else:
        scratch = tempfile.TemporaryDirectory(prefix="medtrans-dicom-")
        scan = Path(scratch.name)
        for path in files:
            (scan / path.name).symlink_to(path.resolve())
        back = {str(scan / p.name): str(p) for p in files}
    try:
        return {
            uid: tuple(back.get(f, f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(scan), uid))
            for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(scan))
        }
    finally:
        if scan is not folder:
            scratch.cleanup()


@_keeps_locale
def list_dicom_series(folder: str | os.PathLike[str]) -> list[DicomSeries]:
    """Every DICOM series directly inside ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeReadError(f"{folder}: is not a folder")
    found = []
    for uid, files in _gdcm_series(folder, _folder_files(folder)[0]).items():
        if not files:
            continue
        first = _header(Path(files[0]))
        found.append(
            DicomSeries(
                uid=uid,
                description=_tag(first, _DICOM_TAGS["SeriesDescription"]) or "",
                modality=_tag(first, _DICOM_TAGS["Modality"]),
                files=files,
            )
        )
    return found


def _warn_unread_files(folder: Path, series: list[DicomSeries]) -> None:
    """Warn naming the entries of ``folder`` that belong to no series (unreadable links, other files)."""
    good, bad = _folder_files(folder)
    used = {Path(f).name for s in series for f in s.files}
    unread = bad + [p for p in good if p.name not in used]
    if unread:
        names = ", ".join(p.name + ("" if p.is_file() else " (broken link or not a file)") for p in unread[:3])
        more = f" and {len(unread) - 3} more" if len(unread) > 3 else ""
        warnings.warn(
            f"{folder}: {len(unread)} of {len(good) + len(bad)} entries could not be read as DICOM slices "
            f"of a series: {names}{more}",
            UserWarning,
            stacklevel=5,
        )


def _read_series(folder: Path, series: DicomSeries, modality: str | None) -> Volume:
    first = _header(Path(series.files[0]))
    size = first.GetSize()
    if first.GetNumberOfComponents() != 1:
        raise VolumeReadError(f"{folder}: DICOM series {series.uid} is not a scalar (greyscale) image")
    slices = series.n_files * (size[2] if len(size) > 2 else 1)
    _check_memory(folder, (size[0], size[1], slices), first.GetPixelID())
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError(f"{folder}: could not read DICOM series {series.uid} ({_reason(exc)})") from exc
    if image.GetDimension() != 3:
        raise VolumeReadError(f"{folder}: DICOM series {series.uid} is not a 3-D volume (size {image.GetSize()})")
    _check_one_orientation(folder, series, reader, image.GetSize()[2])
    _warn_uneven_slices(folder, series, reader, image)
    tags = {name: value for name, key in _DICOM_TAGS.items() if (value := _tag(first, key))}
    return _to_volume(folder, image, modality or series.modality, tags)


def _check_one_orientation(folder: Path, series: DicomSeries, reader: sitk.ImageSeriesReader, n: int) -> None:
    """Refuse a series whose slices have different orientations (ImageOrientationPatient)."""
    key = "0020|0037"
    if not all(reader.HasMetaDataKey(i, key) for i in range(n)):
        return
    try:
        cosines = np.array([[float(v) for v in reader.GetMetaData(i, key).split("\\")] for i in range(n)])
    except ValueError as exc:
        raise VolumeReadError(
            f"{folder}: DICOM series {series.uid} has an unreadable slice orientation ({exc})"
        ) from exc
    differ = np.flatnonzero(np.abs(cosines - cosines[0]).max(axis=1) > 1e-4)
    if differ.size:
        raise VolumeReadError(
            f"{folder}: DICOM series {series.uid} mixes slice orientations ({differ.size} of {n} slices differ "
            f"from the first, e.g. {Path(series.files[differ[0]]).name}); it is not one volume: "
            "move the slices of each orientation into a folder of their own"
        )


def _warn_uneven_slices(folder: Path, series: DicomSeries, reader: sitk.ImageSeriesReader, image: sitk.Image) -> None:
    """Warn when slice positions are not evenly spaced (missing or unreadable slices)."""
    key = "0020|0032"  # ImagePositionPatient
    n = image.GetSize()[2]
    if n < 3 or not all(reader.HasMetaDataKey(i, key) for i in range(n)):
        return
    positions = np.array([[float(v) for v in reader.GetMetaData(i, key).split("\\")] for i in range(n)])
    normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
    gaps = np.diff(positions @ normal)
    spacing = image.GetSpacing()[2]
    if np.max(np.abs(np.abs(gaps) - spacing)) > 1e-3 * spacing + 1e-4:
        warnings.warn(
            f"{folder}: DICOM series {series.uid} has uneven slice gaps ({np.abs(gaps).min():g} to "
            f"{np.abs(gaps).max():g} mm; missing or unreadable slices?); the volume assumes {spacing:g} mm",
            UserWarning,
            stacklevel=4,
        )


def _dicom_folder_series(folder: Path) -> list[DicomSeries]:
    series = list_dicom_series(folder)
    if not series:
        good, bad = _folder_files(folder)
        broken = f", and {len(bad)} broken links or non-files" if bad else ""
        raise VolumeReadError(f"{folder}: no readable DICOM series in this folder (files in it: {len(good)}{broken})")
    _warn_unread_files(folder, series)
    return series


def _choose(folder: Path, series: list[DicomSeries], uid: str | None) -> DicomSeries:
    if uid is None and len(series) == 1:
        return series[0]
    matches = [s for s in series if s.uid == uid]
    if matches:
        return matches[0]
    listing = "; ".join(f"{s.uid} ({s.description or 'no description'}, {s.n_files} files)" for s in series)
    problem = (
        f"has no series {uid}"
        if uid
        else f"holds {len(series)} series; pass series_uid (medtrans translate --series-uid)"
    )
    raise VolumeReadError(f"{folder}: {problem}. Series: {listing}")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise VolumeReadError(f"{path}: the file is empty (0 bytes)")


@_keeps_locale
def read_volume(path: str | os.PathLike[str], *, series_uid: str | None = None, modality: str | None = None) -> Volume:
    """Read one volume: a NIfTI/MetaImage/NRRD file, a DICOM folder, or a DICOM file's series.

    In a folder with several DICOM series, ``series_uid`` chooses one (required
    then); given a DICOM file, its own series is read unless ``series_uid`` says
    otherwise. ``modality`` overrides what the file says.
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return _read_series(path, _choose(path, _dicom_folder_series(path), series_uid), modality)
    if _suffix(path) in (".nii", ".nii.gz"):
        with _itk_warnings_off():  # the checks here replace ITK's multi-line qform/sform warnings
            return _read_file(path, _header(path), modality)
    reader = _header(path)
    file_series = _tag(reader, _DICOM_TAGS["SeriesInstanceUID"])
    if file_series is None:
        return _read_file(path, reader, modality)
    uid = series_uid or file_series
    return _read_series(path.parent, _choose(path.parent, _dicom_folder_series(path.parent), uid), modality)


@_keeps_locale
def read_volumes(path: str | os.PathLike[str], *, modality: str | None = None) -> list[Volume]:
    """Every volume at ``path``: each DICOM series of a folder, else the one volume."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return [_read_series(path, s, modality) for s in _dicom_folder_series(path)]
    return [read_volume(path, modality=modality)]


def write_volume(volume: Volume, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``volume`` with its geometry and modality; atomic, never overwrites unless asked."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"{path}: cannot write '{suffix or path.name}' files; use one of {', '.join(WRITE_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True to replace it")
    image = volume.to_sitk()
    if volume.modality:
        if suffix.startswith(".nii"):
            image.SetMetaData("ITK_FileNotes", _NIFTI_NOTE_PREFIX + volume.modality)
        else:
            image.SetMetaData(_MODALITY_KEY, volume.modality)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[: -len(suffix)]}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=suffix != ".nii")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _verify_written(tmp, path, image)
        os.replace(tmp, path)
    except RuntimeError as exc:
        raise OSError(f"{path}: could not write the volume ({_reason(exc)})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _nifti_voxels_differ(path: Path, reader: sitk.ImageFileReader, expected: np.ndarray) -> str | None:
    """Compare the raw voxel bytes of a NIfTI file with ``expected`` in one (decompressing) pass."""
    with gzip.open(path, "rb") if _suffix(path) == ".nii.gz" else open(path, "rb") as handle:
        order = "<" if int.from_bytes(handle.read(4), "little") in (348, 540) else ">"
    data = b"".join(_nifti_chunks(path, int(float(reader.GetMetaData("vox_offset"))), expected.nbytes))
    if len(data) < expected.nbytes:
        return f"only {len(data)} of {expected.nbytes} bytes of voxel data reached the disk"
    written = np.frombuffer(data, dtype=expected.dtype.newbyteorder(order)).reshape(expected.shape)
    return None if np.array_equal(written, expected, equal_nan=True) else "the voxels read back differ"


def _verify_written(tmp: Path, path: Path, image: sitk.Image) -> None:
    """Read the temp file back and compare it with ``image`` before it replaces ``path``.

    SimpleITK's writers print an error but do not raise when the disk fills up
    (``** ERROR: NWAD``), leaving a truncated file; the NIfTI reader zero-fills
    such a file. So the size and every voxel are checked (NIfTI: its raw bytes,
    so a short file cannot pass as zeros); the check costs one read of the file.
    """
    problem = None
    try:
        reader = _header(tmp)
        if tuple(reader.GetSize()) != tuple(image.GetSize()):
            problem = f"the file holds size {reader.GetSize()}, not {image.GetSize()}"
        elif _suffix(tmp).startswith(".nii"):
            problem = _nifti_voxels_differ(tmp, reader, sitk.GetArrayViewFromImage(image))
        elif not np.array_equal(
            sitk.GetArrayFromImage(reader.Execute()), sitk.GetArrayViewFromImage(image), equal_nan=True
        ):
            problem = "the voxels read back differ from those written"
    except (VolumeReadError, RuntimeError, OSError, EOFError, zlib.error) as exc:
        problem = _reason(exc) if isinstance(exc, RuntimeError) else str(exc) or type(exc).__name__
    if problem:
        raise OSError(
            f"{path}: writing failed, {problem} (disk full or quota exceeded?); "
            f"{'the existing file was left unchanged' if path.exists() else 'nothing was written'}"
        )


def _direction_zyx(direction: tuple[float, ...]) -> np.ndarray:
    return np.asarray(direction, dtype=float).reshape(3, 3)[::-1, ::-1]


def layer_geometry(volume: Volume) -> dict:
    """napari layer keyword arguments that place ``volume`` in physical space.

    ``scale``/``translate`` are spacing/origin reversed to (z, y, x); ``affine``
    carries the direction D' = D[::-1, ::-1] about the origin, so that the world
    coordinate of index i is D'·(spacing'·i) + origin' (the physical point, z, y, x).
    """
    rotation = _direction_zyx(volume.direction)
    origin = np.asarray(volume.origin[::-1])
    affine = np.eye(4)
    affine[:3, :3] = rotation
    affine[:3, 3] = origin - rotation @ origin
    return {
        "scale": tuple(volume.spacing[::-1]),
        "translate": tuple(volume.origin[::-1]),
        "affine": affine,
        "metadata": {
            "medtrans": {
                "spacing": list(volume.spacing),
                "origin": list(volume.origin),
                "direction": list(volume.direction),
                "modality": volume.modality,
                "path": volume.path,
            }
        },
    }


def volume_from_layer(
    data: Any,
    metadata: dict | None,
    *,
    scale: Any,
    translate: Any,
    affine: Any = None,
) -> Volume:
    """A Volume from napari layer data and its scale/translate (and optional 4x4 ``affine``).

    The geometry is derived from the layer transform; when it matches the
    geometry stored in ``metadata["medtrans"]`` (to 1e-9) the stored values are
    used exactly. The modality comes from ``metadata["medtrans"]``.
    """
    array = np.asarray(data)
    if array.ndim != 3:
        raise ValueError(f"a volume layer must be 3-D (z, y, x), got shape {array.shape}")
    matrix = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    linear, shift = matrix[:3, :3], matrix[:3, 3]
    columns = linear @ np.diag(np.asarray(scale, dtype=float))
    spacing_zyx = np.linalg.norm(columns, axis=0)
    rotation = columns / spacing_zyx
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6):
        raise ValueError("the layer transform has shear; it cannot be stored as spacing + direction")
    stored = (metadata or {}).get("medtrans") or {}
    volume = Volume(
        array=array,
        spacing=spacing_zyx[::-1],
        origin=(linear @ np.asarray(translate, dtype=float) + shift)[::-1],
        direction=rotation[::-1, ::-1].ravel(),
        modality=stored.get("modality"),
    )
    keys = ("spacing", "origin", "direction")
    if all(
        np.shape(stored.get(k)) == np.shape(getattr(volume, k))
        and np.allclose(getattr(volume, k), stored[k], rtol=0, atol=1e-9)
        for k in keys
    ):
        for k in keys:
            setattr(volume, k, tuple(float(v) for v in stored[k]))
    return volume


class GridMismatch(ValueError):
    """Two volumes that must share a voxel grid do not; the message names both."""


GRID_TOLERANCE_MM = 1e-3
"""Spacing and origin may differ by this much (mm) and still count as the same grid."""
GRID_DIRECTION_TOLERANCE = 1e-4
"""Direction cosines may differ by this much and still count as the same grid."""
GRID_TOLERANCES = {"spacing": GRID_TOLERANCE_MM, "origin": GRID_TOLERANCE_MM, "direction": GRID_DIRECTION_TOLERANCE}
"""The tolerance of each geometry attribute (:func:`require_same_grid`)."""


def require_same_grid(reference: Volume, other: Volume, *, what: str) -> None:
    """Raise :class:`GridMismatch` unless ``other`` lies on ``reference``'s grid.

    Same shape, spacing and origin (within :data:`GRID_TOLERANCE_MM`) and direction
    (within :data:`GRID_DIRECTION_TOLERANCE`). ``what`` names the role of ``other`` in the message ("labels",
    "translated volume"); both files are named.
    """
    differences = []
    if reference.array.shape != other.array.shape:
        differences.append(f"shape (z, y, x) {other.array.shape} vs {reference.array.shape}")
    for name, tolerance in GRID_TOLERANCES.items():
        mine, theirs = getattr(other, name), getattr(reference, name)
        if not np.allclose(mine, theirs, rtol=0, atol=tolerance):
            differences.append(f"{name} {tuple(round(v, 4) for v in mine)} vs {tuple(round(v, 4) for v in theirs)}")
    if differences:
        raise GridMismatch(
            f"{what} {other.path or '(in memory)'} does not lie on the grid of "
            f"{reference.path or '(in memory)'}: " + "; ".join(differences) + " (resample it onto the reference first)"
        )
