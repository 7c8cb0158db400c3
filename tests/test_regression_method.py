"""The paired regression method: its losses, and a 2.5-D run with a σ head that `medtrans translate` loads."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from _training_helpers import REPO, subprocess_env
from skimage.metrics import structural_similarity

from training.losses import deep_supervision_weights, ssim_loss


def test_deep_supervision_weights_are_nnunets():
    # 1, 1/2, 1/4 normalised: 4/7, 2/7, 1/7
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert deep_supervision_weights(1) == [1.0]


def test_ssim_loss_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (32, 40)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.3, a.shape), -1, 1).astype(np.float32)
    expected = structural_similarity(
        a, b, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    loss = ssim_loss(torch.from_numpy(b)[None, None], torch.from_numpy(a)[None, None])
    assert float(loss) == pytest.approx(1 - expected, abs=1e-4)
    assert float(ssim_loss(torch.from_numpy(a)[None, None], torch.from_numpy(a)[None, None])) == pytest.approx(
        0, abs=1e-5
    )


@pytest.mark.slow  # trains 4 iterations in a subprocess and translates a volume (~1–2 min on a loaded machine)
def test_regression_25d_with_sigma_head_trains_and_translates(tmp_path):
    from napari_medtrans.checkpoint import read_metadata
    from napari_medtrans.cli import main
    from napari_medtrans.io import read_volume, write_volume
    from napari_medtrans.phantom import generate_subject

    run = tmp_path / "run"
    args = [
        "--method",
        "regression",
        "--phantom",
        "paired",
        "--size",
        "64",
        "--iterations",
        "4",
        "--subjects",
        "2",
        "--threads",
        "1",
        "--run-dir",
        str(run),
        "--log-every",
        "2",
        "--checkpoint-every",
        "2",
        "--preview-every",
        "2",
        "--set",
        "data.phantom_depth=6",
        "--set",
        "data.context_slices=3",
        "--set",
        "model.sigma_head=true",
        "--set",
        "model.lambda_ssim=0.5",
        "--set",
        "model.ngf=8",
        "--set",
        "model.depth=3",
        "--set",
        "model.encoder_blocks=1",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SSIM" in done.stdout and "NLL" in done.stdout
    meta = read_metadata(run / "translator.safetensors")
    assert meta.method == "regression" and meta.regime == "paired" and meta.context_slices == 3
    assert meta.outputs == ["image", "scale"]
    assert meta.networks["generator"]["arch"] == "res_unet" and meta.networks["generator"]["in_channels"] == 3
    assert meta.deviations["sigma_head"] is True and meta.deviations["lambda_ssim"] == 0.5

    t1 = tmp_path / "s_t1.nii.gz"
    write_volume(generate_subject(1000, shape=(5, 64, 64)).volume("t1"), t1)
    out = tmp_path / "out"
    assert (
        main(
            [
                "translate",
                str(t1),
                "--model",
                str(run / "translator.safetensors"),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--uncertainty",
                "scale",
            ]
        )
        == 0
    )
    ct, sigma = read_volume(out / "s_t1_CT.nii.gz"), read_volume(out / "s_t1_CT_uncertainty.nii.gz")
    assert ct.array.shape == sigma.array.shape == (5, 64, 64)
    assert (sigma.array > 0).all() and -1024 <= ct.array.min() <= ct.array.max() <= 3071
