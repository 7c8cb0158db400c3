"""In-plane resampling to a translator's training spacing: the grid arithmetic, the engine, the CLI."""

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.inference import load_translator
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.phantom import generate_subject
from napari_medtrans.resampling import in_plane_resampling, training_spacing

SHIPPED = "t1-ct-regression"  # records the phantom's 1.2 mm training spacing


def test_no_resampling_within_tolerance_or_without_a_record():
    assert in_plane_resampling((4, 50, 40), (1.205, 1.195, 3.0), 0, (1.2, 1.2)) is None
    assert in_plane_resampling((4, 50, 40), (2.4, 2.4, 3.0), 0, None) is None
    assert training_spacing({}) is None and training_spacing({"geometry": {"spacing": [1.2, 1.1]}}) == (1.2, 1.1)


def test_grid_keeps_the_extent_and_the_slice_axis():
    # (x, y, z) spacing 2.4 × 1.8 × 3 mm; slices along array axis 0 have rows along y and columns along x
    grid = in_plane_resampling((4, 50, 40), (2.4, 1.8, 3.0), 0, (1.2, 1.2))
    assert grid is not None
    assert grid.model_shape == (4, 75, 80) and grid.input_spacing == (1.8, 2.4)
    assert grid.model_spacing == pytest.approx((1.2, 1.2))
    coronal = in_plane_resampling((4, 50, 40), (2.4, 1.8, 3.0), 1, (1.2, 1.2))  # rows along z, columns along x
    assert coronal is not None and coronal.model_shape == (10, 50, 80)
    # a linear ramp in physical x stays that ramp at the new pixel centres (away from the edges)
    x_in = (np.arange(40) + 0.5) * 2.4
    ramp = np.broadcast_to(x_in, (4, 50, 40)).astype(np.float32)
    up = grid.to_model(ramp)
    x_model = (np.arange(80) + 0.5) * 1.2
    assert np.allclose(up[:, :, 2:-2], x_model[2:-2], atol=1e-3)
    back = grid.to_input(up)
    assert back.shape == ramp.shape and np.allclose(back[:, :, 2:-2], ramp[:, :, 2:-2], atol=1e-3)
    assert grid.to_input(up[0]).shape == (50, 40)  # one slice
    labels = np.zeros((4, 50, 40), np.uint8)
    labels[:, 10:30, 5:20] = 3
    assert set(np.unique(grid.to_model(labels, labels=True))) == {0, 3}
    assert grid.to_model(labels, labels=True).dtype == np.uint8
    with pytest.raises(ValueError, match="expected an array of shape"):
        grid.to_model(labels[:, :10])


def _half_resolution(volume: Volume) -> Volume:
    """``volume`` at twice its in-plane spacing (2 × 2 block means)."""
    z, rows, cols = volume.array.shape
    array = volume.array.reshape(z, rows // 2, 2, cols // 2, 2).mean((2, 4)).astype(np.float32)
    sx, sy, sz = volume.spacing
    return Volume(array, (2 * sx, 2 * sy, sz), volume.origin, volume.direction)


def test_engine_translates_at_the_training_spacing():
    translator = load_translator(SHIPPED, device="cpu")
    subject = generate_subject(4001, shape=(16, 128, 128))
    t1 = subject.volume("t1")
    assert np.array_equal(  # at the training spacing nothing changes
        translator.translate_volume(t1, batch_size=8).image, translator.translate_volume(t1.array, batch_size=8).image
    )
    coarse = _half_resolution(t1)
    ct = _half_resolution(subject.volume("ct")).array
    body = _half_resolution(t1.with_array((subject.labels > 0).astype(np.float32))).array > 0.5
    resampled = translator.translate_volume(coarse, batch_size=8).image
    own_grid = translator.translate_volume(coarse, batch_size=8, resample=False).image
    assert resampled.shape == own_grid.shape == coarse.array.shape
    mae, mae_own = (float(np.abs(out - ct)[body].mean()) for out in (resampled, own_grid))
    assert mae < mae_own - 5, (mae, mae_own)  # measured: 137 vs 173 HU
    prepared = translator.prepare(coarse.array, spacing=coarse.spacing)  # the viewer's on-the-fly path
    assert prepared.resampling is not None and prepared.array.shape == (16, 128, 128)
    one = translator.translate_slice(prepared, 8).image
    assert one.shape == (64, 64) and np.abs(one - resampled[8]).max() < 0.05


def test_cli_resamples_unless_told_to_keep_the_spacing(tmp_path, capsys):
    t1 = _half_resolution(generate_subject(4002, shape=(4, 128, 128)).volume("t1"))  # 1.2 mm → 2.4 mm
    source = write_volume(t1, tmp_path / "coarse_t1.nii.gz")
    for flags, out in (([], tmp_path / "resampled"), (["--keep-spacing"], tmp_path / "own")):
        assert main(["translate", str(source), "--model", SHIPPED, "--out", str(out), "--device", "cpu", *flags]) == 0
        said = capsys.readouterr().err
        assert ("resampled in-plane from 2.4 × 2.4 mm to the training 1.2 × 1.2 mm and back" in said) == (not flags)
        written = read_volume(out / "coarse_t1_CT.nii.gz")
        assert written.array.shape == t1.array.shape and written.spacing == pytest.approx(t1.spacing)


@pytest.mark.gui
def test_viewer_translates_a_coarse_scan_at_the_training_spacing(make_napari_viewer, qtbot):
    from napari_medtrans.io import layer_geometry

    viewer = make_napari_viewer(show=True)
    coarse = _half_resolution(generate_subject(4003, shape=(8, 128, 128)).volume("t1"))
    viewer.add_image(coarse.array, name="T1", **layer_geometry(coarse))
    _, widget = viewer.window.add_plugin_dock_widget("napari-medtrans", "Translate")
    widget.device_combo.setCurrentText("cpu")
    widget.onthefly_check.setChecked(False)
    widget.select(input="T1", translator=SHIPPED)
    widget.start_session()
    qtbot.waitUntil(lambda: widget.session is not None, timeout=30000)
    assert "resampled in-plane from 2.4 × 2.4 mm to the training 1.2 × 1.2 mm" in widget.status_label.text()
    session = widget.session
    assert session.prepared.resampling is not None and session.output.data.shape == coarse.array.shape
    shown = []
    widget.slice_shown.connect(lambda index, precision, seconds: shown.append((index, precision)))
    viewer.dims.set_current_step(0, 4)
    widget.onthefly_check.setChecked(True)
    qtbot.waitUntil(lambda: (4, "fp32") in shown, timeout=30000)
    expected = load_translator(SHIPPED, device="cpu").translate_volume(coarse, batch_size=8).image[4]
    np.testing.assert_allclose(np.asarray(session.output.data[4]), expected, atol=0.05)


def test_a_3d_translator_is_resampled_the_same_way(tmp_path):
    from test_regression_3d import TINY_3D
    from test_sliding_window import tiny_translator

    from napari_medtrans.checkpoint import update_metadata
    from napari_medtrans.inference import load_translator as load
    from napari_medtrans.sliding_window import translate_volume_3d

    tiny_translator(tmp_path, TINY_3D, patch=[4, 8, 8])
    update_metadata(tmp_path / "3d.safetensors", {"input_signature": {"geometry": {"spacing": [1.0, 1.0]}}})
    translator = load(tmp_path / "3d.safetensors", device="cpu")
    array = np.random.default_rng(3).uniform(0, 800, (6, 10, 12)).astype(np.float32)
    volume = Volume(array, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0))
    grid = translator.resampling(array.shape, volume.spacing)
    assert grid is not None and grid.model_shape == (6, 20, 24)
    result = translator.translate_volume(volume).image
    expected = grid.to_input(translate_volume_3d(translator, grid.to_model(array))["image"])
    np.testing.assert_allclose(result, expected, atol=1e-4)
    assert translator.translate_slice(translator.prepare(array, spacing=volume.spacing), 2).image.shape == (10, 12)
