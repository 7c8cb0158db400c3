"""Tissue names of labels files: the sidecar, ``medtrans info``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _volumes import oblique_volume

from napari_medtrans.cli import main
from napari_medtrans.io import write_volume
from napari_medtrans.label_names import (
    LabelNamesError,
    as_features,
    from_features,
    names_path,
    read_label_names,
    write_label_names,
)

NAMES = {0: "background", 2: "cortical bone", 5: "white matter"}


def test_sidecar_round_trip_and_features(tmp_path):
    volume_path = tmp_path / "sub_labels.nii.gz"
    assert names_path(volume_path) == tmp_path / "sub_labels.names.json"
    assert read_label_names(volume_path) == {}
    write_label_names(volume_path, NAMES)
    assert json.loads(names_path(volume_path).read_text()) == {
        "0": "background",
        "2": "cortical bone",
        "5": "white matter",
    }
    assert read_label_names(volume_path) == NAMES
    features = as_features(NAMES)
    assert features == {"index": [0, 2, 5], "tissue": ["background", "cortical bone", "white matter"]}
    assert from_features(features) == NAMES and from_features(None) == {} and from_features({"index": [1]}) == {}


def test_a_bad_sidecar_is_named(tmp_path):
    names_path(tmp_path / "sub_labels.mha").write_text('{"one": "bone"}')
    with pytest.raises(LabelNamesError, match="sub_labels.names.json: not a label-names file"):
        read_label_names(tmp_path / "sub_labels.mha")


def test_info_lists_tissues_with_voxel_counts(tmp_path, capsys):
    volume = oblique_volume(dtype=np.uint8, modality=None)
    volume.array[:] = 0
    volume.array[0, :2, :3] = 2  # 6 voxels of bone
    volume.array[1, 0, 0] = 5
    path = write_volume(volume, tmp_path / "sub_labels.nii.gz")
    write_label_names(path, NAMES)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "    2  cortical bone  (6 voxels)" in out and "    5  white matter  (1 voxels)" in out
    assert main(["info", "--json", str(path)]) == 0
    tissues = json.loads(capsys.readouterr().out)["volumes"][0]["tissues"]
    assert tissues["0"] == {"name": "background", "voxels": volume.array.size - 7}
