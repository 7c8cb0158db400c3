"""SynDiff and UNSB steps: the networks each backward reaches in the reference order, the
diffusion and bridge schedules, and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny_translators import TINY_UNET
from test_method_steps import RecordingContext
from test_training_resume import test_resume_is_exact as resume_is_exact

from napari_medtrans.nets.syndiff import SynDiffGenerator, alpha_bars
from napari_medtrans.nets.time_conditioned import SBResnetGenerator, bridge_times
from training.methods import get_method

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {
    "unsb": {"ngf": 8, "ndf": 8, "n_blocks": 2, "num_patches": 16, "nce_features": 16, "nce_layers": [0, 4, 7, 10, 11]},
    "syndiff": {"ngf": 8, "ndf": 8, "n_blocks": 2, **TINY_UNET},
}
DISCRIMINATORS = {"D_diff_A", "D_diff_B", "D_A", "D_B"}
GENERATORS = {"G_diff_A", "G_diff_B", "G_AB", "G_BA"}
EXPECTED = {
    "unsb": [({"D"}, ["D"]), ({"E"}, ["E"]), ({"G", "F"}, ["G", "F"])],
    "syndiff": [(DISCRIMINATORS, ["D"]), (GENERATORS, ["G"])],
}


def build(name: str):
    cls = get_method(name)
    torch.manual_seed(0)
    return cls(
        cls.Options(**OPTIONS[name]), in_channels=1, out_channels=1, lr=cls.default_lr, device=torch.device("cpu")
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_step_moves_the_right_networks_in_reference_order(name):
    method = build(name)
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in method.nets.items()}
    ctx = RecordingContext(method)
    ctx.iteration = 1  # SynDiff: the lazy R1 penalty is due
    generator = torch.Generator().manual_seed(1)
    batch = {k: torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1 for k in ("source", "target")}
    losses = method.train_step(batch, ctx)
    assert ctx.events == EXPECTED[name]
    moved = {
        k for k, net in method.nets.items() if any(not torch.equal(a, b) for a, b in zip(before[k], net.parameters()))
    }
    expected = set().union(*(changed for changed, _ in EXPECTED[name]))
    if name == "syndiff":
        expected.add("G_diff_B_ema")  # the exported generator follows G_diff_B by EMA
        assert "R1" in losses and losses["R1"] > 0
    assert moved == expected
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.requires_grad for p in method.parameters())


def test_syndiff_exports_the_ema_generator_with_its_steps():
    method = build("syndiff")
    spec = method.translator_specs()["generator"]
    assert spec["arch"] == "syndiff" and spec["stochastic"] is True and spec["steps"] == 4
    assert method.translator_modules()["generator"] is method.nets["G_diff_B_ema"]


def test_diffusion_schedule_and_posterior():
    bars = alpha_bars(4, 0.1, 20.0)
    assert bars[0] == 1 and np.all(np.diff(bars) < 0) and bars[-1] < 1e-3
    net = SynDiffGenerator(nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_levels=[], nz=8, z_emb_dim=16)
    x0, x1 = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    one, zero = torch.ones(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(net.posterior(x0, x1, one, zero, None), x0)  # the last step lands on x̂₀
    noise = torch.Generator().manual_seed(0)
    draws = torch.stack([net.posterior(x0, x1, 2 * one, one, noise) for _ in range(400)])
    bar2, bar1 = bars[2], bars[1]
    variance = (1 - bar2 / bar1) * (1 - bar1) / (1 - bar2)
    assert draws.var(0).mean().item() == pytest.approx(variance, rel=0.15)


def test_bridge_times_and_steps():
    times = bridge_times(5)
    assert times[0] == 0 and times[1] == 0.5 and times[-1] == 1 and np.all(np.diff(times) > 0)
    net = SBResnetGenerator(ngf=8, n_blocks=2, num_timesteps=5)
    assert net.steps == 5
    net.steps = 2
    with pytest.raises(ValueError, match="1..5"):
        net.steps = 6
    with pytest.raises(ValueError, match="stochastic"):
        SBResnetGenerator(ngf=8, n_blocks=2, stochastic=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["unsb", "syndiff"])
def test_resume_is_exact(tmp_path, method):
    resume_is_exact(tmp_path, method)
