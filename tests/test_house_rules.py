"""The house rules check themselves: lint (ruff), types (mypy) and import contracts (import-linter).

Their configuration lives in pyproject.toml; these tests run the tools, so the
README's test command fails when a rule is broken.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_medtrans

try:
    import tomllib
except ImportError:  # Python 3.10: mypy depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
BIN = Path(sys.executable).parent
GUI_FACES = ("_widgets", "_napari")


def _run(*command: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})},
    )


def test_ruff_lint_passes():
    done = _run(sys.executable, "-m", "ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_holds_for_the_whole_tree():
    done = _run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_passes():
    done = _run(sys.executable, "-m", "mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_are_kept():
    done = _run(str(BIN / "lint-imports"), "--no-cache")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" in done.stdout and "0 broken" in done.stdout


def test_core_contract_lists_every_core_module():
    """A new core module must join the "never imports a GUI" contract (or the contract would miss it)."""
    contract = PYPROJECT["tool"]["importlinter"]["contracts"][0]
    core = {
        f"napari_medtrans.{m.name}"
        for m in pkgutil.iter_modules(napari_medtrans.__path__)
        if m.name not in GUI_FACES and m.name != "_shipped"
    }
    assert set(contract["source_modules"]) == core | {"training"}
    init = ast.parse((ROOT / "napari_medtrans" / "__init__.py").read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(init) if isinstance(n, (ast.Import, ast.ImportFrom))]  # not in the contract


def test_import_contracts_catch_a_violation(tmp_path):
    """In a copy of the tree, a core module importing Qt and a widget importing the trainer are caught."""
    for package in ("napari_medtrans", "training"):
        shutil.copytree(
            ROOT / package, tmp_path / package, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "_shipped")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "napari_medtrans" / "constants.py", "a") as handle:
        handle.write("\nimport qtpy  # a house-rule violation\n")
    with open(tmp_path / "napari_medtrans" / "_widgets" / "overlays.py", "a") as handle:
        handle.write("\nimport training.loop  # a house-rule violation\n")
    done = _run(str(BIN / "lint-imports"), "--no-cache", cwd=tmp_path)
    assert done.returncode != 0
    assert "napari_medtrans.constants is not allowed to import qtpy" in done.stdout
    assert "napari_medtrans._widgets is not allowed to import training" in done.stdout
    assert "Contracts: 1 kept, 3 broken." in done.stdout  # the contract module also imports constants


def test_one_docstring_style():
    """Google style: numpy "Parameters / ----------" sections only in the files listed as not yet converted."""
    pending = {path for path, codes in PYPROJECT["tool"]["ruff"]["lint"]["per-file-ignores"].items() if "D407" in codes}
    numpy_style = re.compile(r"^\s+(Parameters|Returns|Raises|Attributes|Yields)\n\s+-{3,}$", re.MULTILINE)
    offenders = {
        str(p.relative_to(ROOT))
        for folder in ("napari_medtrans", "training", "scripts", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if "_shipped" not in p.parts and numpy_style.search(p.read_text(encoding="utf-8"))
    }
    assert offenders <= pending, f"numpy-style docstrings (use Google style): {sorted(offenders - pending)}"
