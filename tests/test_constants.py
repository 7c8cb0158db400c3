"""One home per constant: the copies that remain are the same objects, and no new copy appears."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import yaml

from napari_medtrans import constants

ROOT = Path(__file__).resolve().parents[1]
LISTS = {
    name: set(getattr(constants, name))
    for name in (
        "MODALITIES",
        "REGIMES",
        "PRECISIONS",
        "TRAIN_PRECISIONS",
        "DEVICES",
        "READ_SUFFIXES",
        "WRITE_SUFFIXES",
    )
}


def test_napari_manifest_patterns_are_the_io_suffixes():
    manifest = yaml.safe_load((ROOT / "napari.yaml").read_text(encoding="utf-8"))["contributions"]
    patterns = {p.removeprefix("*").lower() for r in manifest["readers"] for p in r["filename_patterns"]}
    assert patterns == set(constants.READ_SUFFIXES)
    for writer in manifest["writers"]:
        assert tuple(writer["filename_extensions"]) == constants.WRITE_SUFFIXES


def test_modules_use_the_shared_constants():
    from napari_medtrans import inference, intensity, io, metrics
    from napari_medtrans.phantom import cohort, render

    assert tuple(inference.PRECISIONS) == constants.PRECISIONS and inference.DEVICES is constants.DEVICES
    assert io.READ_SUFFIXES is constants.READ_SUFFIXES and io.WRITE_SUFFIXES is constants.WRITE_SUFFIXES
    assert cohort.REGIMES is constants.REGIMES and get_args(cohort.Regime) == constants.REGIMES
    assert metrics.CT_RANGE == (-1024.0, 3000.0) and render.CT_RANGE == (-1024.0, 3071.0)
    window = intensity.ct_window()
    assert (window.low, window.high) == constants.CT_METRIC_RANGE


def _copies(path: Path) -> list[str]:
    """Literal tuples/lists in ``path`` that re-state a shared list, and bare ``-1024`` HU values."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_literal_hint = {
        id(node.slice)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal"
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List)) and id(node) not in in_literal_hint and len(node.elts) >= 3:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.elts) and all(isinstance(v, str) for v in values):
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} re-states constants.{name}"
                    for name, items in LISTS.items()
                    if set(values) == items
                ]
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and node.operand.value == 1024
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} writes -1024 instead of constants.AIR_HU")
    return found


def test_no_module_restates_a_shared_constant():
    files = [
        p
        for folder in ("napari_medtrans", "training")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p.name != "constants.py" and "_shipped" not in p.parts
    ]
    assert len(files) > 40
    assert [c for p in files for c in _copies(p)] == []
