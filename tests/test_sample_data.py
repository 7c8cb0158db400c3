"""Phantom cohorts on disk (``write_cohort``, ``medtrans sample-data``) and napari's sample data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.io import read_volume
from napari_medtrans.phantom import generate_cohort, write_cohort

SHAPE = (8, 32, 32)
ARGS = ["--subjects", "2", "--shape", *map(str, SHAPE)]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_paired_cohort_files_round_trip(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path, 2, "paired", seed=4, shape=SHAPE)
    names = {p.name for p in tmp_path.iterdir()}
    expected = {f"sub-00{i}_{k}.nii.gz" for i in range(2) for k in ("t1", "t2", "ct", "labels")}
    assert names == expected | {"manifest.json"}
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert manifest["regime"] == "paired" and manifest["shape"] == list(SHAPE)
    assert manifest["pairs"] == [{"source": "sub-000", "target": "sub-000"}, {"source": "sub-001", "target": "sub-001"}]
    assert manifest["tissues"]["2"] == "cortical bone"

    subject = generate_cohort(2, "paired", seed=4, shape=SHAPE)[1].source
    entry = manifest["subjects"][1]
    assert entry["seed"] == subject.seed
    for key, image in (("t1", "t1"), ("ct", "ct"), ("labels", "labels")):
        volume = read_volume(tmp_path / entry["files"][key]["path"])
        np.testing.assert_array_equal(volume.array, getattr(subject, image))
        assert volume.spacing == pytest.approx(subject.spacing, abs=1e-6)
        assert volume.origin == pytest.approx(subject.origin, abs=1e-6)
        assert volume.modality == entry["files"][key]["modality"]
    assert read_volume(tmp_path / "sub-001_labels.nii.gz").array.dtype == np.uint8


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert (
            main(["sample-data", "--out", str(tmp_path / name), "--regime", "misaligned", "--seed", str(seed), *ARGS])
            == 0
        )
    first, second, other = (_files(tmp_path / n) for n in "abc")
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[k] != other[k] for k in first)


def test_misaligned_files(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path, 1, "misaligned", seed=0, level=5, shape=SHAPE)
    files = manifest["subjects"][0]["files"]
    assert set(files) == {"t1", "labels", "t2", "ct", "labels_moved", "t2_aligned", "ct_aligned"}
    assert {k for k, f in files.items() if f["frame"] == "moved"} == {"t2", "ct", "labels_moved"}
    assert manifest["level"] == 5 and manifest["subjects"][0]["misalignment"]["level"] == 5
    pair = generate_cohort(1, "misaligned", seed=0, level=5, shape=SHAPE)[0]
    np.testing.assert_array_equal(read_volume(tmp_path / files["ct_aligned"]["path"]).array, pair.source.ct)
    np.testing.assert_array_equal(read_volume(tmp_path / files["ct"]["path"]).array, pair.target.ct)
    moved = read_volume(tmp_path / files["labels_moved"]["path"]).array
    assert not np.array_equal(moved, read_volume(tmp_path / files["labels"]["path"]).array)


def test_unpaired_subjects_are_disjoint(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path, 2, "unpaired", shape=SHAPE)
    assert [s["name"] for s in manifest["subjects"]] == ["sub-000", "sub-002", "sub-001", "sub-003"]
    sources = {p["source"] for p in manifest["pairs"]}
    targets = {p["target"] for p in manifest["pairs"]}
    assert not sources & targets and len(sources | targets) == 4
    assert len({s["seed"] for s in manifest["subjects"]}) == 4


def test_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cohort"
    assert main(["sample-data", "--out", str(out), *ARGS]) == 0
    assert "8 volumes" in capsys.readouterr().out
    before = _files(out)
    assert main(["sample-data", "--out", str(out), "--seed", "9", *ARGS]) == 2
    assert "not empty; use --overwrite" in capsys.readouterr().err
    assert _files(out) == before
    assert main(["sample-data", "--out", str(out), "--seed", "9", "--overwrite", *ARGS]) == 0
    assert _files(out) != before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--subjects", "0"], "--subjects must be at least 1"),
        (["--level", "6"], "--level must be between 0 and 5"),
        (["--seed", "-1"], "--seed must be a non-negative integer"),
        (["--shape", "2", "32", "32"], "--shape sizes must be at least 4"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    assert main(["sample-data", "--out", str(tmp_path / "x"), *ARGS, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_out_must_be_a_folder(tmp_path: Path, capsys) -> None:
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert main(["sample-data", "--out", str(target), *ARGS]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    with pytest.raises(SystemExit):
        main(["sample-data", "--out", str(tmp_path / "y"), "--regime", "semi-paired"])


@pytest.mark.gui
def test_napari_phantom_head(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-medtrans", "phantom_head")
    assert [layer.name for layer in layers] == ["phantom T1", "phantom T2", "phantom CT", "phantom labels"]
    t1, _, ct, labels = layers
    assert type(labels).__name__ == "Labels" and labels.data.dtype == np.uint8
    for layer in layers:
        assert layer.data.shape == (32, 128, 128)
        np.testing.assert_allclose(layer.scale, (4.0, 1.2, 1.2))
        np.testing.assert_allclose(layer.translate, (-62.0, -76.2, -76.2))
        assert layer.metadata["medtrans"]["spacing"] == pytest.approx([1.2, 1.2, 4.0])
    assert ct.metadata["medtrans"]["modality"] == "CT" and t1.metadata["medtrans"]["modality"] == "T1"
    assert ct.data.min() < -900 and ct.data.max() > 1000
    # the centre voxel lies at the physical centre of the field of view
    np.testing.assert_allclose(t1.data_to_world((15.5, 63.5, 63.5)), (0, 0, 0), atol=1e-5)


@pytest.mark.gui
def test_napari_phantom_misaligned(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    t1, ct = viewer.open_sample("napari-medtrans", "phantom_misaligned")
    assert t1.metadata["medtrans"]["modality"] == "T1" and ct.metadata["medtrans"]["modality"] == "CT"
    np.testing.assert_allclose(ct.scale, t1.scale)
    np.testing.assert_allclose(ct.translate, t1.translate)
    assert ct.data.shape == t1.data.shape
