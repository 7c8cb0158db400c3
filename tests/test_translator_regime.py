"""Every shipped translator records its data regime and deviations, and `medtrans models`
shows them (table columns, JSON keys)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_medtrans.checkpoint import CheckpointError, read_metadata
from napari_medtrans.cli import main
from napari_medtrans.shipped import shipped_dir

SHIPPED = {
    "t1-ct-resnet": "paired",
    "t1-ct-uapi-supervised": "paired",
    "t1-ct-reggan": "misaligned",
    "t1-ct-uapi-unpaired": "unpaired",
    "t1-ct-regression": "paired",
    "t1-ct-regression-phantom": "paired",
}


@pytest.fixture
def shipped_only(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(tmp_path / "none"))


def test_models_json_shows_regime_and_deviations(shipped_only, capsys):
    assert main(["models", "--json"]) == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out) if i["origin"] == "shipped"}
    assert {name: info["regime"] for name, info in infos.items()} == SHIPPED
    assert infos["t1-ct-uapi-supervised"]["deviations"]["lambda_paired"] == 10.0
    unpaired = infos["t1-ct-uapi-unpaired"]["deviations"]
    assert not {"lambda_paired", "lambda_paired_l1", "nll_beta"} & set(unpaired)  # no supervision


def test_models_table_has_regime_and_deviation_columns(shipped_only, capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[header.index("OUTPUTS") + 1 : header.index("OUTPUTS") + 3] == ["REGIME", "DEVIATIONS"]
    row = next(line for line in lines if line.startswith("t1-ct-uapi-supervised "))
    assert " paired " in row and "lambda_paired," in row


def test_unknown_regime_is_refused():
    meta = read_metadata(shipped_dir() / "models" / "t1-ct-resnet.safetensors")
    with pytest.raises(CheckpointError, match="regime must be one of"):
        dataclasses.replace(meta, regime="semi").validate()
