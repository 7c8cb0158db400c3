"""Pseudo labels end to end on tiny phantoms: both strategies beat the baselines; CLI files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.cli import pseudolabel as pseudolabel_cli
from napari_medtrans.io import read_volume, write_volume
from napari_medtrans.label_names import read_label_names
from napari_medtrans.metrics import dice_per_label, mean_dice

pytestmark = pytest.mark.slow  # trains a translator and a segmenter

pl = pytest.importorskip("training.pseudolabels")

SHAPE = (12, 64, 64)
SEGMENTER = {"iterations": 240, "batch_size": 8, "seed": 0, "device": "cpu", "features": 8}


def pseudolabel_folders(root: Path) -> dict[str, Path]:
    """The source-image, source-label and target-image folders of a folder-mode pseudolabel run."""
    return {k: root / k for k in ("src", "src_lab", "tgt")}


def pseudolabel_folder_argv(translator: Path, folders: dict[str, Path], out: Path) -> list[str]:
    """``medtrans pseudolabel`` (tutorship) on the folders of :func:`pseudolabel_folders`."""
    return [
        "pseudolabel",
        "--strategy",
        "tutorship",
        "--translator",
        str(translator),
        "--source-images",
        str(folders["src"]),
        "--source-labels",
        str(folders["src_lab"]),
        "--target-images",
        str(folders["tgt"]),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def translator_path(tmp_path_factory):
    """A tiny pix2pix T1→T2 translator trained on paired phantoms (seeds 0–3)."""
    from training.config import DataConfig, TrainConfig
    from training.loop import train

    run_dir = tmp_path_factory.mktemp("translator")
    cfg = TrainConfig(
        method="pix2pix",
        run_dir=str(run_dir),
        iterations=60,
        batch_size=4,
        precision="fp32",
        device="cpu",
        log_every=30,
        checkpoint_every=60,
        preview_every=60,
        data=DataConfig(
            phantom="paired",
            phantom_subjects=4,
            phantom_depth=SHAPE[0],
            size=SHAPE[1],
            source_modality="T1",
            target_modality="T2",
        ),
        model={"ngf": 8, "n_blocks": 1, "ndf": 8, "n_layers_d": 2},
    )
    assert train(cfg) == 0
    return run_dir / "translator.safetensors"


@pytest.fixture(scope="module")
def translator(translator_path):
    from napari_medtrans.inference import load_translator

    return load_translator(translator_path, device="cpu")


@pytest.mark.parametrize("strategy", ["tutorship", "adaptation"])
def test_strategy_beats_empty_and_threshold(translator, strategy):
    # tutorship labels T2 targets from labelled T1; adaptation labels T1 targets from labelled T2
    source, target = pl.STRATEGIES[strategy].modalities(translator)
    assert (source, target) == (("T1", "T2") if strategy == "tutorship" else ("T2", "T1"))
    # coarse classes (soft tissue, bone, brain, CSF) so that a tiny segmenter learns them quickly
    sources, targets, names = pl.phantom_inputs(source, target, n_source=2, n_target=1, shape=SHAPE, coarse=True)
    results = pl.run(strategy, translator, sources, targets, names, pl.SegmenterSettings(**SEGMENTER))

    (result,), (tgt,) = results, targets
    tissues = {k: v for k, v in names.items() if k}
    threshold = mean_dice(dice_per_label(pl.threshold_baseline(tgt.image.array, sources), tgt.truth, tissues))
    empty = mean_dice(dice_per_label(np.zeros_like(tgt.truth), tgt.truth, tissues))
    assert empty == 0.0
    assert result.mean_dice > max(threshold + 0.1, 0.2), (result.mean_dice, threshold)
    assert result.labels.shape == tgt.truth.shape and result.labels.dtype == np.uint8
    assert result.confidence.min() >= 0.0 and result.confidence.max() <= 1.0
    assert result.slice_confidence.shape == (SHAPE[0],)


def test_wrong_direction_is_refused(translator):
    sources, targets, names = pl.phantom_inputs("T1", "T2", n_source=1, n_target=1, shape=SHAPE)
    with pytest.raises(pl.PseudoLabelError, match="needs T2 labelled images and T1 targets"):
        pl.run("adaptation", translator, sources, targets, names)


def test_cli_phantom_writes_labels_confidence_summary(translator_path, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "pseudolabel",
        "--strategy",
        "tutorship",
        "--translator",
        str(translator_path),
        "--phantom",
        "--phantom-sources",
        "1",
        "--phantom-targets",
        "1",
        "--phantom-shape",
        *map(str, SHAPE),
        "--phantom-seed",
        "300",
        "--iterations",
        "5",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == "tutorship" and summary["target_modality"] == "T2"
    (case,) = summary["cases"]
    image = read_volume(out / case["image"])
    labels, confidence = read_volume(out / case["labels"]), read_volume(out / case["confidence"])
    for volume in (labels, confidence):
        assert volume.array.shape == image.array.shape
        np.testing.assert_allclose(volume.spacing, image.spacing)
        np.testing.assert_allclose(volume.direction, image.direction)
    assert len(case["slice_confidence"]) == SHAPE[0] and case["mean_dice"] is not None
    assert (
        case["slice_confidence"] == case["slice_scores"]["volume_impact"] and summary["queue_score"] == "volume_impact"
    )
    assert "grey matter" in case["dice"] and len(case["slice_dice"]) == SHAPE[0]
    assert "grey matter" in read_label_names(out / case["labels"]).values()  # the Review widget's legend
    assert 0 <= case["voxel_auroc"] <= 1 and set(case["slice_spearman"]) == {"mean", "expected_dice", "volume_impact"}
    assert summary["confidence"]["voxel_auroc"] == case["voxel_auroc"]
    assert summary["ceiling"]["segmenter"] == "segmenter-t2" and 0 < summary["ceiling"]["mean_dice"] <= 1
    assert summary["ratio_to_ceiling"] == pytest.approx(summary["mean_dice"] / summary["ceiling"]["mean_dice"])
    assert summary["segmenter"]["iterations"] == 5 and summary["quality"] == "fast"
    assert summary["phantom_seeds"] == {"sources": [300], "targets": [301]}
    captured = capsys.readouterr()  # a summary for a person; plain progress lines (no terminal here)
    assert f"{case['name']}  mean Dice {case['mean_dice']:.3f}, mean confidence" in captured.out
    assert f"mean Dice {summary['mean_dice']:.3f} vs ceiling {summary['ceiling']['mean_dice']:.3f}" in captured.out
    assert "voxel AUROC for 'label wrong'" in captured.out and "{" not in captured.out
    assert "training the T2 segmenter: 5/5 it (" in captured.err and "labelling the targets: 1/1 volume" in captured.err
    assert "\r" not in captured.err
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    figures = json.loads(json.dumps(pseudolabel_cli.figures(summary)))  # what --json prints, for machines
    assert figures[case["name"]] == case["mean_dice"] and figures["ceiling"] == summary["ceiling"]["mean_dice"]


def test_cli_folders_match_names_and_report_errors(translator_path, tmp_path, small_subject, capsys):
    folders = pseudolabel_folders(tmp_path)
    write_volume(small_subject.volume("t1"), folders["src"] / "a.nii.gz")
    write_volume(small_subject.volume("labels"), folders["src_lab"] / "b.nii.gz")
    write_volume(small_subject.volume("t2"), folders["tgt"] / "c.nii.gz")
    argv = pseudolabel_folder_argv(translator_path, folders, tmp_path / "out")
    assert main(argv) == 2
    assert "do not match by name: a, b" in capsys.readouterr().err
    assert main(argv[:5] + ["--phantom", *argv[5:]]) == 2
    assert "either --phantom or all of" in capsys.readouterr().err
