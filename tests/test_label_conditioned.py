"""Label-conditioned translators (SPADE): the engine appends the one-hot label map, ``medtrans translate
--labels`` passes it (or says why not), and ``medtrans models`` says a translator needs it."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_inference import make_translator

from napari_medtrans.cli import main
from napari_medtrans.inference import load_translator
from napari_medtrans.io import read_volume, write_volume

SPADE_SPEC = {"arch": "spade", "out_channels": 1, "label_classes": 10, "ngf": 2, "n_up": 3, "hidden": 8}


@pytest.fixture()
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(folder))
    make_translator(folder / "tiny-spade.safetensors", generator=SPADE_SPEC)
    return folder


@pytest.fixture()
def files(tmp_path, small_subject):
    """(T1 file, its label file) of three slices."""
    t1, labels = (small_subject.volume(kind) for kind in ("t1", "labels"))
    t1, labels = t1.with_array(t1.array[:3]), labels.with_array(labels.array[:3])
    return write_volume(t1, tmp_path / "s_t1.nii.gz"), write_volume(labels, tmp_path / "s_labels.nii.gz")


def test_engine_appends_one_hot_labels_and_output_follows_them(models_dir, small_subject):
    translator = load_translator("tiny-spade", device="cpu")
    assert translator.metadata.label_classes == 10
    t1, labels = small_subject.t1[:3], small_subject.labels[:3]
    prepared = translator.prepare(t1, labels=labels)
    x = prepared.network_input(0, 2)
    assert x.shape == (2, 1 + 10, *t1.shape[1:])
    assert np.array_equal(x[:, 1:].argmax(1).numpy(), labels[:2]) and (x[:, 1:].sum(1) == 1).all()
    image = translator.translate_volume(t1, labels=labels).image
    assert image.shape == t1.shape and np.isfinite(image).all()
    # the paper's SPADE draws from the labels alone: another image with the same labels gives the same CT
    assert np.allclose(translator.translate_volume(t1[::-1].copy(), labels=labels).image, image, atol=1e-3)
    with pytest.raises(ValueError, match="conditioned on the input's label map"):
        translator.translate_volume(t1)
    with pytest.raises(ValueError, match="label map shape"):
        translator.translate_volume(t1, labels=labels[:2])
    with pytest.raises(ValueError, match=r"label values must lie in \[0, 10\)"):
        translator.translate_volume(t1, labels=labels + 10)


def test_cli_translate_with_labels(tmp_path, models_dir, files):
    t1_file, labels_file = files
    out = tmp_path / "out"
    assert (
        main(["translate", str(t1_file), "--model", "tiny-spade", "--out", str(out), "--labels", str(labels_file)]) == 0
    )
    ct = read_volume(out / "s_t1_CT.nii.gz")
    assert ct.array.shape == read_volume(t1_file).array.shape


def test_cli_translate_without_labels_or_on_another_grid_says_why(tmp_path, models_dir, files, capsys):
    t1_file, labels_file = files
    out = tmp_path / "out"
    assert main(["translate", str(t1_file), "--model", "tiny-spade", "--out", str(out)]) == 2
    assert "--labels FILE" in capsys.readouterr().err
    moved = read_volume(labels_file)
    moved = write_volume(replace(moved, origin=tuple(o + 5 for o in moved.origin)), tmp_path / "moved_labels.nii.gz")
    assert main(["translate", str(t1_file), "--model", "tiny-spade", "--out", str(out), "--labels", str(moved)]) == 2
    err = capsys.readouterr().err
    assert str(moved) in err and str(t1_file) in err and "origin" in err
    assert not list(out.glob("*.nii.gz"))  # claimed placeholders were released


def test_models_says_which_translator_needs_labels(models_dir, capsys):
    make_translator(models_dir / "tiny-plain.safetensors")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "INPUTS" in lines[0]
    assert "image+labels(10)" in next(line for line in lines if line.startswith("tiny-spade"))
    assert "image+labels" not in next(line for line in lines if line.startswith("tiny-plain"))
    assert main(["models", "--json"]) == 0
    found = {entry["name"]: entry["label_classes"] for entry in json.loads(capsys.readouterr().out)}
    assert found["tiny-spade"] == 10 and found["tiny-plain"] == 0


def test_evaluation_gives_a_label_conditioned_translator_the_source_labels(models_dir, small_subject):
    """``evaluate`` passes each case's label map to SPADE: its output is the engine's, with those labels."""
    from napari_medtrans import evaluation

    translator = load_translator("tiny-spade", device="cpu")
    case = evaluation.EvalCase(
        "s", small_subject.volume("t1"), small_subject.volume("ct"), np.asarray(small_subject.labels)
    )
    result = evaluation.evaluate({"spade": translator}, [case], evaluation.EvalSettings(scenarios=["GN0"], frd=False))
    expected = translator.translate_volume(case.source, labels=case.labels).image
    mask = case.labels > 0
    assert result.models["spade"]["GN0"]["mae"] == pytest.approx(
        float(np.abs(expected[mask] - case.target.array[mask]).mean()), rel=1e-5
    )
