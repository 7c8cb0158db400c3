"""Every registered method trains a few iterations on tiny phantom data and yields a
translator the runtime loads (σ for UAPI, a field for RegGAN)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _training_helpers import TINY_MODEL, tiny_config

from napari_medtrans.rundir import RunDir

pytestmark = pytest.mark.slow  # trains every method


def test_every_registered_method_is_covered():
    from training.methods import REGISTRY

    assert set(REGISTRY) == set(TINY_MODEL)


@pytest.mark.parametrize("method", sorted(TINY_MODEL))
def test_method_trains_and_exports_translator(method, tmp_path):
    from napari_medtrans.inference import load_translator
    from napari_medtrans.phantom import generate_subject
    from training.loop import train

    run = RunDir(tmp_path / method)
    cfg = tiny_config(method, run.path)
    assert train(cfg) == 0, run.tail_log()
    status = run.read_status()
    assert status["state"] == "finished" and status["iteration"] == cfg.iterations
    records, _ = run.read_metrics()
    losses = [r for r in records if "it_per_s" in r]
    assert {2, 4, 6} <= {r["iteration"] for r in losses}
    for record in losses:
        values = [v for k, v in record.items() if k not in ("iteration", "time", "lr", "it_per_s")]
        assert values and all(math.isfinite(v) for v in values)
    preview = run.latest_preview()
    assert preview is not None and {"input", "output", "target"} <= set(preview["arrays"])
    assert (run.checkpoints_dir / "last.safetensors").is_file()

    translator = load_translator(run.translator_path, device="cpu")
    meta = translator.metadata
    assert meta.method == method and meta.source == "T1" and meta.target == "CT"
    subject = generate_subject(99, shape=(4, 32, 32))
    volume = subject.t1
    labels = subject.labels if meta.label_classes else None  # label-conditioned translators (SPADE)
    result = translator.translate_volume(volume, labels=labels)
    assert result.image.shape == volume.shape and np.isfinite(result.image).all()
    if method in ("uapi", "ugac"):  # the methods with a scale head
        assert "scale" in meta.outputs and "scale" in preview["arrays"]
        assert result.scale.shape == volume.shape and (result.scale > 0).all()
    else:
        assert result.scale is None
    if method == "reggan":
        assert "field" in meta.outputs and "registration" in meta.networks
        assert preview["arrays"]["field"].shape == (2, 32, 32)
        reg = translator.register(result.image, result.image, spacing=(1.0, 1.0, 4.0))
        assert reg.field.shape == (4, 2, 32, 32)


@pytest.mark.parametrize("method", sorted(TINY_MODEL))
def test_method_trains_with_bf16_autocast(method, tmp_path, native_bf16):
    """``--precision bf16``: the step runs under bfloat16 autocast, losses stay finite and
    the exported weights stay float32."""
    import torch
    from safetensors import safe_open

    from training.loop import train

    run = RunDir(tmp_path / method)
    cfg = tiny_config(method, run.path, iterations=4, extra=["--precision", "bf16"])
    assert cfg.precision == "bf16"
    assert train(cfg) == 0, run.tail_log()
    assert any("precision bfloat16" in line for line in run.tail_log())
    records, _ = run.read_metrics()
    values = [
        v for r in records if "it_per_s" in r for k, v in r.items() if k not in ("iteration", "time", "lr", "it_per_s")
    ]
    assert values and all(math.isfinite(v) for v in values)
    with safe_open(str(run.translator_path), "pt") as weights:
        dtypes = {weights.get_tensor(k).dtype for k in weights.keys()}  # noqa: SIM118 (safe_open is no dict)
    assert {d for d in dtypes if d.is_floating_point} == {torch.float32}
    assert dtypes <= {torch.float32, torch.int64}  # int64: batch norm's num_batches_tracked (SPADE)
