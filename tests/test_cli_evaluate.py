"""``medtrans evaluate`` end to end on tiny phantom data with tiny random models."""

from __future__ import annotations

import json

import pytest
import torch
from test_inference import UNET_SCALE, make_translator

from napari_medtrans.cli import main
from napari_medtrans.evaluation import EvalCase, case_mask, folder_cases
from napari_medtrans.io import write_volume
from napari_medtrans.nets import build_network
from napari_medtrans.phantom import TISSUES
from napari_medtrans.segmenter import SegmenterMetadata, save_segmenter

METRIC_KEYS = {
    "mae",
    "psnr",
    "ssim",
    "nmae",
    "mae_outside",
    "p99_outside",
    "hot_voxels_outside",
    "frd",
    "swd",
    "fid",
    "kid",
    "dice_mean",
    "dice",
    "cases",
    "ci95",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    spec = {"arch": "seg_unet", "in_channels": 1, "n_classes": len(TISSUES), "features": 4, "depth": 2}
    metadata = SegmenterMetadata("seg", "CT", dict(TISSUES), spec, {"kind": "window", "low": -1024, "high": 3000})
    return {
        "resnet": make_translator(folder / "tiny-resnet.safetensors"),
        "uapi": make_translator(folder / "tiny-uapi.safetensors", UNET_SCALE),
        "segmenter": save_segmenter(folder / "seg.safetensors", build_network(spec), metadata),
    }


@pytest.mark.slow  # evaluates every scenario end to end (> 20 s)
def test_evaluate_phantom_writes_schema_report_and_plots(tmp_path, setup, capsys):
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--model",
        str(setup["resnet"]),
        str(setup["uapi"]),
        "--phantom",
        "1",
        "--shape",
        "6",
        "64",
        "64",
        "--scenarios",
        "GN0,IP5",
        "--segmenter",
        str(setup["segmenter"]),
        "--frd-original-only",
        "--device",
        "cpu",
        "--set-bootstrap",
        "5",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["models"]) == {"tiny-resnet", "tiny-uapi"}
    for name, scenarios in doc["models"].items():
        assert set(scenarios) == {"GN0", "IP5"}
        for values in scenarios.values():
            assert set(values) >= METRIC_KEYS
            assert values["mae"] > 0 and -1 < values["ssim"] < 1 and values["swd"] > 0
            assert values["fid"] is None and values["kid"] is None
            assert set(values["dice"]) == set(TISSUES.values()) - {"air"}
            assert ("uncertainty_pcc" in values) == (name == "tiny-uapi")
            assert set(values["cases"]) == {"phantom-5000"}
            case = values["cases"]["phantom-5000"]
            assert case["mae"] == pytest.approx(values["mae"]) and case["hot_voxels_outside"] >= 0
            assert values["ci95"]["mae"] is None  # one subject: no interval
    assert doc["models"]["tiny-resnet"]["GN0"]["mae"] != doc["models"]["tiny-resnet"]["IP5"]["mae"]
    assert "tiny-resnet/GN0/fid" in doc["reasons"]
    report = (out / "report.md").read_text()
    assert "## GN0" in report and "| tiny-uapi |" in report and "feature-extractor weights" in report
    assert "Conventions: MAE unclipped" in report and "P99 air (HU)" in report
    for plot in ("per_slice_mae.png", "robustness.png", "uncertainty_scatter.png", "metric_vs_dice.png"):
        assert (out / plot).stat().st_size > 1000
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err


def test_evaluate_clear_errors(tmp_path, setup, capsys):
    base = ["evaluate", "--model", str(setup["resnet"]), "--phantom", "1", "--out", str(tmp_path)]
    assert main([*base, "--scenarios", "GN7"]) == 2
    assert "unknown scenario" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none.safetensors"), "--phantom", "--out", str(tmp_path)]) == 2
    assert "cannot load model" in capsys.readouterr().err
    assert (
        main(["evaluate", "--model", str(setup["resnet"]), "--data", str(tmp_path / "nodata"), "--out", str(tmp_path)])
        == 2
    )
    assert "no volumes" in capsys.readouterr().err


def test_folder_cases_match_by_name(tmp_path, small_subject):
    for kind, folder in (("t1", "t1"), ("ct", "ct"), ("labels", "labels")):
        (tmp_path / folder).mkdir()
        write_volume(small_subject.volume(kind), tmp_path / folder / "s0.nii.gz")
    write_volume(small_subject.volume("t1"), tmp_path / "t1" / "s1.nii.gz")
    cases = folder_cases(tmp_path, "T1", "CT")
    assert [c.name for c in cases] == ["s0", "s1"]
    assert cases[0].target.modality == "CT" and cases[0].labels.shape == small_subject.shape
    assert cases[1].target is None and cases[1].labels is None
    assert case_mask(cases[0]).sum() == (small_subject.labels > 0).sum()
    no_labels = EvalCase("x", cases[0].source, cases[0].target)
    assert case_mask(no_labels).mean() > 0.1


def _write_data(folder, subjects):
    """DATA/t1, DATA/ct, DATA/labels with one file per subject; returns their CT volumes."""
    cts = {}
    for subject in subjects:
        for kind, sub in (("t1", "t1"), ("ct", "ct"), ("labels", "labels")):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            write_volume(subject.volume(kind), folder / sub / f"{subject.name}.nii.gz")
        cts[subject.name] = subject.volume("ct")
    return cts


@pytest.mark.slow
def test_evaluate_translated_folders_mixed_with_a_model(tmp_path, setup):
    """Two folders on disk (+30 HU in the body as .nii.gz, exact copies as .mha) and a model in one table."""
    from napari_medtrans.phantom import generate_subject

    subjects = [generate_subject(seed, shape=(8, 48, 48)) for seed in (7, 8, 9)]
    cts = _write_data(tmp_path / "data", subjects)
    for folder, suffix, bias in (("biased", ".nii.gz", 30.0), ("exact", ".mha", 0.0)):
        (tmp_path / folder).mkdir()
        for subject in subjects:
            ct = cts[subject.name]
            write_volume(
                ct.with_array(ct.array + bias * (subject.labels > 0)), tmp_path / folder / f"{subject.name}{suffix}"
            )
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--model",
        str(setup["resnet"]),
        "--translated",
        str(tmp_path / "biased"),
        "--translated",
        str(tmp_path / "exact"),
        "--name",
        "biased",
        "theirs",
        "--data",
        str(tmp_path / "data"),
        "--scenarios",
        "GN0",
        "--segmenter",
        str(setup["segmenter"]),
        "--no-frd",
        "--device",
        "cpu",
        "--set-bootstrap",
        "5",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["models"]) == {"tiny-resnet", "biased", "theirs"}
    biased, exact = doc["models"]["biased"]["GN0"], doc["models"]["theirs"]["GN0"]
    assert set(biased["cases"]) == {s.name for s in subjects}
    assert biased["mae"] == pytest.approx(30, rel=1e-5) and biased["ci95"]["mae"] == pytest.approx([30, 30], rel=1e-5)
    assert exact["mae"] == 0 and exact["ssim"] == pytest.approx(1) and exact["hot_voxels_outside"] >= 0
    assert biased["ssim"] > 0.999 and "uncertainty_pcc" not in biased
    assert list(doc["models"]["biased"]) == ["GN0"]
    assert "| biased |" in (out / "report.md").read_text()


def test_evaluate_translated_needs_the_reference_grid_and_every_case(tmp_path, capsys):
    from napari_medtrans.phantom import generate_subject

    subject = generate_subject(7, shape=(8, 48, 48))
    cts = _write_data(tmp_path / "data", [subject])
    (tmp_path / "theirs").mkdir()
    moved = cts[subject.name]
    moved.spacing = (1.0, 1.0, 2.5)
    path = tmp_path / "theirs" / f"{subject.name}.nii.gz"
    write_volume(moved, path)
    base = [
        "evaluate",
        "--translated",
        str(tmp_path / "theirs"),
        "--data",
        str(tmp_path / "data"),
        "--no-frd",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*base, "--target", "CT"]) == 2
    err = capsys.readouterr().err
    assert "translated volume" in err and str(path) in err and f"{subject.name}.nii.gz" in err and "spacing" in err
    path.unlink()
    assert main([*base, "--target", "CT"]) == 2
    assert f"no translation of case(s) {subject.name}" in capsys.readouterr().err
    assert main(base) == 2
    assert "--target" in capsys.readouterr().err


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
def test_evaluate_progress_and_human_summary(tmp_path, setup, capsys, monkeypatch, terminal):
    """Rows counted on stderr (a bar on a terminal, plain lines elsewhere); a short summary on stdout."""
    import sys

    from test_progress import Terminal

    from napari_medtrans.phantom import generate_subject

    subject = generate_subject(7, shape=(6, 48, 48))
    cts = _write_data(tmp_path / "data", [subject])
    (tmp_path / "theirs").mkdir()
    write_volume(cts[subject.name], tmp_path / "theirs" / f"{subject.name}.nii.gz")
    if terminal:
        monkeypatch.setattr(sys, "stderr", Terminal())
    args = ["evaluate", "--translated", str(tmp_path / "theirs"), "--data", str(tmp_path / "data"), "--target", "CT"]
    args += ["--segmenter", str(setup["segmenter"]), "--no-frd", "--set-bootstrap", "0", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    captured = capsys.readouterr()
    err = sys.stderr.getvalue() if terminal else captured.err
    assert "theirs: scoring 1 translated volume(s)" in err
    if terminal:
        assert "evaluate: 100%" in err and "1/1" in err and "\r" in err
    else:
        assert "evaluate: 0/1 row\n" in err and "evaluate: 1/1 row (" in err and "\r" not in err
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    dice, ceiling = doc["models"]["theirs"]["GN0"]["dice_mean"], doc["reference"]["dice_mean"]
    lines = captured.out.splitlines()
    assert lines[:3] == [
        "1 row(s) evaluated; the full report is report.md",
        f"  theirs GN0  MAE 0.0 HU, SSIM 1.000, Dice {dice:.3f}",
        f"  Dice ceiling (the segmenter on the real images) {ceiling:.3f}",
    ]
    assert lines[3].startswith("wrote metrics.json, report.md, per_slice_mae.png") and len(lines) == 4
