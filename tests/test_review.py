"""Review state (Qt-free): queue order, decisions, autosave, resume, export."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from napari_medtrans.confidence import slice_confidence, voxel_confidence
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.label_names import names_path, read_label_names, write_label_names
from napari_medtrans.review import (
    ReviewError,
    ReviewSession,
    SummaryReview,
    load_summary,
    sidecar_paths,
)

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
    np.testing.assert_allclose(conf[0], 0.6 * np.exp(-np.array([[0, 1], [2, 0]])), rtol=1e-5)  # margin 0.8 − 0.2
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
        "index": 1,
        "confidence": 0.3,
        "status": "rejected",
        "edited": True,
        "reviewer": "alice",
        "reviewed_at": None,
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
    assert not names_path(paths["labels"]).exists()  # no names to carry


def test_export_carries_the_tissue_names(case, tmp_path):
    write_label_names(case["labels"], {0: "background", 1: "soft tissue", 2: "bone"})
    paths = open_session(case).export(tmp_path / "export")
    assert read_label_names(paths["labels"]) == {0: "background", 1: "soft tissue", 2: "bone"}


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


# -- summaries: one queue over all volumes, confined paths, malformed files -------------------
def write_summary(folder, cases):
    path = folder / "summary.json"
    path.write_text(json.dumps({"cases": cases}))
    return path


def two_volume_summary(tmp_path):
    """Two copies of the case; the second's slice scores interleave with the first's."""
    first = make_case(tmp_path)
    second = {k: tmp_path / f"second_{k}.nii.gz" for k in first}
    for key, path in first.items():
        second[key].write_bytes(path.read_bytes())
    cases = [
        {"name": name, **{k: p.name for k, p in paths.items()}, "slice_confidence": scores}
        for name, paths, scores in [
            ("first", first, SLICE_SCORES),
            ("second", second, [0.2, 0.95, 0.6, 0.4, 0.85, 0.05]),
        ]
    ]
    return write_summary(tmp_path, cases), first, second


def test_summary_queue_walks_volumes_in_confidence_order(tmp_path):
    summary, first, second = two_volume_summary(tmp_path)
    review = SummaryReview(summary, reviewer="dana")
    order = [(review.cases[e.case].name, e.index) for e in review.queue]
    assert order[:6] == [("second", 5), ("first", 3), ("second", 0), ("first", 1), ("second", 3), ("first", 4)]
    assert review.go(0).index == 5 and review.current.labels_path == second["labels"]
    assert review.accept() == review.queue[1]  # next pending: first volume, slice 3
    assert review.current.labels_path == first["labels"] and review.current.current == 3
    review.reject()
    assert review.counts() == {"accepted": 1, "rejected": 1, "pending": 10}
    saved = json.loads(sidecar_paths(second["labels"])[0].read_text())
    assert saved["slices"][5]["status"] == "accepted" and saved["slices"][5]["reviewer"] == "dana"
    resumed = SummaryReview(summary)
    assert resumed.first_pending() == resumed.queue[2]  # resumes at the first pending slice
    assert resumed.status(resumed.queue[1]) == "rejected"


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ("/etc/passwd", "absolute paths and '..' are refused"),
        ("../case_labels.nii.gz", "'..' are refused"),
        ("", "must be a file name"),
        (3, "must be a file name"),
    ],
)
def test_summary_paths_stay_in_its_folder(tmp_path, labels, problem):
    paths = make_case(tmp_path)
    inner = tmp_path / "inner"
    inner.mkdir()
    summary = write_summary(inner, [{"name": "x", "image": "img.nii.gz", "labels": labels}])
    with pytest.raises(ReviewError, match=f"{re.escape(str(summary))}: case 'x' labels .*{re.escape(problem)}"):
        load_summary(summary)
    (inner / "link.nii.gz").symlink_to(paths["labels"])
    summary = write_summary(inner, [{"name": "x", "image": "img.nii.gz", "labels": "link.nii.gz"}])
    with pytest.raises(ReviewError, match="leads outside the summary's folder"):
        load_summary(summary)
    assert not list(tmp_path.glob("*.review.json"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"cases": [', "not valid JSON"),
        ("[1, 2]", "list of 'cases' objects"),
        ('{"cases": [1]}', "list of 'cases' objects"),
        ('{"cases": []}', "lists no cases"),
        ('{"cases": [{"image": "a", "labels": "b"}]}', "case 0 has no name"),
        (
            '{"cases": [{"name": "a", "image": "a", "labels": "b", "slice_confidence": "high"}]}',
            "slice_confidence must be a list of numbers",
        ),
        (
            '{"cases": [{"name": "a", "image": "a", "labels": "b", "mean_confidence": [1]}]}',
            "mean_confidence must be a number",
        ),
    ],
)
def test_malformed_summary_names_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "summary.json"
    path.write_text(content)
    with pytest.raises(ReviewError, match=f"{re.escape(str(path))}: .*{re.escape(problem)}"):
        load_summary(path)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda s: '{"slices": [', "not valid JSON (truncated or corrupt?)"),
        (lambda s: "[]", "expected a JSON object"),
        (lambda s: json.dumps(s | {"slices": {"0": 1}}), "'slices' must be a list of objects"),
        (lambda s: json.dumps(s | {"slices": [s["slices"][0] | {"index": 99}]}), "slice index 99 is not one of"),
        (lambda s: json.dumps(s | {"slices": [s["slices"][0] | {"status": "maybe"}]}), "status 'maybe'"),
        (lambda s: json.dumps(s | {"slices": [s["slices"][0] | {"reviewer": 5}]}), "must be text or null"),
        (lambda s: json.dumps(s | {"position": "2"}), "'position' must be an integer"),
        (lambda s: json.dumps(s | {"history": {}}), "'history' must be a list"),
    ],
)
def test_malformed_sidecar_names_file_and_problem(case, edit, problem):
    open_session(case).accept()
    state_path, _ = sidecar_paths(case["labels"])
    state_path.write_text(edit(json.loads(state_path.read_text())))
    with pytest.raises(ReviewError, match=f"{re.escape(str(state_path))}: .*{re.escape(problem)}"):
        open_session(case)


def test_truncated_or_foreign_edits_name_the_file(case):
    session = open_session(case)
    session.labels[3, 0, 0] = 2
    session.accept()
    _, edits_path = sidecar_paths(case["labels"])
    edits_path.write_bytes(edits_path.read_bytes()[:40])
    with pytest.raises(ReviewError, match=f"{re.escape(str(edits_path))}: not a readable edits file"):
        open_session(case)
    np.savez(edits_path, slice_3=np.zeros((2, 2), np.uint8))
    with pytest.raises(ReviewError, match=r"slice_3 is uint8 \(2, 2\), expected integer labels \(12, 10\)"):
        open_session(case)
    np.savez(edits_path, other=np.zeros((12, 10), np.uint8))
    with pytest.raises(ReviewError, match="entry 'other' names no slice"):
        open_session(case)


def test_summary_queue_stays_put_before_a_broken_volume(tmp_path):
    summary, _, second = two_volume_summary(tmp_path)
    review = SummaryReview(summary)
    assert review.go(0).case == 1  # the second volume's slice 5 comes first
    sidecar_paths(second["labels"])[0].write_text("{")  # e.g. truncated by another program
    review.sessions.clear()
    with pytest.raises(ReviewError, match=r"second: .*second_labels\.review\.json: not valid JSON"):
        review.go(0)
    assert review.position == 0 and review.status(review.queue[0]) == "pending"
    assert review.go(1).case == 0  # the other volume still opens
