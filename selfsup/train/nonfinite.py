"""What a run does when the loss or the gradients become NaN/inf (``train.on_nonfinite``).

* ``stop`` (default): the loss is watched on the device, without a host sync per step; at the
  next logged step, epoch end or checkpoint the run stops, naming the first bad step, its
  learning rate, the precision and the likely causes, and keeps the last good checkpoint.
* ``skip``: :class:`~selfsup.train.step.TrainStep` undoes a bad step (one host sync a step);
  here it is logged and counted, and :data:`MAX_CONSECUTIVE_SKIPS` in a row stop the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from selfsup.config import Config
from selfsup.train.device import precision_name
from selfsup.train.step import StepResult

__all__ = ["MAX_CONSECUTIVE_SKIPS", "NonFiniteLossError", "NonFinitePolicy"]

# With train.on_nonfinite=skip, this many skipped steps in a row mean the model itself is broken
# (NaN/inf parameters make every later loss NaN): the run stops instead of skipping forever.
MAX_CONSECUTIVE_SKIPS = 20


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


class NonFinitePolicy:
    """The run's NaN/inf policy: watch each step's result, count skips, stop with a message.

    ``log`` appends a metrics record; ``kept_checkpoint()`` names the checkpoint that survives.
    """

    def __init__(
        self,
        cfg: Config,
        lr_schedule: np.ndarray,
        autocast_dtype: torch.dtype | None,
        device: torch.device,
        log: Callable[[dict[str, Any]], None],
        kept_checkpoint: Callable[[], str],
    ) -> None:
        self.cfg = cfg
        self.skip = cfg.train.on_nonfinite == "skip"
        self.lr_schedule = lr_schedule
        self.autocast_dtype = autocast_dtype
        self._log = log
        self._kept_checkpoint = kept_checkpoint
        self.skipped_steps = 0
        self.consecutive_skips = 0
        # Stop mode: whether every loss so far was finite, and the first step that was not.
        self._finite = torch.ones((), dtype=torch.bool, device=device)
        self._first_bad_step = torch.zeros((), dtype=torch.int64, device=device)

    def reset(self) -> None:
        """A run resumed from a (finite) checkpoint starts with a clean record."""
        self._finite.fill_(True)

    def after_step(self, result: StepResult, step: int, epoch: int) -> None:
        """Watch step ``step`` (1-based, as logged) of ``epoch`` (0-based)."""
        if result.skipped is not None:
            self._skipped(result, step, epoch)
        elif self.skip:
            self.consecutive_skips = 0
        else:
            bad = ~torch.isfinite(result.loss)
            self._first_bad_step = torch.where(self._finite & bad, step, self._first_bad_step)
            self._finite = self._finite & ~bad

    def _skipped(self, result: StepResult, step: int, epoch: int) -> None:
        part = result.skipped
        self.skipped_steps += 1
        self.consecutive_skips += 1
        self._log(
            {
                "kind": "skip",
                "step": step,
                "epoch": epoch + 1,
                "reason": f"non-finite {part}",
                "loss": float(result.loss),
                "lr": result.lr,
                "skipped_steps": self.skipped_steps,
            }
        )
        tqdm.write(
            f"warning: step {step} skipped, its {part} is NaN/inf (train.on_nonfinite=skip; "
            f"{self.skipped_steps} skipped so far)"
        )
        if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteLossError(
                self.message(
                    f"{MAX_CONSECUTIVE_SKIPS} steps in a row had a NaN/inf {part}, the last at "
                    f"step {step}: the model itself has diverged",
                    step,
                )
            )

    def raise_if_nonfinite(self) -> None:
        """Stop mode: raise if any loss so far was NaN/inf, naming the first such step (a sync)."""
        if self.skip or bool(self._finite):
            return
        step = int(self._first_bad_step)
        raise NonFiniteLossError(
            self.message(f"loss became NaN/inf at step {step}", step)
            + "; train.on_nonfinite=skip skips such steps instead"
        )

    def check_parameters(self, params: Sequence[Tensor], step: int) -> None:
        """Refuse NaN/inf parameters (one sync, at checkpoint time only)."""
        params = [p.detach() for p in params]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise NonFiniteLossError(
                self.message(f"parameters became NaN/inf by step {step}", step)
            )

    def message(self, what: str, step: int) -> str:
        """``what`` happened at ``step``, with the lr, the precision and the likely causes."""
        lr = float(self.lr_schedule[min(max(step - 1, 0), len(self.lr_schedule) - 1)])
        causes = ["learning rate too high (lower optim.base_lr)"]
        section = getattr(self.cfg, self.cfg.method, None)
        temperatures = [
            f"{self.cfg.method}.{name}={getattr(section, name)}"
            for name in ("temperature", "student_temperature", "teacher_temperature")
            if hasattr(section, name)
        ]
        if temperatures:
            causes.append(f"temperature too low ({', '.join(temperatures)})")
        causes.append("fp16 overflow (use train.precision=bf16 or fp32)")
        return (
            f"{what} (lr {lr:.3g}, precision {precision_name(self.autocast_dtype)}); the run "
            f"stopped and {self._kept_checkpoint()}. Likely causes: {'; '.join(causes)}"
        )
