"""Review state (Qt-free): queue order, decisions, autosave, resume, export."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_medtrans.confidence import slice_confidence, voxel_confidence
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.review import ReviewError, ReviewSession, sidecar_paths

SHAPE = (6, 12, 10)
SLICE_SCORES = [0.9, 0.3, 0.7, 0.1, 0.5, 0.8]  # expected queue: 3, 1, 4, 2, 5, 0


def make_case(folder):
    """Write a target image, pseudo labels and confidence with a non-trivial geometry."""
    rng = np.random.default_rng(0)
    geometry = {
        "spacing": (0.8, 0.9, 2.5),
        "origin": (-10.0, 5.0, 30.0),
        "direction": (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    }
    image = Volume(rng.normal(size=SHAPE).astype(np.float32), modality="CT", **geometry)
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, 3:9, 2:8] = 1
    labels[:, 5:7, 4:6] = 2
    confidence = np.ones(SHAPE, np.float32)
    for z, score in enumerate(SLICE_SCORES):
        confidence[z][labels[z] > 0] = score
    paths = {
        "image": write_volume(image, folder / "case_image.nii.gz"),
        "labels": write_volume(image.with_array(labels), folder / "case_labels.nii.gz"),
        "confidence": write_volume(image.with_array(confidence), folder / "case_confidence.nii.gz"),
    }
    return paths


@pytest.fixture
def case(tmp_path):
    return make_case(tmp_path)


def open_session(case, reviewer="alice"):
    return ReviewSession.open(case["image"], case["labels"], case["confidence"], reviewer=reviewer)


def test_slice_confidence_uses_labelled_voxels():
    conf = np.full((2, 4, 4), 0.9, np.float32)
    conf[0, :2] = 0.2
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, :2] = 1
    np.testing.assert_allclose(slice_confidence(conf, labels), [0.2, 0.9])


def test_voxel_confidence_combines_translator_sigma():
    probs = np.stack([np.full((1, 2, 2), 0.2), np.full((1, 2, 2), 0.8)]).astype(np.float32)
    sigma = np.array([[[0.0, 10.0], [20.0, 0.0]]], np.float32)
    conf = voxel_confidence(probs, sigma, sigma_ref=10.0)
    np.testing.assert_allclose(conf[0], 0.8 * np.exp(-np.array([[0, 1], [2, 0]])), rtol=1e-5)
    with pytest.raises(ValueError):
        voxel_confidence(probs, sigma)


def test_queue_lowest_confidence_first(case):
    session = open_session(case)
    assert session.queue == [3, 1, 4, 2, 5, 0]
    assert session.current == 3
    assert [session.slices[i].confidence for i in session.queue] == sorted(SLICE_SCORES)


def test_decisions_autosave_and_resume(case):
    session = open_session(case)
    state_path, edits_path = sidecar_paths(case["labels"])
    assert not state_path.exists()
    assert session.accept() == 1  # advances to the next pending slice
    saved = json.loads(state_path.read_text())
    assert saved["slices"][3]["status"] == "accepted"
    assert saved["slices"][3]["reviewer"] == "alice"
    assert saved["slices"][3]["reviewed_at"]
    session.labels[1, 0, 0] = 2  # an edit on the current slice
    session.reject()
    saved = json.loads(state_path.read_text())
    assert saved["slices"][1] | {"reviewed_at": None} == {
        "index": 1, "confidence": 0.3, "status": "rejected", "edited": True,
        "reviewer": "alice", "reviewed_at": None,
    }
    assert saved["position"] == 2 and [h["action"] for h in saved["history"]] == ["accepted", "rejected"]
    assert edits_path.exists()

    resumed = open_session(case, reviewer="bob")
    assert resumed.current == 4
    assert resumed.state(3).status == "accepted" and resumed.state(1).status == "rejected"
    assert resumed.labels[1, 0, 0] == 2 and resumed.state(1).edited
    assert resumed.original[1, 0, 0] == 0
    assert read_volume(case["labels"]).array[1, 0, 0] == 0  # original file untouched


def test_navigation_clamps_and_next_pending_wraps(case):
    session = open_session(case)
    assert session.previous() == 3
    session.go(5)
    assert session.next() == 0
    session.go(5)
    assert session.accept() == 3  # wraps to the first pending slice


def test_resume_refuses_sidecar_of_other_labels(case):
    open_session(case).accept()
    labels = read_volume(case["labels"])
    write_volume(labels.with_array(labels.array * 0), case["labels"], overwrite=True)
    with pytest.raises(ReviewError, match="different labels"):
        open_session(case)


def test_export_geometry_content_and_log(case, tmp_path):
    session = open_session(case)
    session.labels[3, 0, 0] = 2
    session.accept()  # slice 3, edited
    session.reject()  # slice 1
    session.accept()  # slice 4
    out = tmp_path / "export"
    paths = session.export(out)
    exported = read_volume(paths["labels"])
    image = read_volume(case["image"])
    for attr in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(exported, attr), getattr(image, attr))
    original = read_volume(case["labels"]).array
    assert exported.array[3, 0, 0] == 2
    np.testing.assert_array_equal(exported.array[4], original[4])
    assert not exported.array[[0, 1, 2, 5]].any()
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [int(r["index"]) for r in rows] == session.queue
    assert rows[0]["status"] == "accepted" and rows[0]["edited"] == "True"
    log = json.loads(paths["json"].read_text())
    assert log["counts"] == {"accepted": 2, "rejected": 1, "pending": 3}
    with pytest.raises(ReviewError, match="exists"):
        session.export(out)
    assert session.export(out, overwrite=True)["labels"] == paths["labels"]


def test_export_next_to_the_labels_keeps_them(case):
    session = open_session(case)
    session.labels[3] = 0
    session.accept()
    before = case["labels"].read_bytes()
    paths = session.export(case["labels"].parent)
    assert case["labels"].read_bytes() == before
    assert paths["labels"] != case["labels"] and not read_volume(paths["labels"]).array[3].any()


def test_mismatched_shapes_refused(case):
    image = read_volume(case["image"])
    with pytest.raises(ReviewError, match="differ in shape"):
        ReviewSession(image, image.with_array(np.zeros((2, 2, 2), np.uint8)), labels_path="l.nii.gz")
