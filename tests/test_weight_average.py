"""Weight averaging of translators: exact means, recorded parts, refusals that name the file."""

import pytest
import torch
from safetensors.torch import load_file

from napari_medtrans.checkpoint import CheckpointError, read_metadata, update_metadata
from tests.test_inference import RESNET, make_translator
from training.weight_average import average_translators


def test_average_is_the_mean_of_every_float_tensor(tmp_path):
    paths = [make_translator(tmp_path / f"run{seed}.safetensors", seed=seed) for seed in range(3)]
    out = tmp_path / "soup.safetensors"
    metadata = average_translators(paths, out)
    parts = [load_file(str(p)) for p in paths]
    soup = load_file(str(out))
    assert soup.keys() == parts[0].keys()
    floats = [k for k, v in soup.items() if v.is_floating_point()]
    assert floats and any(not torch.equal(parts[0][k], parts[1][k]) for k in floats)
    for key in floats:
        expected = (sum(p[key].double() for p in parts) / 3).float()
        torch.testing.assert_close(soup[key], expected, rtol=0, atol=1e-7)
    for key in set(soup) - set(floats):
        assert torch.equal(soup[key], parts[0][key])
    assert metadata == read_metadata(out)
    assert metadata.provenance["averaged_from"] == [str(p) for p in paths]
    assert metadata.deviations["weight_average"] == 3
    with pytest.raises(FileExistsError):
        average_translators(paths, out)


def test_refuses_one_file_other_networks_and_other_inputs(tmp_path):
    a = make_translator(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="at least two"):
        average_translators([a], tmp_path / "soup.safetensors")
    wider = make_translator(tmp_path / "wider.safetensors", generator={**RESNET, "ngf": 16})
    with pytest.raises(CheckpointError, match="wider.safetensors: its networks differ"):
        average_translators([a, wider], tmp_path / "soup.safetensors")
    context = make_translator(tmp_path / "b.safetensors", seed=1)
    update_metadata(context, {"size": 128})
    with pytest.raises(CheckpointError, match="b.safetensors: its size differs"):
        average_translators([a, context], tmp_path / "soup.safetensors")
    assert not (tmp_path / "soup.safetensors").exists()
