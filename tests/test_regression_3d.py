"""The 3-D patch variant of ``regression``: patch sampling, metadata, sliding-window translation
(whole volume, slabs, axes, geometry) and a CLI run from training to `medtrans translate`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _training_helpers import run_training, tiny_config
from safetensors.torch import load_file
from test_sliding_window import tiny_translator

from napari_medtrans.checkpoint import CheckpointError, TranslatorMetadata
from napari_medtrans.contract import ConfigError, DataConfig
from training.data import Cohort, Subject, validation_set
from training.patches import FOREGROUND_OVERSAMPLE, PatchSampler, check_patch, patch_crop, window_3d

TINY_3D = {"arch": "res_unet", "ngf": 4, "depth": 2, "encoder_blocks": 1, "dims": 3}
#: Options of a tiny 3-D regression run (8×32×32 patches from 32² phantom slices).
TINY_3D_OPTIONS = ["model.dims=3", "model.patch_depth=8", "model.depth=3", "model.encoder_blocks=1"]


def _cohort(depth: int = 10, side: int = 20) -> Cohort:
    """Two subjects whose target is the source + 0.5, with a small bright 'body' in one corner."""
    subjects = []
    for i in range(2):
        source = np.full((depth, side, side), -1.0, np.float32)
        source[1:4, 2:6, 3:7] = 0.5
        subjects.append(Subject(f"s{i}", source, source + 0.5, source + 0.5))
    from napari_medtrans.intensity import ct_window, mr_percentile

    return Cohort(subjects, subjects[:1], mr_percentile(), ct_window(), aligned=True, description={})


def test_window_3d_pads_outside_the_volume():
    volume = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    box = window_3d(volume, (4, 2, 2), (-1, 2, 3))
    assert box.shape == (4, 2, 2)
    np.testing.assert_array_equal(box[1:3, 0, 0], volume[:, 2, 3])
    assert (box[0] == -1).all() and (box[3] == -1).all() and (box[:, 1] == -1).all() and (box[:, :, 1] == -1).all()


def test_patch_sampler_pairs_flips_pads_and_oversamples_the_foreground():
    cfg = DataConfig(flip=True)
    sampler = PatchSampler(_cohort(), cfg, (4, 8, 8), seed=0)
    batch = sampler.sample(400)
    assert batch["source"].shape == batch["target"].shape == (400, 1, 4, 8, 8)
    # source and target share the window and the flip
    np.testing.assert_allclose(batch["target"], batch["source"] + 0.5)
    with_body = (batch["source"] > -0.9).reshape(400, -1).any(1).mean()
    # the body fills 48 of 4000 voxels: random 4×8×8 windows rarely see it, forced ones always do
    random_share = with_body - FOREGROUND_OVERSAMPLE
    assert FOREGROUND_OVERSAMPLE - 0.08 < with_body < 0.8 and random_share < 0.45
    # a volume thinner than the patch is centred and padded with network air
    thin = PatchSampler(_cohort(depth=2), cfg, (4, 8, 8), seed=0).sample(3)["source"]
    assert (thin[:, 0, 0] == -1).all() and (thin[:, 0, 3] == -1).all()
    # the RNG state restores the stream (resume)
    state = sampler.state()
    first = sampler.sample(2)["source"]
    sampler.set_state(state)
    np.testing.assert_array_equal(sampler.sample(2)["source"], first)


def test_validation_patches_are_fixed_and_centred():
    cfg = DataConfig(val_slices=2, min_foreground=0.0)
    val = validation_set(_cohort(), cfg, patch_crop((4, 8, 8)))
    again = validation_set(_cohort(), cfg, patch_crop((4, 8, 8)))
    assert val.source.shape == val.truth.shape == (2, 1, 4, 8, 8)
    np.testing.assert_array_equal(val.source, again.source)
    assert val.names == ["s0:3", "s0:6"]


def test_check_patch_names_what_is_wrong():
    net = torch.nn.Module()
    net.size_multiple = 8
    with pytest.raises(ConfigError, match="multiple of 8"):
        check_patch((12, 32, 32), net, DataConfig())
    with pytest.raises(ConfigError, match="context_slices=1"):
        check_patch((8, 32, 32), net, DataConfig(context_slices=3))
    check_patch((8, 32, 32), net, DataConfig())


def test_metadata_requires_a_patch_exactly_for_3d_generators(tmp_path):
    from napari_medtrans.intensity import ct_window, mr_percentile
    from napari_medtrans.metadata_schema import check_translator_metadata

    def metadata(spec: dict, **kwargs) -> dict:
        return TranslatorMetadata(
            "m",
            "regression",
            "T1",
            "CT",
            {"generator": spec},
            mr_percentile().to_dict(),
            ct_window().to_dict(),
            **kwargs,
        ).to_dict()

    two_d = metadata({"arch": "res_unet"})
    assert "patch" in two_d and two_d["patch"] is None
    legacy = {k: v for k, v in two_d.items() if k != "patch"}  # a translator written before 3-D existed
    assert TranslatorMetadata.from_dict(legacy).patch is None
    assert TranslatorMetadata.from_dict(metadata(TINY_3D, patch=[8, 16, 16])).patch == [8, 16, 16]
    for bad, message in [
        (metadata(TINY_3D), "needs a 'patch'"),
        (metadata({"arch": "res_unet"}, patch=[8, 16, 16]), "needs a 'patch'"),
        (metadata(TINY_3D, patch=[8, 16]), "3 sides"),
        (metadata(TINY_3D, patch=[8, 0, 16]), "positive"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            TranslatorMetadata.from_dict(bad)
    with pytest.raises(CheckpointError, match=r"patch\[1\]"):
        check_translator_metadata(metadata(TINY_3D, patch=[8, 10**6, 16]))
    with pytest.raises(CheckpointError, match="generator.dims"):
        check_translator_metadata(metadata({**TINY_3D, "dims": 4}, patch=[8, 16, 16]))


def test_translate_volume_of_a_3d_translator_blends_windows_along_the_slice_axis(tmp_path):
    from napari_medtrans.sliding_window import translate_volume_3d

    translator = tiny_translator(tmp_path, {**TINY_3D, "scale_head": True}, patch=[4, 8, 8])
    array = np.random.default_rng(0).uniform(0, 800, (6, 10, 12)).astype(np.float32)
    seen = []
    result = translator.translate_volume(array, progress=lambda done, total: seen.append((done, total)))
    direct = translate_volume_3d(translator, array, (4, 8, 8))
    np.testing.assert_array_equal(result.image, direct["image"])
    np.testing.assert_array_equal(result.scale, direct["scale"])
    assert result.uncertainty is None and seen[-1] == (8, 8)  # 2 × 2 × 2 windows
    # axis 2 as the slice axis == the transposed volume translated along axis 0
    along_x = translator.translate_volume(array, axis=2).image
    transposed = translator.translate_volume(np.ascontiguousarray(np.moveaxis(array, 2, 0))).image
    np.testing.assert_allclose(along_x, np.moveaxis(transposed, 0, 2), atol=1e-3)
    # a mask, cancellation and the uncertainty kinds a 3-D translator lacks
    mask = np.zeros(array.shape, bool)
    mask[2:4] = True
    masked = translator.translate_volume(array, mask=mask)
    assert (masked.image[~mask] == -1000).all() and (masked.scale[~mask] == 0).all()
    np.testing.assert_array_equal(masked.image[mask], result.image[mask])
    from napari_medtrans.inference import Cancelled

    with pytest.raises(Cancelled):
        translator.translate_volume(array, cancel=lambda: True)
    with pytest.raises(ValueError, match="3-D"):
        translator.translate_volume(array, uncertainty="tta")


def test_slice_of_a_3d_translator_comes_from_its_slab(tmp_path):
    from napari_medtrans.sliding_window import translate_volume_3d

    translator = tiny_translator(tmp_path, TINY_3D, patch=[4, 8, 8])
    array = np.random.default_rng(1).uniform(0, 800, (9, 10, 12)).astype(np.float32)
    prepared = translator.prepare(array, cache_size=16)
    found = translator.translate_slice(prepared, 4)
    # the slab around slice 4 is slices 2–5, normalised with the whole volume's intensity fit
    slab = translate_volume_3d(translator, array[2:6], mapping=prepared.mapping)["image"]
    np.testing.assert_array_equal(found.image, slab[2])
    assert translator.translate_slice(prepared, 8).image.shape == (10, 12)  # the last slab: slices 5–8
    assert prepared.cached((5, "fp32", None)) is not None  # the slab's other slices are cached
    volume = translator.translate_volume(array).image
    assert np.abs(found.image - volume[4]).mean() < np.abs(volume[4] - volume[4].mean()).mean()


def test_regression_3d_resume_is_exact(tmp_path):
    """4 iterations straight == 2, stop, resume, 2 more (the 3-D sampler's state is restored)."""
    from training.cli import build_config, build_parser
    from training.loop import Trainer, train

    extra = [item for option in TINY_3D_OPTIONS for item in ("--set", option)]
    extra += ["--set", "data.phantom_depth=8"]
    straight = tmp_path / "straight"
    assert train(tiny_config("regression", straight, iterations=4, extra=extra)) == 0
    split = tmp_path / "split"
    trainer = Trainer(tiny_config("regression", split, iterations=4, extra=extra))
    trainer._stop_requested = lambda: trainer.iteration == 2
    assert trainer.run_training() == 0 and trainer.run.read_status()["state"] == "stopped"
    assert train(build_config(build_parser().parse_args(["--run-dir", str(split), "--resume"])), resume=True) == 0
    a = load_file(straight / "checkpoints" / "last.safetensors")
    b = load_file(split / "checkpoints" / "last.safetensors")
    keys = [k for k in a if k.startswith(("net.", "optim."))]
    assert any("Conv3d" in type(m).__name__ for m in trainer.method.generator.modules())
    for key in keys:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow  # trains 4 iterations in a subprocess and translates a file (~1 min on a loaded machine)
def test_regression_3d_trains_from_the_cli_and_translates_a_file_keeping_its_geometry(tmp_path):
    from napari_medtrans.checkpoint import read_metadata
    from napari_medtrans.cli import main
    from napari_medtrans.io import Volume, read_volume, write_volume
    from napari_medtrans.phantom import generate_subject

    run = tmp_path / "run"
    args = ["--method", "regression", "--phantom", "paired", "--size", "64", "--iterations", "4", "--subjects", "2"]
    args += ["--threads", "1", "--run-dir", str(run), "--log-every", "2", "--checkpoint-every", "2"]
    for option in ["data.phantom_depth=12", "model.ngf=8", *TINY_3D_OPTIONS]:
        args += ["--set", option]
    done = run_training(args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3-D patches of 8×64×64 voxels" in done.stdout
    meta = read_metadata(run / "translator.safetensors")
    assert meta.networks["generator"]["dims"] == 3 and meta.patch == [8, 64, 64]
    assert meta.deviations["dims"] == 3

    angle = math.radians(20)  # a rotation about z, an odd spacing and a shifted origin
    c, s = math.cos(angle), math.sin(angle)
    t1 = generate_subject(1000, shape=(11, 40, 48)).volume("t1")
    source = Volume(t1.array, (0.9, 1.3, 3.5), (12.5, -40.0, 7.25), (c, -s, 0, s, c, 0, 0, 0, 1), modality="T1")
    path = tmp_path / "s_t1.nii.gz"
    write_volume(source, path)
    out = tmp_path / "out"
    assert main(["translate", str(path), "--model", str(run / "translator.safetensors"), "--out", str(out)]) == 0
    ct = read_volume(out / "s_t1_CT.nii.gz")
    written = read_volume(path)
    assert ct.array.shape == written.array.shape == (11, 40, 48)
    np.testing.assert_allclose(ct.spacing, written.spacing, rtol=1e-6)
    np.testing.assert_allclose(ct.origin, written.origin, atol=1e-5)
    np.testing.assert_allclose(ct.direction, written.direction, atol=1e-6)
    assert -1024 <= ct.array.min() <= ct.array.max() <= 3071


def test_medtrans_translate_runs_a_3d_translator_file_and_keeps_the_geometry(tmp_path):
    from napari_medtrans.cli import main
    from napari_medtrans.io import Volume, read_volume, write_volume

    translator = tiny_translator(tmp_path, TINY_3D, patch=[4, 8, 8])
    angle = math.radians(-35)  # a rotation about x, an odd spacing and a shifted origin
    c, s = math.cos(angle), math.sin(angle)
    array = np.random.default_rng(2).uniform(0, 800, (7, 11, 13)).astype(np.float32)
    source = Volume(array, (0.7, 1.9, 2.5), (-3.5, 101.0, -64.25), (1, 0, 0, 0, c, -s, 0, s, c), modality="T1")
    path = tmp_path / "t1.nii.gz"
    write_volume(source, path)
    out = tmp_path / "out"
    assert main(["translate", str(path), "--model", str(tmp_path / "3d.safetensors"), "--out", str(out)]) == 0
    ct, written = read_volume(out / "t1_CT.nii.gz"), read_volume(path)
    np.testing.assert_allclose(ct.spacing, written.spacing, rtol=1e-6)
    np.testing.assert_allclose(ct.origin, written.origin, atol=1e-5)
    np.testing.assert_allclose(ct.direction, written.direction, atol=1e-6)
    np.testing.assert_allclose(ct.array, translator.translate_volume(written.array).image, atol=1e-3)


@pytest.mark.gui
def test_translate_widget_runs_a_3d_translator_on_the_fly_and_whole(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, small_subject
):
    """On the fly the viewer shows slices from slabs; the whole volume goes through the sliding windows."""
    from napari_medtrans._widgets.demo import open_demo

    models = tmp_path / "models"
    models.mkdir()
    tiny_translator(models, TINY_3D, patch=[4, 16, 16], name="tiny-3d")
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(models))
    viewer = make_napari_viewer(show=True)
    widget = open_demo(viewer, "tiny-3d", subject=small_subject, device="cpu")
    qtbot.waitUntil(lambda: widget.session is not None, timeout=30000)
    session = widget.session
    shown = []
    widget.slice_shown.connect(lambda index, precision, seconds: shown.append((index, precision)))
    viewer.dims.set_current_step(0, 5)
    qtbot.waitUntil(lambda: (5, "fp32") in shown, timeout=30000)
    exact = session.translator.translate_slice(session.prepared, 5)
    np.testing.assert_allclose(np.asarray(session.output.data[5]), exact.image, atol=1e-3)
    with qtbot.waitSignal(widget.volume_finished, timeout=60000) as blocker:
        widget.volume_button.click()
    assert blocker.args == [True]
    whole = session.translator.translate_volume(session.volume.array).image
    np.testing.assert_allclose(np.asarray(session.output.data), whole, atol=1e-3)
