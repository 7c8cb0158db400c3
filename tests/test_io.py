"""Volume IO: round trips with exact geometry, DICOM series, every bad input, layer geometry."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import ORIGIN, SPACING, oblique_direction, oblique_volume, write_dicom_series

from napari_medtrans import io
from napari_medtrans.cli import main
from napari_medtrans.io import (
    Volume,
    VolumeReadError,
    layer_geometry,
    list_dicom_series,
    read_volume,
    read_volumes,
    volume_from_layer,
    write_volume,
)

CT_UID = "1.2.826.0.1.3680043.2.1125.2"
MR_UID = "1.2.826.0.1.3680043.2.1125.3"


def assert_same_geometry(a: Volume, b: Volume, atol: float = 1e-6) -> None:
    for key in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=0, atol=atol, err_msg=key)


@pytest.fixture
def dicom_folder(tmp_path: Path) -> Path:
    """A folder with two DICOM series: an oblique int16 CT and an axial uint16 MR."""
    folder = tmp_path / "study"
    write_dicom_series(folder, oblique_volume(), description="head_ct", uid=CT_UID)
    mr = Volume(
        np.arange(5 * 8 * 10, dtype=np.uint16).reshape(5, 8, 10),
        (1.0, 1.0, 3.0),
        (0.0, 0.0, 0.0),
        modality="MR",
    )
    write_dicom_series(folder, mr, description="t1_axial", uid=MR_UID)
    return folder


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip_keeps_voxels_dtype_geometry_and_modality(tmp_path, suffix, dtype):
    volume = oblique_volume(dtype=dtype)
    written = write_volume(volume, tmp_path / f"vol{suffix}")
    back = read_volume(written)
    assert back.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, volume.array)
    assert_same_geometry(back, volume)
    assert back.modality == "CT" and back.path == str(written)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_metaimage_and_nrrd_keep_float64_geometry_exactly(tmp_path, suffix):
    volume = Volume(
        np.zeros((3, 4, 5), np.float32),
        (0.123456789, 1.1, 2.7),
        (-123.456789012, 4.2, 1e-3),
        oblique_direction(),
    )
    back = read_volume(write_volume(volume, tmp_path / f"v{suffix}"))
    assert_same_geometry(back, volume, atol=1e-12)


def test_nifti_geometry_is_stable_on_rewrite(tmp_path):
    """NIfTI holds float32 geometry: what was read from NIfTI is written back unchanged."""
    volume = Volume(
        np.zeros((3, 4, 5), np.int16),
        (0.123456789, 1.1, 2.7),
        (-123.456789012, 4.2, 1e-3),
        oblique_direction(),
    )
    first = read_volume(write_volume(volume, tmp_path / "a.nii.gz"))
    assert_same_geometry(first, volume, atol=1e-4)
    second = read_volume(write_volume(first, tmp_path / "b.nii.gz"))
    assert_same_geometry(second, first, atol=1e-6)


def test_reads_metaimage_with_detached_data(tmp_path):
    volume = oblique_volume()
    sitk.WriteImage(volume.to_sitk(), str(tmp_path / "v.mhd"))
    back = read_volume(tmp_path / "v.mhd", modality="CT")
    np.testing.assert_array_equal(back.array, volume.array)
    assert_same_geometry(back, volume)
    assert back.modality == "CT"


def test_caller_modality_wins(tmp_path):
    path = write_volume(oblique_volume(modality="T1"), tmp_path / "v.nii.gz")
    assert read_volume(path).modality == "T1"
    assert read_volume(path, modality="T2").modality == "T2"


def test_write_refuses_to_overwrite_and_leaves_no_temp_files(tmp_path):
    path = write_volume(oblique_volume(seed=1), tmp_path / "v.nii.gz")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="v.nii.gz.*overwrite=True"):
        write_volume(oblique_volume(seed=2), path)
    assert path.read_bytes() == before
    write_volume(oblique_volume(seed=2), path, overwrite=True)
    np.testing.assert_array_equal(read_volume(path).array, oblique_volume(seed=2).array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.nii.gz"]


def test_write_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"v\.png.*\.nii\.gz"):
        write_volume(oblique_volume(), tmp_path / "v.png")


def test_dicom_series_listing_and_reading(dicom_folder):
    listing = {s.uid: s for s in list_dicom_series(dicom_folder)}
    assert set(listing) == {CT_UID, MR_UID}
    assert (listing[CT_UID].description, listing[CT_UID].modality, listing[CT_UID].n_files) == (
        "head_ct",
        "CT",
        6,
    )

    volumes = {v.metadata["SeriesDescription"]: v for v in read_volumes(dicom_folder)}
    ct, mr = volumes["head_ct"], volumes["t1_axial"]
    assert ct.array.dtype == np.int16 and ct.modality == "CT"
    np.testing.assert_array_equal(ct.array, oblique_volume().array)
    assert_same_geometry(ct, oblique_volume(), atol=1e-5)
    assert mr.array.dtype == np.uint16 and mr.modality == "MR" and mr.array.shape == (5, 8, 10)


def test_dicom_series_choice(dicom_folder):
    with pytest.raises(
        VolumeReadError, match=f"study: holds 2 series; pass series_uid.*{CT_UID} \\(head_ct, 6 files\\)"
    ):
        read_volume(dicom_folder)
    assert read_volume(dicom_folder, series_uid=MR_UID).metadata["SeriesDescription"] == "t1_axial"
    assert read_volume(dicom_folder / "head_ct_002.dcm").array.shape == (6, 7, 8)
    with pytest.raises(VolumeReadError, match="has no series 1.2.3"):
        read_volume(dicom_folder, series_uid="1.2.3")


def test_dicom_series_with_unreadable_slice_warns(dicom_folder):
    slice_file = dicom_folder / "head_ct_003.dcm"
    slice_file.write_bytes(slice_file.read_bytes()[:-100])
    with pytest.warns(UserWarning, match=r"study: DICOM series .* has uneven slice gaps \(2\.5 to 5 mm"):
        volume = read_volume(dicom_folder, series_uid=CT_UID)
    assert volume.array.shape == (5, 7, 8)


def _good_gz(folder: Path) -> bytes:
    return write_volume(oblique_volume(dtype=np.float32, shape=(8, 32, 32)), folder / "good.nii.gz").read_bytes()


def _put(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _sitk_file(path: Path, image: sitk.Image) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _folder(path: Path, junk_files: int = 0) -> Path:
    path.mkdir()
    for k in range(junk_files):
        _put(path / f"{k}.dcm", "junk" * 200)
    return path


def _nifti_with_dims(folder: Path, dims: tuple[int, int, int]) -> Path:
    path = write_volume(oblique_volume(), folder / "big.nii")
    header = bytearray(path.read_bytes())
    header[42:48] = np.array(dims, "<i2").tobytes()
    path.write_bytes(bytes(header))
    return path


def _nonfinite(folder: Path, suffix: str) -> Path:
    array = np.zeros((4, 5, 6), np.float32)
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    return _sitk_file(folder / f"nan{suffix}", sitk.GetImageFromArray(array))


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.nii.gz", r"nope\.nii\.gz: no such file"),
    "empty": (lambda d: _put(d / "e.nii.gz", b""), r"e\.nii\.gz: the file is empty"),
    "truncated_gz": (
        lambda d: _put(d / "t.nii.gz", _good_gz(d)[:3000]),
        r"t\.nii\.gz: the compressed voxel data is corrupt or truncated",
    ),
    "truncated_nii": (
        lambda d: _put(d / "t.nii", write_volume(oblique_volume(), d / "g.nii").read_bytes()[:600]),
        r"t\.nii: truncated, the header needs 672 bytes of voxel data but the file holds 248",
    ),
    "truncated_mha": (
        lambda d: _put(d / "t.mha", write_volume(oblique_volume(), d / "g.mha").read_bytes()[:-200]),
        r"t\.mha: could not read the voxel data, the file is truncated or corrupt",
    ),
    "text_as_nii": (
        lambda d: _put(d / "notes.nii", "not an image\n" * 40),
        r"notes\.nii: not a readable NIfTI, MetaImage, NRRD or DICOM file",
    ),
    "two_d": (
        lambda d: _sitk_file(d / "s.nii.gz", sitk.GetImageFromArray(np.zeros((5, 6), np.uint8))),
        r"s\.nii\.gz: is a 2-D image \(6 x 5\); napari-medtrans reads 3-D volumes",
    ),
    "vector": (
        lambda d: _sitk_file(d / "rgb.mha", sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)),
        r"rgb\.mha: has 3 components per voxel",
    ),
    "nan_nifti": (lambda d: _nonfinite(d, ".nii.gz"), r"nan\.nii\.gz: 4 of 120 voxels are NaN or infinite"),
    "nan_mha": (lambda d: _nonfinite(d, ".mha"), r"nan\.mha: 4 of 120 voxels are NaN or infinite"),
    "huge_header": (
        lambda d: _nifti_with_dims(d, (30000, 30000, 30000)),
        r"big\.nii: header says 30000 x 30000 x 30000 voxels of 16-bit signed integer .* GiB is available",
    ),
    "empty_folder": (lambda d: _folder(d / "dicom"), r"dicom: no readable DICOM series in this folder"),
    "junk_dicom_folder": (
        lambda d: _folder(d / "dicom", junk_files=2),
        r"dicom: no readable DICOM series in this folder \(files in it: 2\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_clear_error_naming_the_file(tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(VolumeReadError, match=message):
        read_volume(path)
    with pytest.raises(VolumeReadError, match=message):
        read_volumes(path)


def test_memory_check_happens_before_reading_voxels(tmp_path, monkeypatch):
    """A header that fits on disk but not in the (pretended) free memory is refused."""
    path = write_volume(oblique_volume(shape=(10, 10, 10)), tmp_path / "v.nii.gz")
    monkeypatch.setattr(io, "available_memory", lambda: 3000)
    with pytest.raises(VolumeReadError, match=r"v\.nii\.gz: header says 10 x 10 x 10 voxels.* 0\.0 GiB is available"):
        read_volume(path)
    monkeypatch.setattr(io, "available_memory", lambda: 5000)
    assert read_volume(path).array.shape == (10, 10, 10)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_four_d_reads_first_volume_with_warning(tmp_path, suffix):
    frames = [oblique_volume(dtype=np.float32, seed=s).to_sitk() for s in range(3)]
    path = tmp_path / f"series{suffix}"
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    with pytest.warns(UserWarning, match=r"4-D image .* reading only the first 3-D volume \(2 more skipped\)"):
        volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, oblique_volume(dtype=np.float32, seed=0).array)
    np.testing.assert_allclose(volume.spacing, SPACING, atol=1e-6)


def test_single_slice_volume_is_fine(tmp_path):
    path = write_volume(oblique_volume(shape=(1, 5, 6)), tmp_path / "one.nrrd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_volume(path).array.shape == (1, 5, 6)


def test_layer_geometry_maps_index_to_physical_point():
    volume = oblique_volume()
    geometry = layer_geometry(volume)
    image = volume.to_sitk()
    assert geometry["scale"] == SPACING[::-1] and geometry["translate"] == ORIGIN[::-1]
    for index_zyx in [(0, 0, 0), (5, 6, 7), (2, 3, 1)]:
        data_to_physical = np.asarray(geometry["scale"]) * index_zyx + geometry["translate"]
        world = geometry["affine"][:3, :3] @ data_to_physical + geometry["affine"][:3, 3]
        expected = image.TransformIndexToPhysicalPoint([int(i) for i in index_zyx[::-1]])[::-1]
        np.testing.assert_allclose(world, expected, atol=1e-9)
    assert geometry["metadata"]["medtrans"]["modality"] == "CT"


def test_identity_direction_gives_identity_affine():
    volume = Volume(np.zeros((2, 3, 4)), (1, 2, 3), (4, 5, 6))
    np.testing.assert_array_equal(layer_geometry(volume)["affine"], np.eye(4))


def test_volume_from_layer_restores_geometry():
    volume = oblique_volume()
    geometry = layer_geometry(volume)
    back = volume_from_layer(
        volume.array,
        geometry["metadata"],
        scale=geometry["scale"],
        translate=geometry["translate"],
        affine=geometry["affine"],
    )
    assert (back.spacing, back.origin, back.direction, back.modality) == (
        volume.spacing,
        volume.origin,
        volume.direction,
        "CT",
    )
    # Without stored metadata the geometry is derived from the transform alone.
    derived = volume_from_layer(
        volume.array, {}, scale=geometry["scale"], translate=geometry["translate"], affine=geometry["affine"]
    )
    assert_same_geometry(derived, volume, atol=1e-9)
    plain = volume_from_layer(volume.array, None, scale=(2.0, 1.0, 0.5), translate=(3.0, 2.0, 1.0))
    assert (plain.spacing, plain.origin, plain.direction) == (
        (0.5, 1.0, 2.0),
        (1.0, 2.0, 3.0),
        io.IDENTITY_DIRECTION,
    )


def test_volume_from_layer_rejects_shear():
    shear = np.eye(4)
    shear[0, 1] = 0.3
    with pytest.raises(ValueError, match="shear"):
        volume_from_layer(np.zeros((2, 3, 4)), None, scale=(1, 1, 1), translate=(0, 0, 0), affine=shear)


def test_with_array_keeps_geometry():
    volume = oblique_volume()
    derived = volume.with_array(volume.array.astype(np.float32) * 2, modality="T1")
    assert (derived.spacing, derived.origin, derived.direction, derived.modality) == (
        volume.spacing,
        volume.origin,
        volume.direction,
        "T1",
    )
    assert volume.with_array(volume.array).modality == "CT"


def test_info_command_text_and_json(tmp_path, dicom_folder, capsys):
    path = write_volume(oblique_volume(), tmp_path / "ct.nii.gz")
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "shape (z, y, x):     6 x 7 x 8" in text and "dtype:               int16" in text
    assert "modality:            CT" in text and "spacing (x, y, z):   0.75, 0.8125, 2.5 mm" in text

    assert main(["info", "--json", str(dicom_folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {s["description"] for s in report["series"]} == {"head_ct", "t1_axial"}
    ct = next(v for v in report["volumes"] if v["name"] == "head_ct")
    assert ct["modality"] == "CT" and ct["dtype"] == "int16" and ct["shape_zyx"] == [6, 7, 8]
    array = oblique_volume().array
    assert ct["intensity_range"] == [float(array.min()), float(array.max())]


def test_info_command_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "x.nii").write_text("hello")
    assert main(["info", str(tmp_path / "x.nii")]) == 2
    assert "x.nii: not a readable NIfTI" in capsys.readouterr().err


def test_dicom_reading_keeps_the_process_locale(dicom_folder):
    import locale

    try:
        locale.setlocale(locale.LC_ALL, "C.UTF-8")
    except locale.Error:
        pytest.skip("no C.UTF-8 locale on this machine")
    read_volumes(dicom_folder)
    list_dicom_series(dicom_folder)
    assert locale.getpreferredencoding(False).upper().replace("-", "") == "UTF8"
