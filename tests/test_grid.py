"""io.require_same_grid and the commands that use it on files that must share a voxel grid."""

from __future__ import annotations

import numpy as np
import pytest
from test_inference import make_translator
from test_pseudolabels import pseudolabel_folder_argv, pseudolabel_folders

from napari_medtrans.cli import main
from napari_medtrans.io import GridMismatch, Volume, read_volume, require_same_grid, write_volume


def _volume(**geometry) -> Volume:
    base = {"spacing": (1.0, 1.0, 2.0), "origin": (0.0, 0.0, 0.0)} | geometry
    return Volume(np.zeros((4, 6, 6), np.float32), **base)


def test_same_grid_passes_within_tolerance():
    require_same_grid(_volume(), _volume(origin=(0.0005, 0.0, 0.0)), what="labels")


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (_volume(spacing=(1.0, 1.0, 2.5)), "spacing (1.0, 1.0, 2.5) vs (1.0, 1.0, 2.0)"),
        (_volume(origin=(0.0, 3.0, 0.0)), "origin (0.0, 3.0, 0.0) vs (0.0, 0.0, 0.0)"),
        (Volume(np.zeros((4, 6, 5)), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), "shape (z, y, x) (4, 6, 5) vs (4, 6, 6)"),
        (_volume(direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), "direction"),
    ],
)
def test_different_grids_name_both_files_and_the_difference(tmp_path, other, expected):
    write_volume(_volume(), tmp_path / "image.nii.gz")
    write_volume(other, tmp_path / "labels.nii.gz")
    with pytest.raises(GridMismatch) as error:
        require_same_grid(
            read_volume(tmp_path / "image.nii.gz"), read_volume(tmp_path / "labels.nii.gz"), what="labels"
        )
    message = str(error.value)
    assert message.startswith(
        f"labels {tmp_path / 'labels.nii.gz'} does not lie on the grid of {tmp_path / 'image.nii.gz'}"
    )
    assert expected in message


def test_pseudolabel_refuses_labels_off_the_image_grid(tmp_path, small_subject, capsys):
    translator = make_translator(tmp_path / "tiny.safetensors")
    folders = pseudolabel_folders(tmp_path)
    write_volume(small_subject.volume("t1"), folders["src"] / "a.nii.gz")
    labels = small_subject.volume("labels")
    labels.spacing = (2.0, 2.0, 2.0)
    write_volume(labels, folders["src_lab"] / "a.nii.gz")
    write_volume(small_subject.volume("ct"), folders["tgt"] / "c.nii.gz")
    argv = pseudolabel_folder_argv(translator, folders, tmp_path / "out")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"labels {folders['src_lab'] / 'a.nii.gz'} does not lie on the grid of {folders['src'] / 'a.nii.gz'}" in err
