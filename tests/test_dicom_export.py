"""DICOM export of a synthetic CT, read back with pydicom and SimpleITK."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from _volumes import oblique_volume, write_dicom_series

from napari_medtrans.cli import main
from napari_medtrans.dicom_export import DicomExportError, export_dicom, hu_to_stored
from napari_medtrans.io import Volume, read_volume, write_volume

MR_UID = "1.2.826.0.1.3680043.2.1125.7.1"


@pytest.fixture
def mr_series(tmp_path):
    """An oblique 5-slice MR series written slice by slice (as a scanner would), and its folder."""
    mr = oblique_volume(np.int16, shape=(5, 12, 10), modality="MR", seed=3)
    folder = tmp_path / "mr"
    write_dicom_series(folder, mr, description="t1_mprage", uid=MR_UID)
    return folder


def _sct_like(mr: Volume, seed: int = 0) -> Volume:
    hu = np.random.default_rng(seed).uniform(-1100.0, 2500.0, mr.array.shape).astype(np.float32)
    return mr.with_array(hu, modality="CT")


def _read_back(folder):
    files = sorted(folder.iterdir())
    return [pydicom.dcmread(f) for f in files]


def test_hu_to_stored_is_exact_to_half_a_step():
    hu = np.array([-1024.0, -1000.4, 0.5, 3071.0])
    stored, intercept = hu_to_stored(hu)
    assert intercept == -1024.0
    assert stored.tolist() == [0, 24, 1024, 4095]  # 0.5 rounds to even: 1024 → 0 HU
    stored, intercept = hu_to_stored(np.array([-1500.2, 10.0]))
    assert intercept == -1501.0 and stored.tolist() == [1, 1511]


def test_export_with_like_joins_the_study_and_keeps_the_slice_geometry(tmp_path, mr_series):
    mr = read_volume(mr_series)
    sct_path = tmp_path / "sct.nii.gz"
    write_volume(_sct_like(mr), sct_path)
    sct = read_volume(sct_path)
    out = tmp_path / "sct_dicom"
    assert (
        main(
            ["export-dicom", str(sct_path), "--like", str(mr_series), "--out", str(out), "--translator", "t1-ct-resnet"]
        )
        == 0
    )
    headers = _read_back(out)
    sources = {int(h.InstanceNumber): h for h in map(pydicom.dcmread, sorted(mr_series.iterdir()))}
    assert len(headers) == 5
    assert {h.Modality for h in headers} == {"CT"}
    assert {tuple(h.ImageType) for h in headers} == {("DERIVED", "SECONDARY")}
    assert {h.SOPClassUID for h in headers} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert len({h.SeriesInstanceUID for h in headers}) == 1 and headers[0].SeriesInstanceUID != MR_UID
    assert len({h.SOPInstanceUID for h in headers}) == 5
    assert {h.StudyInstanceUID for h in headers} == {"1.2.826.0.1.3680043.2.1125.1"}
    assert {h.PatientID for h in headers} == {"PHANTOM"}
    assert headers[0].SeriesDescription == "synthetic CT (t1-ct-resnet)"
    for h in headers:  # slice by slice: the MR file it was translated from
        source = sources[int(h.InstanceNumber)]
        assert np.allclose(
            [float(v) for v in h.ImagePositionPatient],
            [float(v) for v in source.ImagePositionPatient],
            rtol=0,
            atol=1e-4,
        )
        assert np.allclose(
            [float(v) for v in h.ImageOrientationPatient],
            [float(v) for v in source.ImageOrientationPatient],
            rtol=0,
            atol=1e-6,
        )
    # pydicom: HU = stored × slope + intercept, within half a step of the sCT
    ordered = sorted(headers, key=lambda h: int(h.InstanceNumber))
    back = np.stack([h.pixel_array * float(h.RescaleSlope) + float(h.RescaleIntercept) for h in ordered])
    assert np.abs(back - sct.array).max() <= 0.5 + 1e-4
    assert np.array_equal(back, np.rint(sct.array))
    # SimpleITK: the same volume on the MR's grid
    ct = read_volume(out)
    assert ct.modality == "CT"
    assert np.array_equal(ct.array, np.rint(sct.array))
    for name in ("origin", "spacing", "direction"):
        assert np.allclose(getattr(ct, name), getattr(mr, name), rtol=0, atol=1e-4), name


def test_export_without_like_uses_the_volume_geometry(tmp_path):
    sct = _sct_like(oblique_volume(np.int16, shape=(4, 9, 11), modality="CT", seed=5), seed=1)
    files = export_dicom(sct, tmp_path / "out")
    assert [f.name for f in files] == [f"CT_{k:04d}.dcm" for k in range(1, 5)]
    back = read_volume(tmp_path / "out")
    for name in ("origin", "spacing", "direction"):
        assert np.allclose(getattr(back, name), getattr(sct, name), rtol=0, atol=1e-4), name
    assert np.array_equal(back.array, np.rint(sct.array))
    header = pydicom.dcmread(files[0])
    assert header.SeriesDescription == "synthetic CT (translator not recorded)" and header.PatientID == ""


def test_export_refuses_another_grid_and_an_existing_folder(tmp_path, mr_series):
    mr = read_volume(mr_series)
    shifted = _sct_like(mr)
    shifted.origin = (mr.origin[0] + 2.0, *mr.origin[1:])
    with pytest.raises(DicomExportError, match="origin differs from the series by 2"):
        export_dicom(shifted, tmp_path / "a", like=mr_series)
    assert not (tmp_path / "a").exists()
    export_dicom(_sct_like(mr), tmp_path / "b", like=mr_series)
    with pytest.raises(FileExistsError, match="already exists"):
        export_dicom(_sct_like(mr), tmp_path / "b", like=mr_series)
    first = sorted(p.name for p in (tmp_path / "b").iterdir())
    export_dicom(_sct_like(mr, seed=2), tmp_path / "b", like=mr_series, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
