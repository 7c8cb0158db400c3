"""Reader and writer contributions through a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest
from _volumes import oblique_volume, write_dicom_series

from napari_medtrans._napari._reader import get_reader
from napari_medtrans.io import Volume, VolumeReadError, read_volume, write_volume

PLUGIN = "napari-medtrans"
pytestmark = pytest.mark.gui


def _sitk_point(volume: Volume, index_zyx) -> np.ndarray:
    image = volume.to_sitk()
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(i) for i in index_zyx[::-1]]))[::-1]


def test_get_reader_accepts_volumes_and_declines_others(tmp_path):
    path = write_volume(oblique_volume(), tmp_path / "ct.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "plain").mkdir()
    assert callable(get_reader(str(path)))
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "plain")) is None


def test_open_oblique_volume_lands_in_physical_space(make_napari_viewer, tmp_path):
    volume = oblique_volume()
    path = write_volume(volume, tmp_path / "head_ct.nii.gz")
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin=PLUGIN)

    assert layer.name == "head_ct" and layer.data.dtype == np.int16
    np.testing.assert_allclose(layer.scale, volume.spacing[::-1], atol=1e-6)
    np.testing.assert_allclose(layer.translate, volume.origin[::-1], atol=1e-5)
    np.testing.assert_allclose(
        layer.affine.affine_matrix[:3, :3], np.reshape(volume.direction, (3, 3))[::-1, ::-1], atol=1e-6
    )
    stored = layer.metadata["medtrans"]
    assert stored["modality"] == "CT" and stored["path"] == str(path)
    for landmark in [(0, 0, 0), (5, 6, 7), (3, 1, 4)]:
        np.testing.assert_allclose(layer.data_to_world(landmark), _sitk_point(read_volume(path), landmark), atol=1e-6)


def test_volumes_of_different_geometry_overlay(make_napari_viewer, tmp_path):
    """The same physical point maps to the right voxel in an oblique and an axial volume."""
    oblique = oblique_volume(shape=(10, 12, 14))
    axial = Volume(np.zeros((20, 30, 40), np.float32), (2.0, 1.5, 3.0), (-130.0, 0.0, 10.0), modality="T1")
    viewer = make_napari_viewer()
    [first] = viewer.open(str(write_volume(oblique, tmp_path / "ct.nii.gz")), plugin=PLUGIN)
    [second] = viewer.open(str(write_volume(axial, tmp_path / "t1.mha")), plugin=PLUGIN)

    point = _sitk_point(oblique, (4.0, 5.0, 6.0))
    axial_index = np.asarray(axial.to_sitk().TransformPhysicalPointToContinuousIndex(tuple(point[::-1])))[::-1]
    np.testing.assert_allclose(first.world_to_data(point), (4.0, 5.0, 6.0), atol=1e-4)
    np.testing.assert_allclose(second.world_to_data(point), axial_index, atol=1e-6)
    np.testing.assert_allclose(second.data_to_world(axial_index), point, atol=1e-6)


def test_labels_file_opens_as_labels_layer(make_napari_viewer, tmp_path):
    labels = oblique_volume(dtype=np.uint8, modality=None)
    labels.array[:] = labels.array % 5
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(write_volume(labels, tmp_path / "subject_labels.nii.gz")), plugin=PLUGIN)
    assert layer._type_string == "labels" and layer.name == "subject_labels"
    np.testing.assert_array_equal(layer.data, labels.array)


def test_dicom_folder_opens_one_layer_per_series(make_napari_viewer, tmp_path):
    write_dicom_series(tmp_path / "study", oblique_volume(), description="head_ct", uid="1.2.3.4.1")
    write_dicom_series(
        tmp_path / "study",
        oblique_volume(dtype=np.uint16, modality="MR", seed=3),
        description="t1",
        uid="1.2.3.4.2",
    )
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin=PLUGIN)
    assert sorted(layer.name for layer in layers) == ["head_ct", "t1"]
    modality = {layer.name: layer.metadata["medtrans"]["modality"] for layer in layers}
    assert modality == {"head_ct": "CT", "t1": "MR"}


def test_save_layers_put_geometry_back_and_never_overwrite(make_napari_viewer, tmp_path):
    volume = oblique_volume()
    viewer = make_napari_viewer()
    [image] = viewer.open(str(write_volume(volume, tmp_path / "ct.mha")), plugin=PLUGIN)
    labels = viewer.add_labels(
        (image.data > 0).astype(np.uint8), scale=image.scale, translate=image.translate, affine=image.affine
    )

    image_out = tmp_path / "image.nrrd"
    viewer.layers.selection = {image}
    assert viewer.layers.save(str(image_out), selected=True, plugin=PLUGIN) == [str(image_out)]
    back = read_volume(image_out)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.modality == "CT"
    for key in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(back, key), getattr(volume, key), rtol=0, atol=1e-12)

    labels_out = tmp_path / "mask_labels.nii.gz"
    viewer.layers.selection = {labels}
    viewer.layers.save(str(labels_out), selected=True, plugin=PLUGIN)
    saved = read_volume(labels_out)
    assert saved.array.dtype == np.uint8
    np.testing.assert_allclose(saved.direction, volume.direction, atol=1e-6)
    np.testing.assert_allclose(saved.origin, volume.origin, atol=1e-4)

    before = image_out.read_bytes()
    viewer.layers.selection = {image}
    with pytest.raises(FileExistsError, match="already exists"):
        viewer.layers.save(str(image_out), selected=True, plugin=PLUGIN)
    assert image_out.read_bytes() == before


def test_bad_file_reports_clear_error_and_viewer_stays_up(make_napari_viewer, tmp_path, monkeypatch):
    from napari.errors import ReaderPluginError

    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(write_volume(oblique_volume(dtype=np.float32), tmp_path / "good.nii.gz").read_bytes()[:200])
    viewer = make_napari_viewer()
    with pytest.raises(VolumeReadError, match=r"broken\.nii\.gz: not a readable NIfTI"):
        viewer.open(str(bad), plugin=PLUGIN)
    # The path File > Open takes once napari-medtrans is the preferred reader for .nii.gz
    # (patched here rather than set, so the user's napari settings file is not touched):
    monkeypatch.setattr("napari.components.viewer_model.get_preferred_reader", lambda path: PLUGIN)
    with pytest.raises(ReaderPluginError, match=r"(?s)napari-medtrans.*VolumeReadError: .*broken\.nii\.gz"):
        viewer.open(str(bad), plugin=None)
    assert len(viewer.layers) == 0
    [layer] = viewer.open(str(tmp_path / "good.nii.gz"), plugin=None)
    assert layer.name == "good" and len(viewer.layers) == 1


def test_reviewed_and_saved_labels_reopen_as_labels_without_modality(make_napari_viewer, tmp_path):
    ct = oblique_volume(dtype=np.int16, modality="CT")
    labels = ct.with_array((ct.array > 0).astype(np.uint8) * 3)  # still tagged CT, as an export once was
    viewer = make_napari_viewer()
    [reviewed] = viewer.open(str(write_volume(labels, tmp_path / "sub-000_labels_reviewed.nii.gz")), plugin=PLUGIN)
    assert reviewed._type_string == "labels" and reviewed.name == "sub-000_labels_reviewed"
    assert reviewed.metadata["medtrans"]["modality"] is None
    np.testing.assert_array_equal(reviewed.data, labels.array)
    # a labels layer saved by the plugin has no modality in its header and reopens as labels
    out = tmp_path / "copy_labels.mha"
    viewer.layers.selection = {reviewed}
    viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
    assert read_volume(out).modality is None
    [again] = viewer.open(str(out), plugin=PLUGIN)
    assert again._type_string == "labels"
    # names merely containing "seg" or "labels" inside a word stay images
    [image] = viewer.open(str(write_volume(ct, tmp_path / "segmental_ct.nii.gz")), plugin=PLUGIN)
    assert image._type_string == "image" and image.metadata["medtrans"]["modality"] == "CT"


def test_a_4d_file_warns_in_the_viewer(make_napari_viewer, tmp_path):
    import SimpleITK as sitk
    from napari.utils.notifications import notification_manager

    path = tmp_path / "dynamic.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.Image([6, 5, 4], sitk.sitkFloat32)] * 3), str(path))
    viewer = make_napari_viewer()
    shown = []
    notification_manager.notification_ready.connect(shown.append)
    try:
        [layer] = viewer.open(str(path), plugin=PLUGIN)
    finally:
        notification_manager.notification_ready.disconnect(shown.append)
    assert layer.data.shape == (4, 5, 6)
    messages = [str(n.message) for n in shown]
    assert any("reading only the first 3-D volume (2 more skipped)" in m for m in messages), messages


def test_tissue_names_travel_as_labels_features(make_napari_viewer, tmp_path):
    from napari_medtrans.label_names import names_path, read_label_names, write_label_names

    labels = oblique_volume(dtype=np.uint8, modality=None)
    labels.array[:] = labels.array % 3
    path = write_volume(labels, tmp_path / "sub_labels.nii.gz")
    write_label_names(path, {0: "background", 1: "bone", 2: "brain"})
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    assert list(layer.features["tissue"]) == ["background", "bone", "brain"]
    out = tmp_path / "copy_labels.mha"
    viewer.layers.selection = {layer}
    viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
    assert names_path(out).is_file() and read_label_names(out) == {0: "background", 1: "bone", 2: "brain"}
    # the phantom sample names its tissues too
    layers = viewer.open_sample("napari-medtrans", "phantom_head")
    phantom = next(layer for layer in layers if layer.name == "phantom labels")
    assert "cortical bone" in list(phantom.features["tissue"])
