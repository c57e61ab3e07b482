"""EMATarget: the one momentum network of BYOL, MoCo and DINO (copy, per-step momentum array,
logged momentum)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops import StochasticDepth

from selfsup.nn.ema import EMATarget, momentum_schedule


def _online() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_momentum_schedule_matches_hand_computed_cosine_values() -> None:
    # m_{k+1} = 1 - (1 - 0.9) (cos(pi (k + 1) / 4) + 1) / 2 for k = 0..3:
    # cos(pi/4) = 0.70711 -> 0.91464; cos(pi/2) = 0 -> 0.95; cos(3pi/4) -> 0.98536; cos(pi) -> 1
    assert momentum_schedule(0.9, 4) == pytest.approx([0.914645, 0.95, 0.985355, 1.0], abs=1e-6)
    assert momentum_schedule(0.99, 3, "constant").tolist() == [0.99, 0.99, 0.99]
    with pytest.raises(ValueError, match="cosine"):
        momentum_schedule(0.9, 4, "linear")  # type: ignore[arg-type]


def test_update_follows_the_array_and_logs_the_momentum_used() -> None:
    online = _online()
    target = EMATarget(online, momentum_base=0.9)
    target.configure(total_steps=4)
    before = target.module[0].weight.detach().clone()
    with torch.no_grad():
        online[0].weight.add_(1.0)
    target.update(step=1, total_steps=4)  # entry 1: m_2 = 0.95
    assert float(target.momentum) == pytest.approx(0.95)
    expected = 0.95 * before + 0.05 * online[0].weight
    torch.testing.assert_close(target.module[0].weight, expected)


def test_momentum_one_freezes_the_target_and_zero_copies_the_online_network() -> None:
    online = _online()
    frozen = EMATarget(online, momentum_base=1.0, schedule="constant")
    copier = EMATarget(online, momentum_base=0.0, schedule="constant")
    start = {k: v.clone() for k, v in frozen.module.state_dict().items()}
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(-2.0).add_(0.5)
    frozen.update(0, 10)
    copier.update(0, 10)
    for key, value in frozen.module.state_dict().items():
        assert torch.equal(value, start[key]), key
    for t, o in zip(copier.module.parameters(), online.parameters()):
        assert torch.equal(t, o) and t is not o


def test_target_is_no_gradient_keeps_its_batch_norm_statistics_and_never_drops_paths() -> None:
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), StochasticDepth(0.5, "row"))
    target = EMATarget(online, momentum_base=0.5, schedule="constant")
    assert all(not p.requires_grad for p in target.parameters())
    target.module[1].running_mean.fill_(7.0)
    target.update(0, 2)
    assert torch.all(target.module[1].running_mean == 7.0)  # buffers="keep"
    assert online[2].p == 0.5 and target.module[2].p == 0.0


def test_state_dict_holds_the_copy_and_the_momentum_but_not_the_schedule() -> None:
    target = EMATarget(_online(), momentum_base=0.996)
    target.configure(100)
    keys = set(target.state_dict())
    assert "momentum" in keys and "module.0.weight" in keys
    assert not any("schedule" in k for k in keys)


def test_update_without_configure_precomputes_for_the_run_it_is_told() -> None:
    target = EMATarget(_online(), momentum_base=0.99)
    target.update(step=9, total_steps=10)  # a user loop that never called configure
    assert float(target.momentum) == 1.0
    assert target.schedule is not None and len(target.schedule) == 10
    half = 1 - 0.01 * (math.cos(math.pi * 5 / 10) + 1) / 2
    assert target.schedule[4] == pytest.approx(half)


def test_bad_momentum_is_refused_with_the_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        EMATarget(_online(), momentum_base=1.5)
