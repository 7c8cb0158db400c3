"""Typed configs, overrides, the CLI hand-over and the import rule of ``training``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _training_helpers import REPO, subprocess_env

from training.cli import build_config, build_parser, list_methods
from training.config import ConfigError, TrainConfig, parse_override


def _cfg(*argv: str) -> TrainConfig:
    return build_config(build_parser().parse_args(list(argv)))


def test_flags_file_and_overrides_resolve_in_order(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("iterations: 50\ndata:\n  size: 96\nmodel:\n  lambda_cycle: 5\n")
    cfg = _cfg(
        "--method",
        "cyclegan",
        "--phantom",
        "unpaired",
        "--run-dir",
        str(tmp_path / "r"),
        "--config",
        str(config),
        "--size",
        "64",
        "--set",
        "model.ngf=16",
        "--set",
        "data.flip=false",
    )
    assert cfg.iterations == 50 and cfg.data.size == 64 and cfg.data.flip is False
    assert cfg.model["lambda_cycle"] == 5.0 and cfg.model["ngf"] == 16
    assert cfg.model["pool_size"] == 50 and cfg.model["lambda_identity"] == 0.5  # paper defaults resolved
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "data.nope=1"], r"unknown key\(s\) data\.nope"),
        (["--set", "model.nope=1"], "method 'pix2pix'"),
        (["--set", "iterations=abc"], "expected an integer"),
        (["--set", "data.phantom=sideways"], "is not one of"),
    ],
)
def test_bad_values_are_named(tmp_path, argv, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        _cfg("--method", "pix2pix", "--phantom", "paired", "--run-dir", str(tmp_path), *argv)


def test_unknown_method_lists_known_ones(tmp_path):
    with pytest.raises(ValueError, match="available: .*pix2pix"):
        _cfg("--method", "nope", "--phantom", "paired", "--run-dir", str(tmp_path))


def test_parse_override_uses_yaml_values():
    assert parse_override("model.nce_layers=[0, 4]") == (["model", "nce_layers"], [0, 4])
    assert parse_override("lr=1e-4")[1] == 1e-4


def test_list_methods_names_every_method():
    text = list_methods()
    for name in ("cyclegan", "pix2pix", "reggan", "pi", "uapi", "cut", "fastcut"):
        assert name in text


def test_unpaired_data_rejected_for_paired_method(tmp_path):
    from _training_helpers import tiny_config

    from napari_medtrans.rundir import RunDir
    from training.loop import train

    cfg = tiny_config("pix2pix", tmp_path / "r", regime="unpaired")
    assert train(cfg) == 1
    assert "needs paired" in RunDir(tmp_path / "r").read_status()["last_error"]


@pytest.mark.slow  # spawns a process
def test_medtrans_train_forwards_and_training_imports_no_qt():
    code = (
        "import sys, training, training.loop, training.methods\n"
        "from napari_medtrans.cli import main\n"
        "assert main(['train', '--list-methods']) == 0\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'magicgui')]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "reggan" in out.stdout


def test_precision_resolves_per_device(tmp_path, native_bf16):
    import torch

    from training.loop import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", cuda) is torch.float16
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp32", cuda) is None
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        autocast_dtype("fp16", cpu)
    cfg = _cfg("--method", "pix2pix", "--phantom", "paired", "--run-dir", str(tmp_path), "--precision", "bf16")
    assert cfg.precision == "bf16"


def test_run_written_with_amp_flag_still_reads():
    """config.json of runs made before ``precision`` existed holds ``amp``."""
    assert TrainConfig.from_dict({"amp": False}).precision == "fp32"
    assert TrainConfig.from_dict({"amp": True}).precision == "auto"
