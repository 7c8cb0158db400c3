"""``medtrans demo`` without a display: NIfTI outputs, a montage, no overwriting."""

from __future__ import annotations

import pytest
from _tiny_translators import UAPI, make_tiny_translators

from napari_medtrans.cli import main
from napari_medtrans.cli.demo import has_display
from napari_medtrans.io import read_volume


@pytest.fixture
def headless(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(make_tiny_translators(tmp_path / "models")))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return tmp_path


@pytest.mark.slow  # translates the demo volume end to end (> 20 s)
def test_demo_without_display_writes_outputs_and_never_overwrites(headless, capsys):
    import sys

    if sys.platform.startswith("linux"):
        assert not has_display()
    out = headless / "demo"
    assert main(["demo", "--model", UAPI, "--out", str(out), "--headless"]) == 0
    printed = capsys.readouterr().out
    names = {"input_t1.nii.gz", "synthetic_ct.nii.gz", "reference_ct.nii.gz", "uncertainty_sigma.nii.gz", "montage.png"}
    assert names <= {p.name for p in out.iterdir()}
    assert f"outputs are in {out.resolve()}" in printed
    synthetic, t1 = read_volume(out / "synthetic_ct.nii.gz"), read_volume(out / "input_t1.nii.gz")
    assert synthetic.array.shape == t1.array.shape and synthetic.spacing == t1.spacing
    assert synthetic.modality == "CT"
    assert (out / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run goes to a fresh folder inside; --overwrite writes in place
    assert main(["demo", "--model", UAPI, "--out", str(out), "--headless"]) == 0
    fresh = [p for p in out.iterdir() if p.is_dir()]
    assert len(fresh) == 1 and names <= {p.name for p in fresh[0].iterdir()}
    assert main(["demo", "--model", UAPI, "--out", str(out), "--headless", "--overwrite"]) == 0


def test_demo_with_unknown_model_is_a_clear_error(headless, capsys):
    assert main(["demo", "--model", "no-such-model", "--headless", "--out", str(headless / "x")]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not (headless / "x").exists()
