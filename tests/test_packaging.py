"""Packaging: the npe2 manifest is valid and found editable and from a wheel; imports stay headless."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "napari.yaml"
PLUGIN = "napari-medtrans"
NPE2 = Path(sys.executable).with_name("npe2")
PROBE = "models/_wheel_probe.txt"
GUI_PACKAGES = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy"}

INSTALLED_REPORT = """
import importlib.metadata, json, sys
import napari_medtrans
from napari_medtrans.shipped import shipped_dir
from npe2 import PluginManifest

name, manifest_file = sys.argv[1:]
manifest = PluginManifest.from_distribution(name)
expected = PluginManifest.from_file(manifest_file)
print(json.dumps({
    "package": napari_medtrans.__file__,
    "dist": str(importlib.metadata.distribution(name).locate_file("")),
    "shipped": str(shipped_dir()),
    "name": manifest.name,
    "same_commands": [c.id for c in manifest.contributions.commands]
    == [c.id for c in expected.contributions.commands],
}))
"""


@pytest.mark.slow  # spawns a process
def test_npe2_validate_passes():
    result = subprocess.run(
        [str(NPE2), "validate", PLUGIN], capture_output=True, encoding="utf-8", errors="replace", timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_io_contributions_resolve_to_callables():
    """The reader and writer python_names of the manifest exist (others are checked by their owners)."""
    commands = {c["id"]: c["python_name"] for c in yaml.safe_load(MANIFEST.read_text())["contributions"]["commands"]}
    for command in (
        "napari-medtrans.get_reader",
        "napari-medtrans.write_image",
        "napari-medtrans.write_labels",
    ):
        module, name = commands[command].split(":")
        assert callable(getattr(importlib.import_module(module), name)), commands[command]


def test_editable_install_exposes_manifest_through_entry_point():
    [entry] = [e for e in importlib.metadata.entry_points(group="napari.manifest") if e.name == PLUGIN]
    module, resource = entry.value.split(":")
    found = Path(importlib.import_module(module).__file__).parent / resource
    assert found.read_text() == MANIFEST.read_text()

    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    assert manifest.name == PLUGIN and manifest.contributions.readers


def _source_copy(tmp_path: Path) -> Path:
    """A clean copy of the project (symlinks kept as in a clone) with a probe file in sample_data/."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", "runs", "tests", "benchmarks"
        ),
    )
    probe = src / "sample_data" / PROBE
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("shipped with the wheel\n")
    return src


@pytest.mark.slow
def test_wheel_ships_real_manifest_and_sample_data(tmp_path):
    src = _source_copy(tmp_path)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        check=True,
        timeout=180,
    )
    [wheel] = (tmp_path / "dist").glob("napari_medtrans-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("napari_medtrans/napari.yaml")
        assert (info.external_attr >> 16) & 0o170000 != 0o120000, "napari.yaml is a symlink in the wheel"
        assert archive.read(info).decode() == MANIFEST.read_text()
        assert archive.read(f"napari_medtrans/_shipped/{PROBE}").decode() == "shipped with the wheel\n"
        assert "training/__init__.py" in archive.namelist()

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=180)
    assert (target / "napari_medtrans" / "napari.yaml").is_file() and not (
        target / "napari_medtrans" / "napari.yaml"
    ).is_symlink()
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", INSTALLED_REPORT, PLUGIN, str(MANIFEST)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(target) and Path(report["dist"]) == target
    assert Path(report["shipped"]).is_relative_to(target)
    assert (Path(report["shipped"]) / PROBE).read_text() == "shipped with the wheel\n"
    assert report["name"] == PLUGIN and report["same_commands"]


def test_shipped_dir_in_checkout_is_sample_data():
    from napari_medtrans.shipped import shipped_dir

    assert shipped_dir() == (ROOT / "sample_data").resolve()


@pytest.mark.slow  # spawns a process
def test_core_imports_pull_in_no_qt_or_napari():
    script = """
import json, sys
import napari_medtrans, napari_medtrans.io, napari_medtrans.shipped, training
from napari_medtrans.cli import build_parser
build_parser()
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert [m for m in loaded if m.split(".")[0] in GUI_PACKAGES] == []
