"""Input check, training signature, model card and header-only metadata updates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_medtrans.checkpoint import (
    TranslatorMetadata,
    read_metadata,
    save_translator,
    update_metadata,
)
from napari_medtrans.cli import main
from napari_medtrans.input_check import (
    HISTOGRAM_BINS,
    build_signature,
    check_input,
    normalised_slices,
    slice_plane,
    training_geometry,
    volume_features,
)
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.model_card import PHANTOM_LIMIT, PHANTOM_ONLY_LIMIT, build_card, card_lines
from napari_medtrans.nets import build_network
from napari_medtrans.phantom import generate_cohort, generate_subject
from napari_medtrans.registry import resolve

SHAPE = (16, 64, 64)
GENERATOR = {"arch": "unet", "in_channels": 1, "out_channels": 1, "ngf": 4, "depth": 2}
DESCRIPTION = {"phantom": "paired", "subjects": 6, "seed": 0, "level": 3, "shape": list(SHAPE)}


@pytest.fixture(scope="module")
def metadata() -> TranslatorMetadata:
    """T1→CT metadata whose signature comes from six phantom T1 volumes of SHAPE."""
    md = TranslatorMetadata(
        name="checked",
        method="pix2pix",
        source="T1",
        target="CT",
        networks={"generator": GENERATOR},
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
        size=64,
        provenance={"data": DESCRIPTION},
    )
    pairs = generate_cohort(6, "paired", seed=0, shape=SHAPE)
    md.input_signature = build_signature(
        [normalised_slices(p.source.t1, mr_percentile(), 0) for p in pairs],
        geometry=training_geometry(DESCRIPTION, 0),
    )
    return md


@pytest.fixture(scope="module")
def held_out():
    return generate_subject(4242, shape=SHAPE)


def test_features_of_a_hand_made_volume():
    x = np.full((2, 8, 8), -1.0, np.float32)
    x[:, :, :4] = 0.5  # left half foreground at 0.5
    f = volume_features(x)
    assert f["foreground_fraction"] == 0.5
    assert f["mean"] == pytest.approx(0.5) and f["std"] == pytest.approx(0.0)
    expected = np.zeros(HISTOGRAM_BINS)
    expected[int((0.5 + 0.9) / (1.9 / HISTOGRAM_BINS))] = 1.0  # bin 11 of 16 over (-0.9, 1]
    assert f["histogram"] == pytest.approx(expected.tolist())
    # inner foreground columns 0..3 of rows 0..6: column 3 steps by 1.5 to the background, the rest is flat
    assert f["flat_fraction"] == pytest.approx(3 / 4)
    assert f["gradient"] == pytest.approx(1.5 / 4)
    assert f["noise"] == 0.0  # Immerkær's kernel is blind to an axis-aligned edge
    noisy = np.random.default_rng(0).normal(0.0, 0.1, (4, 64, 64)).astype(np.float32)
    assert volume_features(noisy)["noise"] == pytest.approx(0.1, rel=0.03)  # and measures white noise's σ


def test_slice_plane_follows_the_direction():
    identity = np.eye(3).ravel()
    assert [slice_plane(identity, a) for a in (0, 1, 2)] == ["axial", "coronal", "sagittal"]
    swapped = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float).ravel()  # image z runs along physical x
    assert slice_plane(swapped, 0) == "sagittal"


def test_training_geometry_of_the_phantom():
    geometry = training_geometry(DESCRIPTION, 0)
    assert geometry["spacing"] == pytest.approx([153.6 / 64, 153.6 / 64])
    assert geometry["slice_shape"] == [64, 64] and geometry["plane"] == "axial"
    assert training_geometry({"source": "/data/t1"}, 0) == {}


def test_held_out_t1_passes(metadata, held_out):
    verdict = check_input(held_out.volume("t1"), metadata)
    assert not verdict.ood, verdict.reasons
    assert 0 < verdict.score < 1


def test_ct_with_ct_header_is_refused_by_rule_and_by_image(metadata, held_out):
    verdict = check_input(held_out.volume("ct"), metadata)
    assert verdict.ood
    assert verdict.reasons[0] == "header says CT; this translator expects T1"
    assert check_input(held_out.ct, metadata).ood  # a bare array: image features alone


def test_generic_mr_header_passes_and_t2_header_does_not(metadata, held_out):
    as_mr = held_out.volume("t1")
    as_mr.modality = "MR"
    assert not check_input(as_mr, metadata).ood
    as_t2 = held_out.volume("t1")
    as_t2.modality = "T2"
    assert check_input(as_t2, metadata).reasons == ["header says T2; this translator expects T1"]


def test_label_map_and_wrong_axis_are_flagged(metadata, held_out):
    labels = check_input(held_out.labels.astype(np.float32), metadata)
    assert labels.ood and labels.distances["flat_fraction"] > 1
    v = held_out.volume("t1")
    swapped = Volume(v.array.transpose(1, 0, 2), (v.spacing[0], v.spacing[2], v.spacing[1]), v.origin)
    kept = check_input(swapped, metadata, resample=False)  # on its own grid (``--keep-spacing``)
    assert kept.ood and kept.distances["spacing"] > 1
    assert any(r.startswith("in-plane spacing 8 × 2.4 mm") for r in kept.reasons)
    seen = check_input(swapped, metadata)  # as the engine sees it: resampled to 1.2 mm, stretched along one axis
    assert seen.ood and seen.distances["spacing"] < 0.05 and seen.distances["anisotropy"] > 1
    assert seen.reasons[0].startswith("row/column gradient ratio")


def test_a_coarse_scan_is_checked_at_the_training_spacing(metadata, held_out, tmp_path, capsys):
    """The engine resamples a 2.4 mm scan to the training 1.2 mm: the check looks at that, so the spacing is no
    reason, but the blur of upsampling is (the translator sees a smoother image than it learnt on)."""
    v = held_out.volume("t1")
    z, rows, cols = v.array.shape
    array = v.array.reshape(z, rows // 2, 2, cols // 2, 2).mean((2, 4)).astype(np.float32)
    coarse = Volume(array, (2 * v.spacing[0], 2 * v.spacing[1], v.spacing[2]), v.origin, v.direction)
    seen, kept = check_input(coarse, metadata), check_input(coarse, metadata, resample=False)
    assert kept.distances["spacing"] == pytest.approx(1.0) and seen.distances["spacing"] < 0.01
    assert seen.distances["field_of_view"] < 0.01
    assert seen.ood and not any("spacing" in r for r in seen.reasons)
    assert {"gradient", "noise"} & {name for name, d in seen.distances.items() if d > 1}
    path = tmp_path / "coarse.nii.gz"
    write_volume(coarse, path)
    reasons = []
    for flags in ([], ["--keep-spacing"]):
        assert main(["check-input", str(path), "--model", "t1-ct-resnet", "--json", *flags]) == 1
        reasons.append(" ".join(json.loads(capsys.readouterr().out)[0]["reasons"]))
    side = f"{coarse.spacing[0]:.3g}"
    assert "in-plane spacing" not in reasons[0] and f"in-plane spacing {side} × {side} mm" in reasons[1]


def test_translator_without_signature_checks_the_header_only(metadata, held_out):
    bare = TranslatorMetadata(**{**metadata.__dict__, "input_signature": {}})
    assert check_input(held_out.volume("t1"), bare).score == 0.0
    assert check_input(held_out.volume("ct"), bare).ood


def test_card_from_metadata(metadata):
    card = build_card(
        {**metadata.to_dict(), "regime": "paired", "deviations": {"n_critic": "1, paper 5"}},
        held_out={"mae": 71.5, "ssim": 0.89, "other": 1.0},
        held_out_data="seeds 1000-1002",
        parameters=1234,
    )
    assert card["limits"][:2] == [PHANTOM_LIMIT, PHANTOM_ONLY_LIMIT]  # trained without augmentation for real scans
    augmented = {**metadata.to_dict(), "provenance": {**metadata.provenance, "augmentation": {"fov_crop": 0.3}}}
    assert PHANTOM_ONLY_LIMIT not in build_card(augmented)["limits"]
    assert card["held_out"] == {"data": "seeds 1000-1002", "metrics": {"MAE": 71.5, "SSIM": 0.89}}
    assert card["deviations"] == ["n_critic: 1, paper 5"] and card["training_size"] == 6
    lines = card_lines(card)
    assert "Deviations from the paper: n_critic: 1, paper 5" in lines
    assert "Held-out: MAE 71.5, SSIM 0.89 on seeds 1000-1002" in lines


def test_update_metadata_keeps_the_weights_and_is_idempotent(tmp_path, metadata):
    path = tmp_path / "t.safetensors"
    torch.manual_seed(0)
    plain = TranslatorMetadata(**{**metadata.__dict__, "input_signature": {}})
    save_translator(path, {"generator": build_network(GENERATOR)}, plain)
    before = load_file(str(path))
    updates = {"input_signature": metadata.input_signature, "card": {"summary": "x"}}
    update_metadata(path, updates)
    first = path.read_bytes()
    update_metadata(path, updates)
    assert path.read_bytes() == first
    after = load_file(str(path))
    assert all(torch.equal(before[k], after[k]) for k in before) and before.keys() == after.keys()
    assert read_metadata(path).input_signature == metadata.input_signature


def test_shipped_models_carry_signature_and_card():
    from napari_medtrans.shipped import shipped_dir

    for path in sorted((shipped_dir() / "models").glob("*.safetensors")):
        md = read_metadata(path)
        in_plane = 153.6 / md.provenance["data"]["shape"][-1]  # the phantom's field of view over its columns
        assert md.input_signature["geometry"]["spacing"] == pytest.approx([in_plane, in_plane]), path
        assert md.card["limits"][0] == PHANTOM_LIMIT and md.card["held_out"]["metrics"]["MAE"] > 0
        assert (PHANTOM_ONLY_LIMIT in md.card["limits"]) == (path.stem != "t1-ct-regression"), path


def test_check_input_cli_json(tmp_path, capsys, held_out):
    ct, t1 = tmp_path / "ct.nii.gz", tmp_path / "t1.nii.gz"
    write_volume(held_out.volume("ct"), ct)
    write_volume(held_out.volume("t1"), t1)
    assert main(["check-input", str(ct), str(t1), "--model", "t1-ct-resnet", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [set(v) for v in out] == [{"file", "ood", "score", "reasons"}] * 2
    assert out[0]["file"] == str(ct) and out[0]["ood"] is True
    assert out[0]["reasons"][0] == "header says CT; this translator expects T1"


def test_translate_strict_refuses_ct_and_warns_otherwise(tmp_path, capsys, held_out):
    ct = tmp_path / "ct.nii.gz"
    write_volume(held_out.volume("ct"), ct)
    t1 = tmp_path / "t1.nii.gz"
    write_volume(generate_subject(4242).volume("t1"), t1)  # on the training grid: passes
    code = main(["translate", str(t1), str(ct), "--model", "t1-ct-resnet", "--out", str(tmp_path / "o"), "--strict"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"refused by --strict: {ct}: header says CT; this translator expects T1" in err
    assert not (tmp_path / "o").exists()  # not even the T1 that passed
    assert main(["translate", str(ct), "--model", "t1-ct-resnet", "--out", str(tmp_path / "o")]) == 0
    assert "WARNING: input unlike the training data" in capsys.readouterr().err


def test_models_card_cli(capsys):
    assert main(["models", "--card", "t1-ct-uapi-supervised"]) == 0
    out = capsys.readouterr().out
    assert "Limits: research use only; trained on a procedural phantom" in out


@pytest.mark.slow
def test_trainer_export_writes_signature_and_card(tmp_path):
    from _training_helpers import tiny_config

    from training.loop import train

    cfg = tiny_config("pix2pix", tmp_path / "run")
    assert train(cfg) == 0
    md = read_metadata(tmp_path / "run" / "translator.safetensors")
    assert md.input_signature["geometry"]["slice_shape"] == [32, 32]
    assert md.input_signature["volumes"] >= 1
    assert md.card["training_data"].startswith("procedural phantom heads")
    assert md.card["held_out"]["metrics"]["MAE"] > 0


def test_real_t1_from_nibabel_is_unlike_the_phantom():
    nibabel_testing = pytest.importorskip("nibabel.testing")
    volume = read_volume(Path(nibabel_testing.data_path) / "anatomical.nii")  # a real 2-mm T1 crop, no modality
    verdict = check_input(volume, read_metadata(resolve("t1-ct-resnet")))
    assert verdict.ood and verdict.score > 5
    assert "field of view 82 × 66 mm, trained on 154 × 154 mm" in verdict.reasons
