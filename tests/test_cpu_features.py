"""Native vs emulated bf16 (issue 23): detection, and that nothing offers or picks an emulated bf16.

The CPU is faked (``native_bf16`` / ``emulated_bf16`` fixtures in conftest), so these
tests pin the behaviour on every CPU kind.
"""

from __future__ import annotations

import pytest
import torch
from test_inference import make_translator

from napari_medtrans import cpu_features
from napari_medtrans.cli import main
from napari_medtrans.io import write_volume
from napari_medtrans.onthefly import SliceScheduler
from training.config import ConfigError
from training.loop import autocast_dtype


def test_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu AVX512F avx512_bf16\n\n"
        "processor\t: 1\nFeatures\t: fp asimd bf16\n"
    )
    real_path = cpu_features.Path
    monkeypatch.setattr(cpu_features, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    cpu_features.cpu_flags.cache_clear()
    try:
        assert cpu_features.cpu_flags() == {"fpu", "avx512f", "avx512_bf16", "fp", "asimd", "bf16"}
        assert cpu_features.cpu_model() == "Some CPU"
    finally:
        cpu_features.cpu_flags.cache_clear()


def test_bf16_native_only_with_its_instructions(monkeypatch):
    for flags, native in [
        ({"amx_bf16"}, True),
        ({"avx512_bf16"}, True),
        ({"asimd", "bf16"}, True),
        ({"avx512f", "avx2"}, False),
        (set(), False),
    ]:
        monkeypatch.setattr(cpu_features, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert cpu_features.precision_support("bf16", "cpu").native is native, flags
        assert cpu_features.precision_support("fp32", "cpu").native
    reason = cpu_features.precision_support("bf16", "cpu").reason
    assert "no bf16 instructions" in reason and "emulated" in reason
    with pytest.raises(ValueError, match="precision"):
        cpu_features.precision_support("int8")


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_on_cuda_needs_ampere(monkeypatch, capability, native):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    support = cpu_features.precision_support("bf16", "cuda:0")
    assert support.native is native and f"{capability[0]}.{capability[1]}" in support.reason


def test_check_precision_refuses_unless_forced(emulated_bf16):
    with pytest.raises(cpu_features.EmulatedPrecisionError, match="Fake CPU.*add --force"):
        cpu_features.check_precision("bf16", "cpu", how_to_force="add --force")
    assert cpu_features.check_precision("bf16", "cpu", force=True).startswith("warning: this CPU (Fake CPU)")
    assert cpu_features.check_precision("fp32", "cpu") is None


def test_check_precision_passes_native(native_bf16):
    assert cpu_features.check_precision("bf16", "cpu") is None


@pytest.fixture()
def t1_file(tmp_path, small_subject):
    volume = small_subject.volume("t1")
    return write_volume(volume.with_array(volume.array[:2]), tmp_path / "t1.nii.gz")


def test_cli_refuses_emulated_bf16_unless_forced(tmp_path, t1_file, emulated_bf16, capsys):
    model = make_translator(tmp_path / "tiny.safetensors")
    args = [
        "translate",
        str(t1_file),
        "--model",
        str(model),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--precision",
        "bf16",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--precision bf16" in err and "emulated" in err and "--force" in err
    assert not (tmp_path / "out").exists()
    assert main([*args, "--force"]) == 0
    assert "warning: this CPU (Fake CPU) has no bf16 instructions" in capsys.readouterr().err
    assert (tmp_path / "out" / "t1_CT.nii.gz").is_file()


def test_trainer_refuses_emulated_bf16_unless_forced(emulated_bf16):
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="precision bf16: this CPU.*--force-precision"):
        autocast_dtype("bf16", cpu)
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert autocast_dtype("bf16", cpu, force=True) is torch.bfloat16
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None


def test_trainer_flag_reaches_the_config(tmp_path):
    from training.cli import build_config, build_parser

    base = ["--method", "pix2pix", "--phantom", "paired", "--run-dir", str(tmp_path), "--precision", "bf16"]
    assert not build_config(build_parser().parse_args(base)).force_precision
    assert build_config(build_parser().parse_args([*base, "--force-precision"])).force_precision


@pytest.mark.parametrize("preview", ["always", "auto"])
def test_onthefly_never_previews_in_emulated_bf16(emulated_bf16, preview):
    scheduler = SliceScheduler(lambda index, precision: precision, 4, preview=preview, preview_threshold_s=0.0)
    scheduler.request(1)
    assert scheduler.step().job.precision == "fp32"  # measured slow: a native bf16 would be previewed now
    scheduler.request(2)
    assert not scheduler.uses_preview and scheduler.step().job.precision == "fp32"


def test_onthefly_previews_in_native_bf16(native_bf16):
    scheduler = SliceScheduler(lambda index, precision: precision, 4, preview="always")
    scheduler.request(1)
    assert scheduler.step().job.precision == "bf16"


def test_widgets_offer_bf16_only_where_native(qtbot, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QComboBox

    from napari_medtrans._widgets._precision import offer_precisions

    combo = QComboBox()
    qtbot.addWidget(combo)
    combo.addItems(["auto", "fp32", "bf16"])
    combo.setCurrentText("bf16")
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx2"}))
    offer_precisions(combo, "auto")
    bf16 = combo.model().item(2)
    assert not bf16.isEnabled() and combo.currentText() == "fp32"
    assert "no bf16 instructions" in combo.itemData(2, Qt.ItemDataRole.ToolTipRole)
    assert combo.model().item(0).isEnabled() and combo.model().item(1).isEnabled()
    offer_precisions(combo, "cuda:1")  # an accelerator is checked on the device itself
    assert bf16.isEnabled()
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    offer_precisions(combo, "cpu")
    assert bf16.isEnabled() and "amx_bf16" in combo.itemData(2, Qt.ItemDataRole.ToolTipRole)


def test_train_form_disables_emulated_bf16(qtbot, emulated_bf16):
    from napari_medtrans._widgets._train_form import TrainForm

    form = TrainForm()
    qtbot.addWidget(form)
    row = form.precision.findText("bf16")
    assert not form.precision.model().item(row).isEnabled()
