"""The docs: the API reference builds from the docstrings; the architecture page names real things."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


@pytest.mark.slow  # imports every module (torch, napari) in pdoc: ~40 s on a loaded 2-core machine
def test_api_reference_builds(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        build_docs = importlib.import_module("build_docs")
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    index = build_docs.build(tmp_path)
    assert index.is_file()
    contract = (tmp_path / "napari_medtrans" / "contract.html").read_text(encoding="utf-8")
    assert "RunStatus" in contract and "Autocast dtype of the training step" in contract
    base = (tmp_path / "training" / "methods" / "base.html").read_text(encoding="utf-8")
    assert "learning rate decays linearly to 0" in base  # an option's attribute docstring


def test_architecture_names_files_and_modules_that_exist():
    paths = set(re.findall(r"`((?:napari_medtrans|training|tests|scripts|docs)/[\w/.]+\.(?:py|md))`", ARCHITECTURE))
    assert len(paths) >= 8
    assert [p for p in paths if not (ROOT / p).exists() and "<name>" not in p] == []
    modules = set(re.findall(r"`(napari_medtrans(?:\.\w+)+)", ARCHITECTURE))
    missing = []
    for name in modules:
        parts = name.split(".")
        while parts and not (ROOT / Path(*parts)).with_suffix(".py").exists() and not (ROOT / Path(*parts)).is_dir():
            parts.pop()  # napari_medtrans.io.layer_geometry → napari_medtrans/io.py
        if len(parts) < 2:
            missing.append(name)
    assert missing == []
