"""The defaults table in docs/training.md matches the registered method defaults, row by row,
and lists every option of every method (so a default cannot drift silently)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from training.methods import REGISTRY

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"
HEADER = "| method | hyper-parameter | paper value | our default | source |"
CLASS_ATTRIBUTES = ("lr", "betas", "init_type")


def table_rows() -> list[list[str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER) + 2  # skip the separator row
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def table() -> dict[tuple[str, str], object]:
    """(method, hyper-parameter) → our default as written in the docs (JSON in backticks)."""
    found: dict[tuple[str, str], object] = {}
    for methods, key, _paper, ours, _source in table_rows():
        for method in methods.split(", "):
            entry = (method, key.strip("`"))
            assert entry not in found, f"{entry} appears twice in {DOC.name}"
            found[entry] = json.loads(ours.strip("`"))
    return found


def registered(method: str) -> dict[str, object]:
    cls = REGISTRY[method]
    values: dict[str, object] = {"lr": cls.default_lr, "betas": list(cls.betas), "init_type": cls.init_type}
    defaults = cls.Options()
    values.update({f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)})
    return values


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_table_matches_registered_defaults(method):
    documented = {key: value for (m, key), value in table().items() if m == method}
    assert documented == registered(method)


def test_table_names_only_registered_methods():
    assert {method for method, _ in table()} == set(REGISTRY)
