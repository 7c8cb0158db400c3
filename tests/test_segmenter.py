"""Segmenter: train on tiny data, save/load round trip, clear errors, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from napari_medtrans.checkpoint import CheckpointError
from napari_medtrans.cli import main
from napari_medtrans.phantom import TISSUES
from napari_medtrans.segmenter import load_segmenter, read_segmenter_metadata
from training.segmenter import train_segmenter


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_subject):
    path = tmp_path_factory.mktemp("seg") / "seg-ct.safetensors"
    segmenter = train_segmenter([small_subject.ct], [small_subject.labels], modality="CT", label_names=TISSUES,
                                path=path, iterations=30, batch_size=4, crop=32, device="cpu")
    return segmenter, path


@pytest.mark.slow  # trains a segmenter (module fixture)
def test_train_segment_and_round_trip(trained, small_subject):
    segmenter, path = trained
    result = segmenter.segment(small_subject.ct)
    assert result.labels.shape == small_subject.ct.shape and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (len(TISSUES), *small_subject.ct.shape)
    np.testing.assert_allclose(result.probabilities.sum(0), 1, atol=1e-5)
    assert (result.labels == 0).mean() > 0.5  # air at least is learnt in 30 steps
    loaded = load_segmenter(path)
    assert loaded.metadata.labels == TISSUES and loaded.metadata.modality == "CT"
    np.testing.assert_array_equal(loaded.segment(small_subject.ct).labels, result.labels)
    assert loaded.segment(small_subject.ct[3]).labels.shape == small_subject.ct[3].shape  # a 2D image


@pytest.mark.slow  # trains a segmenter (module fixture)
def test_segment_accepts_volume_and_other_axis(trained, small_subject):
    segmenter, _ = trained
    volume = small_subject.volume("ct")
    assert segmenter.segment(volume).labels.shape == volume.array.shape


@pytest.mark.slow  # trains a segmenter (module fixture)
def test_refuses_bad_files(tmp_path, trained):
    _, path = trained
    with pytest.raises(CheckpointError, match="no such segmenter"):
        load_segmenter(tmp_path / "missing.safetensors")
    tensors = load_file(str(path))
    header = read_segmenter_metadata(path).to_dict()
    name = next(iter(tensors))
    tensors[name] = tensors[name][..., :1].contiguous()
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"medtrans": json.dumps(header)})
    with pytest.raises(CheckpointError, match="do not match"):
        load_segmenter(tmp_path / "bad.safetensors")
    save_file(tensors, str(tmp_path / "translator.safetensors"), metadata={"medtrans": json.dumps({"name": "x"})})
    with pytest.raises(CheckpointError, match="not 'segmenter'"):
        load_segmenter(tmp_path / "translator.safetensors")


def test_train_refuses_mismatched_inputs(small_subject):
    with pytest.raises(ValueError, match="as many label maps"):
        train_segmenter([small_subject.ct], [], modality="CT", label_names=TISSUES, iterations=1)
    with pytest.raises(ValueError, match="differ in shape"):
        train_segmenter([small_subject.ct], [small_subject.labels[:2]], modality="CT", label_names=TISSUES,
                        iterations=1)


@pytest.mark.slow  # trains a segmenter
def test_cli_train_segmenter_from_files(tmp_path, small_subject, capsys):
    from napari_medtrans.io import write_volume

    image = write_volume(small_subject.volume("t2"), tmp_path / "t2.nii.gz")
    labels = write_volume(small_subject.volume("labels"), tmp_path / "labels.nii.gz")
    out = tmp_path / "seg-t2.safetensors"
    args = ["train-segmenter", "--modality", "T2", "--images", str(image), "--labels", str(labels),
            "--out", str(out), "--iterations", "2", "--batch-size", "2", "--device", "cpu"]
    assert main(args) == 0
    metadata = read_segmenter_metadata(out)
    assert metadata.modality == "T2" and metadata.labels[0] == "background" and metadata.provenance["iterations"] == 2
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert main(["train-segmenter", "--modality", "CT", "--images", str(image), "--out", str(tmp_path / "x")]) == 2
