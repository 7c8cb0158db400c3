"""Segmenter: train on tiny data, save/load round trip, clear errors, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_medtrans.checkpoint import CheckpointError
from napari_medtrans.cli import main
from napari_medtrans.intensity import ct_window
from napari_medtrans.nets import build_network
from napari_medtrans.phantom import TISSUES
from napari_medtrans.segmenter import (
    has_signal,
    load_segmenter,
    read_segmenter_metadata,
    segmenter_input,
    stack_neighbours,
)
from training.segmenter import ClassBalancedCrops, _augment, dice_ce_loss, train_segmenter

LOSSES: list[float] = []


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_subject):
    path = tmp_path_factory.mktemp("seg") / "seg-ct.safetensors"
    segmenter = train_segmenter(
        [small_subject.ct],
        [small_subject.labels],
        modality="CT",
        label_names=TISSUES,
        path=path,
        iterations=30,
        batch_size=4,
        crop=32,
        features=8,
        device="cpu",
        progress=lambda _, loss: LOSSES.append(loss),
    )
    return segmenter, path


def test_dice_ce_loss_hand_computed():
    # pixel a: p = (0.5, 0.5), truth 0; pixel b: p = (0.25, 0.75), truth 1
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3)]]]])
    # CE = (ln 2 + ln 4/3) / 2; Dice(class 1) = 2·0.75 / (0.5 + 0.75 + 1) = 2/3; background is not in the Dice
    expected = (math.log(2) + math.log(4 / 3)) / 2 + 1 / 3
    assert dice_ce_loss(logits, torch.tensor([[[0, 1]]]), smooth=0).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.823748, abs=1e-6)
    # pixel a ignored: CE = ln 4/3; Dice = 1.5 / (0.75 + 1) = 6/7
    ignored = dice_ce_loss(logits, torch.tensor([[[255, 1]]]), ignore_label=255, smooth=0).item()
    assert ignored == pytest.approx(math.log(4 / 3) + 1 / 7, abs=1e-6)


def test_class_balanced_crops_draw_every_class_equally():
    labels = torch.zeros(2, 32, 32, dtype=torch.int64)
    labels[1, 10, 10] = 1  # one voxel of class 1 among 2047 of class 0
    crops = ClassBalancedCrops(labels, 16, torch.Generator().manual_seed(0))
    centres = crops.centres(2000)
    share = (centres == torch.tensor([1, 10, 10])).all(1).float().mean().item()
    assert share == pytest.approx(0.5, abs=0.04)
    x, y = crops(labels[:, None].float(), labels, 8)
    assert x.shape == (8, 1, 16, 16) and y.shape == (8, 16, 16)


def test_stack_neighbours_repeats_edges():
    volume = np.arange(4)[:, None, None] * np.ones((1, 2, 2))
    stacked = stack_neighbours(volume, 1)
    assert stacked.shape == (4, 3, 2, 2)
    np.testing.assert_array_equal(stacked[:, :, 0, 0], [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]])


@pytest.mark.slow  # uses the trained module fixture
def test_shipped_one_channel_file_still_loads(tmp_path, trained, small_subject):
    segmenter, _ = trained
    spec = {"arch": "seg_unet", "in_channels": 1, "n_classes": 10, "features": 4, "depth": 2}
    header = segmenter.metadata.to_dict() | {"network": spec}
    del header["context"]  # a file written before 2.5-D input
    model = build_network(spec)
    save_file(
        {f"segmenter.{k}": v.contiguous() for k, v in model.state_dict().items()},
        str(tmp_path / "old.safetensors"),
        metadata={"medtrans": json.dumps(header)},
    )
    old = load_segmenter(tmp_path / "old.safetensors")
    assert old.metadata.context == 0
    assert old.segment(small_subject.ct).labels.shape == small_subject.ct.shape
    header["context"] = 2
    save_file(
        {f"segmenter.{k}": v.contiguous() for k, v in model.state_dict().items()},
        str(tmp_path / "bad.safetensors"),
        metadata={"medtrans": json.dumps(header)},
    )
    with pytest.raises(CheckpointError, match="context 2 needs 5 input channels, the network has 1"):
        load_segmenter(tmp_path / "bad.safetensors")


@pytest.mark.slow  # trains a segmenter (module fixture)
def test_train_segment_and_round_trip(trained, small_subject):
    segmenter, path = trained
    result = segmenter.segment(small_subject.ct)
    assert result.labels.shape == small_subject.ct.shape and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (len(TISSUES), *small_subject.ct.shape)
    np.testing.assert_allclose(result.probabilities.sum(0), 1, atol=1e-5)
    assert np.mean(LOSSES[-10:]) < np.mean(LOSSES[:10])  # the loss falls in 30 steps
    assert segmenter.metadata.context == 1 and segmenter.metadata.network["in_channels"] == 3
    assert segmenter.metadata.intensity["low"] == -200.0  # the narrow CT window
    flipped = segmenter.segment(small_subject.ct, flip=True)
    assert flipped.flip_disagreement.shape == small_subject.ct.shape
    assert flipped.flip_disagreement.min() >= 0 and flipped.flip_disagreement.max() <= 1
    loaded = load_segmenter(path)
    assert loaded.metadata.labels == TISSUES and loaded.metadata.modality == "CT"
    np.testing.assert_array_equal(loaded.segment(small_subject.ct).labels, result.labels)
    assert loaded.segment(small_subject.ct[3]).labels.shape == small_subject.ct[3].shape  # a 2D image


def test_has_signal_finds_constant_stacks():
    stacks = np.full((3, 3, 4, 4), -1.0, np.float32)
    stacks[1, 0, 2, 2] = 0.5  # a neighbour slice with tissue
    assert has_signal(stacks).tolist() == [False, True, False]


@pytest.mark.slow  # trains a segmenter (module fixture)
def test_slices_without_signal_are_background(trained, small_subject):
    segmenter, _ = trained
    ct = small_subject.ct.copy()
    ct[-3:] = -1000.0  # air above the head: clipped to a constant by the CT window
    result = segmenter.segment(ct, flip=True)
    assert (result.labels[-2:] == 0).all() and (result.probabilities[0, -2:] == 1).all()
    assert (result.flip_disagreement[-2:] == 0).all()
    assert (result.labels[:-3] > 0).any()


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
        train_segmenter(
            [small_subject.ct], [small_subject.labels[:2]], modality="CT", label_names=TISSUES, iterations=1
        )


@pytest.mark.slow  # trains a segmenter
def test_cli_train_segmenter_from_files(tmp_path, small_subject, capsys):
    from napari_medtrans.io import write_volume

    image = write_volume(small_subject.volume("t2"), tmp_path / "t2.nii.gz")
    labels = write_volume(small_subject.volume("labels"), tmp_path / "labels.nii.gz")
    out = tmp_path / "seg-t2.safetensors"
    args = [
        "train-segmenter",
        "--modality",
        "T2",
        "--images",
        str(image),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--iterations",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert "training the T2 segmenter: 2/2 it (" in capsys.readouterr().err  # plain progress lines (no terminal)
    metadata = read_segmenter_metadata(out)
    assert metadata.modality == "T2" and metadata.labels[0] == "background" and metadata.provenance["iterations"] == 2
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    tuned = tmp_path / "seg-t2-tuned.safetensors"
    assert main([*args[:-8], "--out", str(tuned), *args[-6:], "--init", str(out), "--lr", "1e-4"]) == 0
    assert read_segmenter_metadata(tuned).provenance["init"] == "seg-t2"
    assert read_segmenter_metadata(tuned).provenance["lr"] == 1e-4
    jittered = [*args[:-8], "--out", str(tmp_path / "j.safetensors"), *args[-6:], "--tissue-jitter", "0.05"]
    assert main([*jittered, "--class-weight", "2", "3"]) == 0
    provenance = read_segmenter_metadata(tmp_path / "j.safetensors").provenance
    assert provenance["tissue_jitter"] == 0.05 and provenance["class_weights"] == {"2": 3.0}
    assert (
        main([*jittered, "--overwrite", "--class-weight", "two", "3"]) == 2
        and "--class-weight" in capsys.readouterr().err
    )
    assert (
        main([*jittered, "--overwrite", "--window", "0", "80"]) == 2
        and "further windows need CT" in capsys.readouterr().err
    )
    bad = [*args[:-8], "--out", str(tmp_path / "y.safetensors"), *args[-6:], "--init", str(image)]
    assert main(bad) == 2 and "--init" in capsys.readouterr().err
    assert main(["train-segmenter", "--modality", "CT", "--images", str(image), "--out", str(tmp_path / "x")]) == 2


def _tune(subject, init, **changes):
    """One step at learning rate 0 from ``init`` on ``subject``'s CT (``changes``: other train_segmenter options)."""
    options = dict(iterations=1, batch_size=2, crop=32, features=8, lr=0.0, init=init, device="cpu") | changes
    return train_segmenter([subject.ct], [subject.labels], modality="CT", label_names=TISSUES, **options)


def test_training_starts_from_init_weights(trained, small_subject):
    segmenter, _ = trained
    again = _tune(small_subject, segmenter)
    for (name, value), other in zip(segmenter.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(value, other), name
    assert again.metadata.provenance["init"] == segmenter.metadata.name
    with pytest.raises(ValueError, match="cannot start from segmenter-ct: its network"):
        _tune(small_subject, segmenter, features=4)


def test_segmenter_input_adds_a_stack_per_window():
    volume = np.array([[[-1000.0, 0.0]], [[40.0, 500.0]]])  # (z 2, y 1, x 2) HU
    stacks = segmenter_input(volume, ct_window(-200, 800), 1, [(-20, 100)])
    assert stacks.shape == (2, 6, 1, 2)
    np.testing.assert_allclose(stacks[1, 1, 0], [-1 + 240 / 500, -1 + 700 / 500], rtol=1e-6)  # the slice, main window
    np.testing.assert_allclose(stacks[1, 4, 0], [-1 + 60 / 60, 1], atol=1e-6)  # the slice, brain window
    np.testing.assert_allclose(stacks[0, 3, 0], [-1, -1 + 20 / 60], rtol=1e-6)  # its lower neighbour (edge repeated)


def test_tissue_jitter_shifts_each_label_by_one_offset_per_sample():
    gen = torch.Generator().manual_seed(0)
    y = torch.zeros(32, 16, 16, dtype=torch.int64)
    y[:, :, 8:] = 1  # left and right halves: a flip swaps them, each half stays one label
    x, y = _augment(torch.zeros(32, 2, 16, 16), y, gen, 0.05, 2, torch.tensor([1.0, 4.0]))
    half = [torch.stack([x[i, :, y[i] == k].mean(-1) for i in range(32)]) for k in (0, 1)]  # (32, channels)
    contrast = half[1] - half[0]
    assert contrast[:, 0].abs().mean() > 0.02  # the two tissues moved apart (σ √2·0.05)
    np.testing.assert_allclose(contrast[:, 1], 4 * contrast[:, 0], atol=0.01)  # a 4× narrower window: 4× the shift
    assert max(x[i, 0, y[i] == 0].std() for i in range(32)) < 0.011  # within a tissue: only the noise
    plain, _ = _augment(torch.zeros(32, 2, 16, 16), y, torch.Generator().manual_seed(0))
    assert max(plain[i, 0].std() for i in range(32)) < 0.011


def test_init_without_a_window_is_widened_with_zero_weights(trained, small_subject):
    segmenter, _ = trained
    widened = _tune(small_subject, segmenter, windows=[(-20, 100)])
    assert widened.metadata.windows == [[-20.0, 100.0]] and widened.metadata.network["in_channels"] == 6
    np.testing.assert_allclose(
        widened.segment(small_subject.ct).probabilities, segmenter.segment(small_subject.ct).probabilities, atol=1e-5
    )
    with pytest.raises(ValueError, match="further windows need CT"):
        train_segmenter(
            [small_subject.t1], [small_subject.labels], modality="T1", label_names=TISSUES, windows=[(0, 1)]
        )
    with pytest.raises(ValueError, match=r"cannot start from .*windows \[\(-20.0, 100.0\)\]"):
        _tune(small_subject, widened)


def test_window_count_must_match_input_channels(tmp_path, trained):
    _, path = trained
    metadata = read_segmenter_metadata(path).to_dict()
    with pytest.raises(CheckpointError, match="needs 6 input channels with 1 further windows, the network has 3"):
        type(read_segmenter_metadata(path)).from_dict({**metadata, "windows": [[-20, 100]]})
