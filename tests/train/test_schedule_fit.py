"""Re-planning a run mid-way (resize_run) and fitting it to a time budget (BudgetFit): every
step-indexed schedule follows the new length, the run resumes the re-planned schedule exactly,
and the fit's arithmetic uses the speed of the last window."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from selfsup.config import Config
from selfsup.report.runs import read_run
from selfsup.train import schedule_fit
from selfsup.train.schedule_fit import BudgetFit, resize_run
from selfsup.train.schedules import run_schedules
from selfsup.train.trainer import Trainer
from tests.conftest import METHOD_OVERRIDES, tiny_config

BYOL = METHOD_OVERRIDES["byol"]


def _resize_at(step: int, total: int):
    def hook(trainer: Trainer) -> None:
        if trainer.step == step:
            resize_run(trainer, total, "test")

    return hook


def _stop_at(step: int):
    def hook(trainer: Trainer) -> None:
        if trainer.step == step:
            trainer.stop_after_step()

    return hook


def test_resize_rebuilds_every_schedule_and_records_the_new_length(tmp_path) -> None:
    cfg = tiny_config(*BYOL, "train.total_steps=10", "optim.final_weight_decay=0.01")
    trainer = Trainer(cfg, tmp_path / "run")
    lrs: list[float] = []
    momenta: list[float] = []
    trainer.step_hooks += [
        lambda t: lrs.append(t.optimizer.param_groups[0]["lr"]),
        _resize_at(3, 14),
        lambda t: momenta.append(float(t.method.target.schedule[t.step - 1])),
    ]
    old_lrs = trainer.lr_schedule.copy()
    trainer.fit()

    assert trainer.step == trainer.total_steps == trainer.last_step == 14
    new_lrs, new_wd, _ = run_schedules(cfg, trainer.peak_lr, trainer.steps_per_epoch, 14)
    # the steps taken keep their values; the rest follow the 14-step cosine to its end
    assert lrs == pytest.approx([*old_lrs[:3], *new_lrs[3:]])
    assert lrs[-1] == pytest.approx(cfg.optim.final_lr)
    assert len(trainer.lr_schedule) == len(trainer.wd_schedule) == 14
    assert np.allclose(trainer.wd_schedule, new_wd)
    assert len(trainer.method.target.schedule) == 14 and momenta[-1] == pytest.approx(1.0)
    assert Config.from_yaml(tmp_path / "run/config.yaml").train.total_steps == 14
    records = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    resize = [r for r in records if r["kind"] == "resize"]
    assert resize == [{"kind": "resize", "step": 3, "total_steps": 14, "reason": "test"}]
    assert read_run(tmp_path / "run").setup["total_steps"] == 14  # the report's done/total


def test_a_re_planned_run_stopped_and_resumed_is_the_uninterrupted_run(tmp_path) -> None:
    cfg = tiny_config(*BYOL, "train.total_steps=10")
    straight = Trainer(cfg, tmp_path / "a")
    straight.step_hooks.append(_resize_at(3, 14))
    straight.fit()

    first = Trainer(tiny_config(*BYOL, "train.total_steps=10"), tmp_path / "b")
    first.step_hooks += [_resize_at(3, 14), _stop_at(8)]
    first.fit()
    assert first.step == 8
    # the run's own config.yaml now plans 14 steps: resuming continues that schedule
    second = Trainer(Config.from_yaml(tmp_path / "b/config.yaml"), tmp_path / "b")
    second.fit(resume=True)
    assert second.step == straight.step == 14
    a, b = straight.method.state_dict(), second.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resize_refuses_a_length_the_run_has_passed(tmp_path) -> None:
    trainer = Trainer(tiny_config("train.total_steps=10"), tmp_path / "run")
    trainer.step_hooks.append(_resize_at(4, 4))
    with pytest.raises(ValueError, match="cannot re-plan the run to 4 steps: it has taken 4"):
        trainer.fit()


class _FakeTrainer:
    """What BudgetFit reads of a trainer; resize_run is replaced by a recorder."""

    def __init__(self) -> None:
        self.step, self.total_steps, self.steps_per_epoch = 0, 1000, 50
        self.dist = SimpleNamespace(active=False)
        self.cfg = SimpleNamespace(train=SimpleNamespace(batch_size=10, log_every=1))
        self.train_step = SimpleNamespace(compiled_step=None)


@pytest.mark.parametrize("most", [None, 80])
def test_budget_fit_plans_from_the_speed_of_the_last_window(monkeypatch, most) -> None:
    calls: list[tuple[int, int]] = []

    def record(trainer, total, reason=""):
        calls.append((trainer.step, total))
        trainer.total_steps = total

    monkeypatch.setattr(schedule_fit, "resize_run", record)
    now = [0.0]
    fit = BudgetFit(100, lambda: now[0], (0.1, 0.3, 0.6), margin=0.97, warmup_steps=5, most=most)
    trainer = _FakeTrainer()
    for step in range(1, 200):
        now[0] += 1.0 if step <= 20 else 2.0  # 1 s a step, then 2 s from step 21
        trainer.step = step
        fit(trainer)  # type: ignore[arg-type]
        if now[0] >= 100:
            break
    # window opens at step 6 (t=6). At t=10 (step 10): 1 step/s -> 10 + floor(1 * (97 - 10)).
    # At t=30 (step 25): 15 steps in 20 s -> 25 + floor(0.75 * 67) = 75. At t=60 (step 40):
    # 15 steps in 30 s -> 40 + floor(0.5 * 37) = 58.
    # `most` caps a plan (the recipe's own length): 97 -> 80
    first = 97 if most is None else 80
    assert calls == [(10, first), (25, 75), (40, 58)]
    assert [total for _, _, total in fit.fits] == [first, 75, 58]


def test_budget_fit_refuses_impossible_settings() -> None:
    with pytest.raises(ValueError, match="fit points in"):
        BudgetFit(60, at=(0.5, 1.0))
    with pytest.raises(ValueError, match="budget_s > 0"):
        BudgetFit(0)


def test_budget_fit_times_the_compiled_steps_apart(monkeypatch) -> None:
    """train.compile=auto compiles mid-run: the compile's seconds stay in the budget but out of
    the speed window, which opens again ``warmup_steps`` after the switch."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(
        schedule_fit, "resize_run", lambda t, total, r="": calls.append((t.step, total))
    )
    now = [0.0]
    fit = BudgetFit(100, lambda: now[0], (0.1, 0.3), margin=1.0, warmup_steps=2)
    trainer = _FakeTrainer()
    for step in range(1, 100):
        trainer.step = step
        if step == 8:  # auto compiled after step 7; step 8 compiles for 12 s, then 0.5 s a step
            trainer.train_step.compiled_step = print
        now[0] += 1.0 if step < 8 else 12.0 if step == 8 else 0.5
        fit(trainer)  # type: ignore[arg-type]
        if now[0] >= 30:
            break
    # eager window: steps 2..7 (t 2..7); the switch at step 8 (t=19) restarts it, reopened at
    # step 10 (t=20); the 10% point already passed, so the next call (step 11, t=20.5) fits at
    # 2 steps/s: 11 + floor(2 * (100 - 20.5)) = 170. At t=30 (step 30) 2 steps/s again: 170.
    assert calls == [(11, 170), (30, 170)]
