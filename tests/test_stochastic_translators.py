"""Stochastic translators (SynDiff, UNSB): seeded samples, their spread as uncertainty,
the number of steps, ``medtrans translate --uncertainty samples`` and pseudo labels through SynDiff."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny_translators import STOCHASTIC, SYNDIFF, UNSB, make_stochastic_translators

from napari_medtrans.checkpoint import read_metadata
from napari_medtrans.cli import main
from napari_medtrans.inference import load_translator
from napari_medtrans.io import read_volume, write_volume
from napari_medtrans.phantom import generate_subject


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_stochastic_translators(tmp_path_factory.mktemp("stochastic"))


@pytest.fixture(scope="module")
def t1():
    return generate_subject(7, shape=(4, 32, 32)).volume("t1")


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_metadata_declares_steps_and_engine_sees_them(folder, name):
    spec = read_metadata(folder / f"{name}.safetensors").networks["generator"]
    translator = load_translator(folder / f"{name}.safetensors", device="cpu")
    assert spec["stochastic"] is True and translator.stochastic
    assert translator.steps == spec["steps"] == translator.max_steps


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_one_seed_reproduces_two_seeds_differ(folder, name, t1):
    translator = load_translator(folder / f"{name}.safetensors", device="cpu")
    first = translator.translate_volume(t1, seed=1, batch_size=4).image
    again = translator.translate_volume(t1, seed=1, batch_size=1).image  # batching does not change the noise
    other = translator.translate_volume(t1, seed=2, batch_size=4).image
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1.0  # HU


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_samples_mean_is_image_and_spread_is_uncertainty(folder, name, t1):
    translator = load_translator(folder / f"{name}.safetensors", device="cpu")
    samples = [translator.translate_volume(t1, seed=3).image]  # sample 0 of seed 3
    result = translator.translate_volume(t1, seed=3, uncertainty="samples", mc_samples=3)
    assert result.uncertainty.shape == t1.array.shape and (result.uncertainty >= 0).all()
    assert result.uncertainty.mean() > 1.0  # HU: the samples differ
    single = translator.translate_volume(t1, seed=3, uncertainty="samples", mc_samples=1)
    np.testing.assert_array_equal(single.image, samples[0])
    np.testing.assert_array_equal(single.uncertainty, 0.0)
    assert not np.array_equal(result.image, samples[0])  # the mean of three, not the first


def test_steps_change_the_sampler_and_are_restored(folder, t1):
    translator = load_translator(folder / f"{SYNDIFF}.safetensors", device="cpu")
    full = translator.translate_volume(t1, seed=0).image
    fewer = translator.translate_volume(t1, seed=0, steps=2).image
    assert not np.array_equal(full, fewer) and translator.generator.steps == 4
    np.testing.assert_array_equal(translator.translate_volume(t1, seed=0).image, full)
    with pytest.raises(ValueError, match="steps must lie in 1..4"):
        translator.translate_volume(t1, steps=5)


def test_slice_translation_is_cached_per_seed(folder, t1):
    translator = load_translator(folder / f"{UNSB}.safetensors", device="cpu")
    prepared = translator.prepare(t1.array)
    a = translator.translate_slice(prepared, 1, seed=4)
    assert translator.translate_slice(prepared, 1, seed=4) is a
    b = translator.translate_slice(prepared, 1, seed=5)
    assert not np.array_equal(a.image, b.image)
    volume = translator.translate_volume(t1, seed=4).image
    np.testing.assert_allclose(a.image, volume[1], atol=1e-3)  # the same noise slice-wise and volume-wise


def test_samples_refused_for_a_deterministic_translator(tmp_path, t1):
    from test_inference import make_translator

    translator = load_translator(make_translator(tmp_path / "det.safetensors"), device="cpu")
    assert not translator.stochastic and translator.steps is None
    with pytest.raises(ValueError, match="deterministic"):
        translator.translate_volume(t1, uncertainty="samples")


def test_cli_translate_writes_sample_spread(folder, tmp_path, t1, capsys):
    source = write_volume(t1, tmp_path / "s_t1.nii.gz")
    out = tmp_path / "out"
    model = str(folder / f"{SYNDIFF}.safetensors")
    argv = ["translate", str(source), "--model", model, "--out", str(out), "--uncertainty", "samples"]
    assert main([*argv, "--samples", "3", "--seed", "5", "--steps", "3"]) == 0
    image, spread = read_volume(out / "s_t1_CT.nii.gz"), read_volume(out / "s_t1_CT_uncertainty.nii.gz")
    assert spread.array.shape == image.array.shape and spread.array.mean() > 1.0
    assert main([*argv, "--steps", "9", "--overwrite"]) == 2
    assert "--steps must lie in 1..4" in capsys.readouterr().err


def test_cli_translate_refuses_samples_of_deterministic(tmp_path, t1, capsys):
    from test_inference import make_translator

    source = write_volume(t1, tmp_path / "s_t1.nii.gz")
    model = str(make_translator(tmp_path / "det.safetensors"))
    argv = ["translate", str(source), "--model", model, "--out", str(tmp_path / "o"), "--uncertainty", "samples"]
    assert main(argv) == 2 and "deterministic" in capsys.readouterr().err


@pytest.mark.slow
def test_pseudolabel_accepts_a_syndiff_translator(folder, tmp_path):
    out = tmp_path / "pl"
    argv = [
        "pseudolabel",
        "--strategy",
        "tutorship",
        "--translator",
        str(folder / f"{SYNDIFF}.safetensors"),
        "--phantom",
        "--phantom-sources",
        "1",
        "--phantom-targets",
        "1",
        "--phantom-shape",
        "4",
        "32",
        "32",
        "--iterations",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target_modality"] == "CT" and len(summary["cases"]) == 1


@pytest.mark.parametrize("bad", [[1, "2"], list(range(20)), 3, [1, -1]])
def test_list_hyperparameters_are_checked(folder, bad):
    from napari_medtrans.checkpoint import CheckpointError
    from napari_medtrans.metadata_schema import parse_translator_metadata

    data = read_metadata(folder / f"{SYNDIFF}.safetensors").to_dict()
    parse_translator_metadata(json.dumps(data))  # the real one is accepted
    data["networks"]["generator"]["ch_mult"] = bad
    with pytest.raises(CheckpointError, match="ch_mult"):
        parse_translator_metadata(json.dumps(data))
