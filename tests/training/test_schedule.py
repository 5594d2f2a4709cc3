"""The trainers' one-cycle schedule runs for any run length: torch's OneCycleLR fails with
ZeroDivisionError where the warm-up comes to exactly one step (5 % of a 20-step run)."""

from __future__ import annotations

import pytest
import torch

from alprd_train.common import one_cycle


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 20, 40, 2500])
@pytest.mark.parametrize("warm_up", [0.05, 0.1])
def test_the_schedule_runs_every_step_of_short_and_long_runs(steps: int, warm_up: float):
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    sched = one_cycle(opt, 1e-3, steps, warm_up)
    rates = []
    for _ in range(steps):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    assert max(rates) <= 1e-3 * 1.0001
    if steps >= 20:
        assert rates[-1] < rates[len(rates) // 10] / 10  # anneals towards the end


def test_long_runs_keep_the_warm_up_share_they_were_trained_with():
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    assert one_cycle(opt, 1e-3, 2500, 0.05).total_steps == 2500
    peak = one_cycle(opt, 1e-3, 2500, 0.05)._schedule_phases[0]["end_step"]
    assert peak == pytest.approx(0.05 * 2500 - 1)
