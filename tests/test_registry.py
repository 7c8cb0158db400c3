"""Registry: user dir, registered runs, precedence, resolve by name or path."""

import pytest
from test_inference import make_translator

from napari_medtrans import registry
from napari_medtrans.checkpoint import CheckpointError


@pytest.fixture()
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("MEDTRANS_MODELS_DIR", str(folder))
    return folder


def test_user_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDTRANS_MODELS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert registry.user_dir() == tmp_path / "medtrans" / "models"


def test_runs_then_user_then_shipped(tmp_path, user_dir):
    make_translator(user_dir / "shared.safetensors")
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    make_translator(run / "translator.safetensors", seed=1)
    assert registry.register_run(run) == (run / "translator.safetensors").resolve()
    registry.register_run(run)  # registering twice keeps one entry
    infos = {info.name: info for info in registry.list_translators()}
    assert infos["translator"].origin == "run" and infos["shared"].origin == "user"
    assert registry.resolve("shared") == user_dir / "shared.safetensors"
    assert registry.resolve(run) == run / "translator.safetensors"
    assert registry.resolve(user_dir / "shared.safetensors") == user_dir / "shared.safetensors"
    names = [info.name for info in registry.list_translators()]
    assert len(names) == len(set(names))


def test_run_shadows_user_translator_of_same_name(tmp_path, user_dir):
    make_translator(user_dir / "translator.safetensors")
    run = tmp_path / "run"
    run.mkdir()
    make_translator(run / "translator.safetensors", seed=1)
    registry.register_run(run)
    assert registry.resolve("translator") == (run / "translator.safetensors").resolve()


def test_unknown_and_broken(tmp_path, user_dir):
    (user_dir / "broken.safetensors").write_bytes(b"\x80\x04not safetensors")
    make_translator(user_dir / "ok.safetensors")
    with pytest.warns(UserWarning, match="broken"):
        names = [info.name for info in registry.list_translators()]
    assert "ok" in names
    with pytest.raises(CheckpointError, match="known translators: .*ok"):
        registry.resolve("nope")
    with pytest.raises(CheckpointError, match="translator.safetensors"):
        registry.resolve(tmp_path)
    with pytest.raises(CheckpointError):
        registry.register_run(tmp_path / "missing")
