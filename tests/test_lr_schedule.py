"""The shared loop's learning-rate decay: linear (CycleGAN family) and cosine (SynDiff, UGAC)."""

from __future__ import annotations

import pytest
import torch

from training.loop import decay_factor
from training.methods import get_method


def test_linear_decay_holds_then_falls_to_zero():
    factors = [decay_factor(i, 10, 0.5) for i in range(1, 11)]
    assert factors[:5] == [1.0] * 5
    assert factors[5:] == pytest.approx([5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert decay_factor(7, 10, 1.0) == 1.0  # start 1: constant


@pytest.mark.parametrize("eta_min", [0.0, 1e-5])
def test_cosine_decay_matches_cosine_annealing_lr(eta_min):
    """Iteration e + 1 gets the rate torch's CosineAnnealingLR gives at step e (T_max = iterations)."""
    total, initial = 12, 1.6e-4
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=initial)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=eta_min)
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    ours = [eta_min + (initial - eta_min) * decay_factor(i, total, 0.0, "cosine") for i in range(1, total + 1)]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("method", "floor"), [("syndiff", 1e-5), ("ugac", 0.0)])
def test_methods_with_the_reference_cosine(method, floor):
    options = get_method(method).Options()
    assert (options.lr_decay_start, options.lr_schedule, getattr(options, "lr_min", 0.0)) == (0.0, "cosine", floor)
