"""``medtrans translate``, ``models`` and ``convert-pth`` end to end, in process."""

import json

import pytest
import torch
from test_inference import UNET_SCALE, make_translator

from napari_medtrans.checkpoint import load_modules
from napari_medtrans.cli import main
from napari_medtrans.io import read_volume, write_volume
from napari_medtrans.nets import build_network


@pytest.fixture()
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(folder))
    make_translator(folder / "tiny-resnet.safetensors")
    return folder


@pytest.fixture()
def t1_file(tmp_path, small_subject):
    volume = small_subject.volume("t1")
    volume = volume.with_array(volume.array[:3])
    return write_volume(volume, tmp_path / "subject0_t1.nii.gz")


def test_translate_writes_hu_with_geometry(tmp_path, models_dir, t1_file, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "translate",
                str(t1_file),
                "--model",
                "tiny-resnet",
                "--out",
                str(out),
                "--uncertainty",
                "tta",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "3/3 slices (" in captured.err and "\r" not in captured.err  # plain progress lines (no terminal)
    source = read_volume(t1_file)
    ct = read_volume(out / "subject0_t1_CT.nii.gz")
    assert ct.array.shape == source.array.shape and ct.modality == "CT"
    assert ct.spacing == pytest.approx(source.spacing) and ct.origin == pytest.approx(source.origin)
    assert ct.direction == pytest.approx(source.direction)
    assert ct.array.min() >= -1024.5 and ct.array.max() <= 3000.5
    sigma = read_volume(out / "subject0_t1_CT_uncertainty.nii.gz")
    assert (sigma.array >= 0).all()

    # never overwrites without --overwrite, and says so
    assert main(["translate", str(t1_file), "--model", "tiny-resnet", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["translate", str(t1_file), "--model", "tiny-resnet", "--out", str(out), "--overwrite"]) == 0


def test_translate_scale_map_by_path(tmp_path, t1_file, native_bf16):
    model = make_translator(tmp_path / "uapi.safetensors", UNET_SCALE)
    out = tmp_path / "out"
    assert (
        main(
            [
                "translate",
                str(t1_file),
                "--model",
                str(model),
                "--out",
                str(out),
                "--uncertainty",
                "scale",
                "--axis",
                "0",
                "--precision",
                "bf16",
            ]
        )
        == 0
    )
    assert (read_volume(out / "subject0_t1_CT_uncertainty.nii.gz").array > 0).all()


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing input", "no such file"),
        ("garbage input", "garbage.nii.gz"),
        ("unknown model", "no translator named"),
        ("pth model", "convert-pth"),
        ("no scale", "no scale map"),
        ("no dropout", "no dropout"),
    ],
)
def test_translate_clear_errors(tmp_path, models_dir, t1_file, capsys, case, message):
    model, extra, source = "tiny-resnet", [], str(t1_file)
    if case == "missing input":
        source = str(tmp_path / "nope.nii.gz")
    elif case == "garbage input":
        source = tmp_path / "garbage.nii.gz"
        source.write_bytes(b"not an image")
    elif case == "unknown model":
        model = "no-such-model"
    elif case == "pth model":
        model = str(tmp_path / "G.pth")
        torch.save(build_network({"arch": "resnet", "ngf": 8, "n_blocks": 1}).state_dict(), model)
    else:
        extra = ["--uncertainty", "scale" if case == "no scale" else "mc_dropout"]
    code = main(["translate", str(source), "--model", model, "--out", str(tmp_path / "o"), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("medtrans: error:") and message in err
    assert not (tmp_path / "o" / "subject0_t1_CT.nii.gz").exists()


def test_models_json(models_dir, capsys):
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    tiny = next(item for item in listed if item["name"] == "tiny-resnet")
    assert {"name", "method", "source", "target", "outputs"} <= set(tiny)
    assert tiny["source"] == "T1" and tiny["target"] == "CT" and tiny["outputs"] == ["image"]
    assert tiny["origin"] == "user"
    assert main(["models"]) == 0
    assert "tiny-resnet" in capsys.readouterr().out


def test_convert_pth_command(tmp_path, models_dir, capsys):
    net = build_network({"arch": "resnet", "ngf": 8, "n_blocks": 2}).eval()
    src = tmp_path / "latest_net_G_A.pth"
    torch.save(net.state_dict(), src)
    dst = models_dir / "imported.safetensors"
    assert main(["convert-pth", str(src), str(dst), "--source", "T1", "--target", "CT", "--name", "imported"]) == 0
    assert capsys.readouterr().out.strip() == str(dst)
    assert main(["models", "--json"]) == 0
    assert "imported" in {item["name"] for item in json.loads(capsys.readouterr().out)}
    assert main(["convert-pth", str(src), str(dst), "--source", "T1", "--target", "CT"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert-pth", str(src), str(tmp_path / "x.safetensors"), "--source", "CT", "--target", "T2"]) == 2
    assert "reference" in capsys.readouterr().err
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(load_modules(dst)[0]["generator"](x), net(x))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_translate_unavailable_device(tmp_path, models_dir, t1_file, capsys):
    assert (
        main(["translate", str(t1_file), "--model", "tiny-resnet", "--out", str(tmp_path / "o"), "--device", "cuda"])
        == 2
    )
    assert "'cuda' is not available" in capsys.readouterr().err
