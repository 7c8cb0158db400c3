"""Translator files: round trip, validation messages, pickle refusal, .pth conversion."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from napari_medtrans.checkpoint import (
    CheckpointError,
    TranslatorMetadata,
    convert_pth,
    load_modules,
    read_metadata,
    save_translator,
)
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.nets import build_network

RESNET = {"arch": "resnet", "ngf": 8, "n_blocks": 3}


def metadata(**overrides):
    fields = {
        "name": "tiny",
        "method": "cyclegan",
        "source": "T1",
        "target": "CT",
        "networks": {"generator": RESNET},
        "source_intensity": mr_percentile().to_dict(),
        "target_intensity": ct_window().to_dict(),
        "provenance": {"run": "test"},
    }
    return TranslatorMetadata(**{**fields, **overrides})


def test_round_trip_identical_outputs(tmp_path):
    gen = build_network(RESNET).eval()
    reg = build_network({"arch": "registration", "nf": 8, "depth": 3})
    md = metadata(
        networks={"generator": RESNET, "registration": {"arch": "registration", "nf": 8, "depth": 3}},
        outputs=["image", "field"],
        method="reggan",
    )
    path = save_translator(tmp_path / "t.safetensors", {"generator": gen, "registration": reg}, md)
    assert read_metadata(path) == md
    modules, md2 = load_modules(path)
    assert md2 == md and not modules["generator"].training
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(modules["generator"](x), gen(x))
    with pytest.raises(FileExistsError):
        save_translator(path, {"generator": gen, "registration": reg}, md)


def test_mismatch_names_tensor_and_shape(tmp_path):
    gen = build_network(RESNET)
    path = save_translator(tmp_path / "t.safetensors", {"generator": gen}, metadata())
    # tamper: same header, one tensor with another shape
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        header = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    tensors["generator.model.1.weight"] = torch.zeros(8, 1, 5, 5)
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(CheckpointError, match=r"generator\.model\.1\.weight has shape \(8, 1, 5, 5\).*\(8, 1, 7, 7\)"):
        load_modules(path)
    del tensors["generator.model.1.weight"]
    tensors["generator.extra"] = torch.zeros(1)
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(
        CheckpointError, match="missing tensor generator.model.1.weight.*unexpected tensor generator.extra"
    ):
        load_modules(path)


def test_metadata_validation_names_the_field(tmp_path):
    with pytest.raises(CheckpointError, match="'target'"):
        metadata(target="").validate()
    with pytest.raises(CheckpointError, match="in_channels"):
        metadata(context_slices=3).validate()
    with pytest.raises(CheckpointError, match="reference"):
        metadata(target_intensity=mr_percentile().to_dict()).validate()
    with pytest.raises(CheckpointError, match="scale"):
        save_translator(
            tmp_path / "s.safetensors", {"generator": build_network(RESNET)}, metadata(outputs=["image", "scale"])
        )
    with pytest.raises(CheckpointError, match="unknown architecture"):
        save_translator(
            tmp_path / "s.safetensors",
            {"generator": build_network(RESNET)},
            metadata(networks={"generator": {"arch": "transformer"}}),
        )


def test_non_translator_files_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(CheckpointError, match="not a medtrans translator"):
        read_metadata(plain)
    pth = tmp_path / "model.pth"
    torch.save(build_network(RESNET).state_dict(), pth)
    with pytest.raises(CheckpointError, match="convert-pth"):
        load_modules(pth)
    with pytest.raises(CheckpointError, match="no such"):
        read_metadata(tmp_path / "missing.safetensors")


class _Payload:
    """Unpickling this creates a file: the attack a .pth can carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pth"
    state = {**build_network(RESNET).state_dict(), "payload": _Payload(marker)}
    if writer == "torch":
        torch.save(state, src)
    else:
        src.write_bytes(pickle.dumps(state))
    for load in (
        lambda: convert_pth(src, tmp_path / "out.safetensors", metadata={"source": "T1", "target": "CT"}),
        lambda: load_modules(src),
    ):
        with pytest.raises(CheckpointError, match="refused|not a safetensors"):
            load()
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


class _Block(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        nn = torch.nn
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class _PublicGenerator(torch.nn.Module):
    """The public generators' structure, written independently of ours.

    ``cyclegan``: one flat ``model`` Sequential (junyanz / aitorzip);
    ``reggan``: ``model_head`` (stem + downs), ``model_body`` (blocks), ``model_tail`` (ups + head).
    """

    def __init__(self, layout, ngf=8, n_blocks=3):
        super().__init__()
        nn = torch.nn
        head = [nn.ReflectionPad2d(3), nn.Conv2d(1, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU()]
        for m in (1, 2):
            head += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * m * 2), nn.ReLU()]
        body = [_Block(ngf * 4) for _ in range(n_blocks)]
        tail = []
        for m in (4, 2):
            tail += [
                nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ngf * m // 2),
                nn.ReLU(),
            ]
        tail += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Tanh()]
        if layout == "cyclegan":
            self.parts = ["model"]
            self.model = nn.Sequential(*head, *body, *tail)
        else:
            self.parts = ["model_head", "model_body", "model_tail"]
            self.model_head, self.model_body, self.model_tail = (nn.Sequential(*p) for p in (head, body, tail))

    def forward(self, x):
        for part in self.parts:
            x = getattr(self, part)(x)
        return x


@pytest.mark.parametrize("layout", ["cyclegan", "reggan"])
def test_conversion_gives_identical_outputs(tmp_path, layout):
    torch.manual_seed(0)
    public = _PublicGenerator(layout).eval()
    state = public.state_dict()
    if layout == "reggan":
        assert "model_tail.7.weight" in state and "model_body.2.conv_block.5.weight" in state
    else:
        state = {f"module.{k}": v for k, v in state.items()}  # DataParallel prefix, as often saved
    src = tmp_path / "netG_A2B.pth"
    torch.save(state, src)
    dst = convert_pth(src, tmp_path / "conv.safetensors", layout=layout, metadata={"source": "T1", "target": "CT"})
    modules, md = load_modules(dst)
    assert md.networks["generator"] == {**RESNET, "arch": "resnet", "in_channels": 1, "out_channels": 1, "dropout": 0.0}
    assert md.method == layout and md.provenance["converted_from"] == "netG_A2B.pth"
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(modules["generator"](x), public(x))


def test_conversion_rejects_other_layouts(tmp_path):
    src = tmp_path / "unet.pth"
    torch.save(build_network({"arch": "unet", "ngf": 8, "depth": 2}).state_dict(), src)
    with pytest.raises(CheckpointError, match="not a parameter of a cyclegan ResNet generator"):
        convert_pth(src, tmp_path / "x.safetensors", metadata={"source": "T1", "target": "CT"})
    with pytest.raises(CheckpointError, match="unknown layout"):
        convert_pth(src, tmp_path / "x.safetensors", layout="munit", metadata={"source": "T1", "target": "CT"})
