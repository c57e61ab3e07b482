"""Fitting a run's schedule to a wall-clock budget, from the run's own throughput.

A run given B minutes should end its schedules (the lr's cosine, the EMA momentum, DINO's
weight decay and teacher temperature) when the budget ends: cut before its end, the lr has not
annealed; ended early, part of the budget is unused. A short timing before the run errs by
5-20% on a shared 2-core machine (repeated timings of one config read 591 and 675 img/s, the
run sustained 556), so a budgeted run is planned from that timing and then re-planned from
its own sustained speed at a few points of the budget (:class:`BudgetFit`, default 10%, 30%
and 60%), each time to end at ``margin`` of the budget.

Re-planning (:func:`resize_run`) rebuilds every step-indexed schedule for the new length
(:meth:`~selfsup.train.step.TrainStep.set_schedules`): the steps already taken keep the values
they had, the rest follow the new cosine. The run's ``config.yaml`` records the new
``train.total_steps`` and ``metrics.jsonl`` a ``resize`` record, so a resumed run continues
the re-planned schedule exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from selfsup.progress import say
from selfsup.train.checkpoint import atomic_write
from selfsup.train.distributed import broadcast_object
from selfsup.train.schedules import run_schedules

if TYPE_CHECKING:
    from selfsup.train.trainer import Trainer

__all__ = ["FIT_MARGIN", "BudgetFit", "resize_run"]

# A re-planned schedule ends at this share of the budget: the speed measured over the last
# window is a few percent from the speed to come, and a run cut near its end loses little.
FIT_MARGIN = 0.97


def resize_run(trainer: Trainer, total_steps: int, reason: str = "") -> None:
    """Re-plan ``trainer``'s run to ``total_steps`` optimiser steps (more than it has taken).

    Every step-indexed schedule is rebuilt for the new length; ``train.total_steps``, the
    run's ``config.yaml`` and its last step follow, and a ``resize`` record joins
    ``metrics.jsonl``. In a distributed run every process calls it at the same step with any
    value: rank 0's is used.
    """
    total_steps = int(broadcast_object(total_steps))
    if total_steps <= trainer.step:
        raise ValueError(
            f"cannot re-plan the run to {total_steps} steps: it has taken {trainer.step}; "
            "give a total beyond the steps taken, or stop the run (stop_after_step)"
        )
    cfg, step = trainer.cfg, trainer.train_step
    cfg.train.total_steps = total_steps
    step.set_schedules(*run_schedules(cfg, step.peak_lr, trainer.steps_per_epoch, total_steps))
    trainer.total_steps = total_steps
    trainer.last_step = min(total_steps, cfg.train.max_steps or total_steps)
    trainer.checkpoints.last_step = trainer.last_step
    trainer.nonfinite.lr_schedule = step.lr_schedule
    if trainer.dist.is_main:
        text = cfg.to_yaml()

        def write_config(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(trainer.run_dir / "config.yaml", write_config)
    record = {"kind": "resize", "step": trainer.step, "total_steps": total_steps}
    trainer.metrics.append({**record, "reason": reason} if reason else record)


class BudgetFit:
    """A trainer step hook that re-plans the run to end at ``margin`` of ``budget_s`` seconds
    of training, from the speed the run sustained since the previous fit point.

    Args:
        budget_s: seconds of training the run may take.
        clock: seconds of training so far (default: since the hook's first call); a clock
            that pauses during evaluations keeps them out of the speed and the budget.
        at: fractions of the budget at which the run is re-planned.
        margin: the re-planned schedule ends at this share of the budget.
        warmup_steps: steps (from the hook's first call) left out of the first speed window:
            the first steps allocate, autotune and fill caches. When the step is compiled
            mid-run (``train.compile=auto``) the window starts again this many steps later:
            the compile is in the budget, but not in the speed of the steps to come.
        most: never plan more steps than this (e.g. the recipe's own epochs).

    Example (a run of at most 10 minutes; its schedule from a first guess of the length)::

        trainer = Trainer(cfg)  # cfg.train.total_steps: the first guess
        trainer.step_hooks.append(BudgetFit(600))
        trainer.fit()  # the budget itself is the caller's to enforce (stop_after_step)
    """

    def __init__(
        self,
        budget_s: float,
        clock: Callable[[], float] | None = None,
        at: Sequence[float] = (0.1, 0.3, 0.6),
        margin: float = FIT_MARGIN,
        warmup_steps: int = 5,
        most: int | None = None,
    ) -> None:
        if budget_s <= 0 or not 0 < margin <= 1 or any(not 0 < f < 1 for f in at):
            raise ValueError(
                f"need budget_s > 0, 0 < margin <= 1 and fit points in (0, 1), got {budget_s}, "
                f"{margin} and {list(at)}"
            )
        self.budget_s = budget_s
        self.margin = margin
        self.pending = sorted(at)
        self.warmup_steps = warmup_steps
        self.most = most
        self._clock = clock
        self._start: float | None = None
        self._first_step: int | None = None
        self._compiled = False
        self.window: tuple[int, float] | None = None  # (step, seconds) where the window opened
        self.fits: list[tuple[float, int, int]] = []  # (seconds, step, new total) of each fit

    def elapsed(self) -> float:
        if self._clock is not None:
            return self._clock()
        if self._start is None:
            self._start = time.perf_counter()
        return time.perf_counter() - self._start

    def __call__(self, trainer: Trainer) -> None:
        distributed = trainer.dist.active
        if distributed and trainer.step % trainer.cfg.train.log_every:
            return  # distributed: every process decides at the same (logged) steps
        decision = self._decide(trainer, self.elapsed())
        if distributed:
            decision = broadcast_object(decision)  # rank 0's clock decides for all
        if decision is not None:
            now, total, reason = decision
            resize_run(trainer, total, reason)
            self.fits.append((now, trainer.step, total))
            epochs = total / trainer.steps_per_epoch
            say(
                f"schedule re-planned at step {trainer.step}: {total} steps = {epochs:.2f} "
                f"epochs ({reason})"
            )

    def _decide(self, trainer: Trainer, now: float) -> tuple[float, int, str] | None:
        """(seconds, new total, reason) when the run is re-planned at this step, else None."""
        compiled = trainer.train_step.compiled_step is not None
        if self._first_step is None or compiled != self._compiled:  # start, or now compiled
            self._first_step, self._compiled, self.window = trainer.step, compiled, None
        if self.window is None:
            if trainer.step - self._first_step >= self.warmup_steps:
                self.window = (trainer.step, now)
            return None
        if not self.pending or now < self.pending[0] * self.budget_s:
            return None
        while self.pending and now >= self.pending[0] * self.budget_s:
            self.pending.pop(0)
        opened_step, opened_s = self.window
        self.window = (trainer.step, now)
        if now <= opened_s or trainer.step <= opened_step:
            return None
        steps_per_s = (trainer.step - opened_step) / (now - opened_s)
        total = trainer.step + math.floor(steps_per_s * (self.margin * self.budget_s - now))
        total = min(total, self.most or total)
        if total <= trainer.step or total == trainer.total_steps:
            return None  # past the planned end already (the budget stops the run), or no change
        img_s = steps_per_s * trainer.cfg.train.batch_size
        reason = f"{img_s:.0f} img/s sustained; ends at {self.margin:.0%} of {self.budget_s:.0f} s"
        return now, total, reason
