"""Translation restricted to a mask: air outside, the plain translation inside."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.inference import load_translator
from napari_medtrans.io import read_volume, write_volume


@pytest.fixture(scope="module")
def uapi():
    return load_translator("t1-ct-uapi-supervised", device="cpu")


def test_outside_the_mask_is_air_and_inside_is_unchanged(uapi, small_subject):
    t1 = small_subject.t1[:6]
    mask = small_subject.labels[:6] > 0
    plain = uapi.translate_volume(t1, batch_size=6)
    masked = uapi.translate_volume(t1, batch_size=6, mask=mask)
    assert np.all(masked.image[~mask] == -1000.0)
    assert np.array_equal(masked.image[mask], plain.image[mask])
    assert np.all(masked.scale[~mask] == 0.0) and np.array_equal(masked.scale[mask], plain.scale[mask])
    with pytest.raises(ValueError, match=r"mask shape \(6, 64\) differs"):
        uapi.translate_volume(t1, mask=mask[:, 0])


def test_translate_cli_mask(tmp_path, capsys, small_subject):
    t1, mask = tmp_path / "t1.nii.gz", tmp_path / "head.nii.gz"
    write_volume(small_subject.volume("t1"), t1)
    write_volume(small_subject.volume("labels").with_array((small_subject.labels > 0).astype(np.uint8)), mask)
    assert (
        main(["translate", str(t1), "--model", "t1-ct-resnet", "--out", str(tmp_path / "o"), "--mask", str(mask)]) == 0
    )
    out = read_volume(tmp_path / "o" / "t1_CT.nii.gz").array
    assert np.all(out[small_subject.labels == 0] == -1000.0)
    assert out[small_subject.labels == 2].mean() > 300  # bone inside is translated, not air
    cropped = tmp_path / "cropped.nii.gz"
    write_volume(small_subject.volume("labels").with_array(small_subject.labels[:8]), cropped)
    code = main(["translate", str(t1), "--model", "t1-ct-resnet", "--out", str(tmp_path / "p"), "--mask", str(cropped)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--mask {cropped} does not lie on the grid of {t1}: shape (z, y, x) (8, 64, 64) vs (16, 64, 64)" in err
    shifted = tmp_path / "shifted.nii.gz"  # a shifted origin is refused too (the same check as every grid)
    write_volume(dataclasses.replace(small_subject.volume("labels"), origin=(0.0, 0.0, 5.0)), shifted)
    code = main(["translate", str(t1), "--model", "t1-ct-resnet", "--out", str(tmp_path / "q"), "--mask", str(shifted)])
    assert code == 2 and f"--mask {shifted} does not lie on the grid of {t1}: origin" in capsys.readouterr().err
