"""TrainStep, one behaviour a test: the schedules at the given step, clipping, the order of the
method's hooks around the optimiser step, skip mode, and the run's totals for the method's
schedules. A BYOL on an MLP over 8x8 grey images (BatchNorm buffers, an EMA target)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from selfsup import build
from selfsup.methods import Progress
from selfsup.methods.byol import BYOL, byol_predictor, byol_projector
from selfsup.train.optim import build_optimizer, param_groups
from selfsup.train.step import TrainStep
from selfsup.views import MultiViewTransform, byol_views
from tests.conftest import tiny_config

STEPS, PER_EPOCH = 6, 3


def _method() -> BYOL:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
    recipe = MultiViewTransform(byol_views(8), mean=[0.5], std=[0.25])
    return BYOL(backbone, byol_projector(32, 64, 16), byol_predictor(16, 64), recipe)


def _images(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8, generator=gen)


def _step(method: BYOL | None = None, **kwargs: Any) -> TrainStep:
    method = method if method is not None else _method()
    optimizer = build_optimizer("sgd", param_groups(method, 0.1), lr=0.0, weight_decay=0.1)
    lrs = kwargs.pop("lr_schedule", np.linspace(0.1, 0.6, STEPS))
    return TrainStep(method, optimizer, lrs, PER_EPOCH, **kwargs)


def _record_optimizer_steps(step: TrainStep, record: Any) -> None:
    real = step.optimizer.step

    def recording(*args: Any, **kwargs: Any) -> Any:
        record()
        return real(*args, **kwargs)

    step.optimizer.step = recording  # type: ignore[method-assign]


def _grad_norms(method: nn.Module) -> list[float]:
    return [float(p.grad.norm()) for p in method.parameters() if p.grad is not None]


def test_lr_and_weight_decay_come_from_the_arrays_at_the_given_step() -> None:
    lrs, wds = np.linspace(0.1, 0.6, STEPS), np.linspace(1.0, 2.0, STEPS)
    step = _step(lr_schedule=lrs, wd_schedule=wds)
    groups = step.optimizer.param_groups
    seen: list[list[tuple[float, float]]] = []
    _record_optimizer_steps(
        step, lambda: seen.append([(g["lr"], g["weight_decay"]) for g in groups])
    )
    results = [step(_images(k), k) for k in (4, 1)]
    # The decaying group follows the wd array; the bias/norm group keeps 0.
    assert seen == [[(lrs[4], wds[4]), (lrs[4], 0.0)], [(lrs[1], wds[1]), (lrs[1], 0.0)]]
    assert [r.lr for r in results] == [lrs[4], lrs[1]]


def _hook_events(step: TrainStep) -> list[tuple[str, Any]]:
    """Record the hooks and the optimiser step in order, with the gradient norms each sees."""
    events: list[tuple[str, Any]] = []
    method = step.method
    method.before_optimizer_step = lambda p: events.append(("before", p, _grad_norms(method)))  # type: ignore[method-assign]
    _record_optimizer_steps(step, lambda: events.append(("step", None)))
    method.after_step = lambda p: events.append(("after", p))  # type: ignore[method-assign]
    return events


@pytest.mark.parametrize("mode", ["global", "per_tensor"])
def test_clipping_is_applied_before_the_hook_and_the_optimizer_step(mode: str) -> None:
    """before_optimizer_step sees clipped gradients, the optimiser step follows it, after_step
    follows that; both hooks get the step's Progress."""
    unclipped = _step()
    before_clipping = _hook_events(unclipped)
    unclipped(_images(), 4)
    assert max(before_clipping[0][2]) > 0.01  # clipping to 0.01 has work to do

    step = _step(clip_grad=0.01, clip_mode=mode)
    events = _hook_events(step)
    step(_images(), 4)
    assert [e[0] for e in events] == ["before", "step", "after"]
    progress = Progress(step=4, total_steps=STEPS, epoch=1, steps_per_epoch=PER_EPOCH)
    assert events[0][1] == progress and events[2][1] == progress
    clipped = events[0][2]
    if mode == "global":
        assert sum(n**2 for n in clipped) ** 0.5 == pytest.approx(0.01, rel=1e-4)
    else:
        assert max(clipped) <= 0.01 * (1 + 1e-4)


def _poison(step: TrainStep, part: str) -> None:
    method = step.method
    if part == "loss":
        training_step = method.training_step

        def poisoned(views: list[torch.Tensor]) -> Any:
            out = training_step(views)
            out.loss = out.loss * float("nan")
            return out

        method.training_step = poisoned  # type: ignore[method-assign]
    else:
        weight = next(method.projector.parameters())
        weight.register_hook(lambda g: g * float("nan"))


@pytest.mark.parametrize("part", ["loss", "gradients"])
def test_skip_mode_restores_the_buffers_and_takes_no_step(part: str) -> None:
    step = _step(skip_nonfinite=True)
    step(_images(0), 0)  # a good step first: momentum buffers, moved BN statistics
    before = {k: v.clone() for k, v in step.method.state_dict().items()}
    optimizer_state = {k: v["momentum_buffer"].clone() for k, v in step.optimizer.state.items()}
    calls: list[str] = []
    _record_optimizer_steps(step, lambda: calls.append("step"))
    after_step = step.method.after_step
    step.method.after_step = lambda p: (calls.append("after"), after_step(p))  # type: ignore[method-assign]
    _poison(step, part)

    result = step(_images(1), 1)
    assert result.skipped == part and calls == []
    after = step.method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert all(
        torch.equal(v, step.optimizer.state[p]["momentum_buffer"])
        for p, v in optimizer_state.items()
    )
    assert all(p.grad is None for p in step.method.parameters())


def test_without_skip_mode_a_nan_step_is_taken_and_reported_by_its_loss() -> None:
    step = _step()
    _poison(step, "loss")
    result = step(_images(), 0)
    assert result.skipped is None and torch.isnan(result.loss)


def test_configure_schedules_gets_the_run_totals() -> None:
    cfg = tiny_config("train.epochs=3", "views.mean=[0.5]", "views.std=[0.25]")
    method = build.make_method(cfg, in_channels=1)
    calls: list[tuple[int, int]] = []
    method.configure_schedules = lambda total, per_epoch: calls.append((total, per_epoch))  # type: ignore[method-assign]
    step = TrainStep.from_config(cfg, method, steps_per_epoch=7, device="cpu")
    assert calls == [(21, 7)] and step.total_steps == len(step.lr_schedule) == 21

    method = _method()
    method.configure_schedules = lambda total, per_epoch: calls.append((total, per_epoch))  # type: ignore[method-assign]
    _step(method)
    assert calls[1] == (STEPS, PER_EPOCH)


def test_views_follow_the_memory_format_and_steps_stay_inside_the_run() -> None:
    step = _step(channels_last=True)
    views = step.views(_images(), torch.Generator().manual_seed(0))
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in views)
    with pytest.raises(IndexError, match="outside this run's 6 steps"):
        step.update(views, STEPS)
