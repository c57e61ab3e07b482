"""Per-step schedules, precomputed as arrays indexed by the global step.

Learning rate, weight decay, EMA momentum and teacher temperature are all looked up as
``schedule[step]``: resuming at step ``s`` reads the same value the original run would have,
and plotting a schedule is plotting an array. Values are float64 NumPy arrays of length
``total_steps``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["constant_schedule", "cosine_schedule", "linear_schedule", "run_schedules"]


def _check_steps(name: str, steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(
            f"{name} must be a positive integer number of optimiser steps, got {steps!r}; "
            "compute it as epochs * steps_per_epoch"
        )


def _check_finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
) -> np.ndarray:
    r"""Linear warm-up, then a half-cosine from ``base_value`` to ``final_value``.

    With :math:`W` = ``warmup_steps``, :math:`C = T - W` cosine steps and step :math:`t`:

    .. math::

        v_t = \begin{cases}
            v_0 + (b - v_0)\, t / W & t < W \\
            f + \tfrac12 (b - f) \bigl(1 + \cos(\pi (t - W) / (C - 1))\bigr) & t \ge W
        \end{cases}

    so the warm-up starts at ``warmup_start_value`` and reaches ``base_value`` at step
    :math:`W` (the first cosine step), and the last step takes ``final_value`` exactly.
    With a single cosine step (:math:`C = 1`) that step is ``base_value``.
    Used for the learning rate (final 0), DINO's weight decay (0.04 -> 0.4) and the EMA
    momentum of BYOL/DINO (0.996 -> 1).

    Args:
        base_value: value at the end of warm-up (the peak learning rate).
        final_value: value at the last step.
        total_steps: length of the schedule, warm-up included, >= 1.
        warmup_steps: linear warm-up steps, ``0 <= warmup_steps < total_steps``.
        warmup_start_value: value at step 0 when there is a warm-up.

    Returns:
        ``[total_steps]`` float64 array.

    Example:
        >>> cosine_schedule(1.0, 0.0, total_steps=5, warmup_steps=2).round(4).tolist()
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    _check_steps("total_steps", total_steps)
    _check_finite(
        base_value=base_value, final_value=final_value, warmup_start_value=warmup_start_value
    )
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int | np.integer):
        raise ValueError(f"warmup_steps must be an integer, got {warmup_steps!r}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps) = [0, {total_steps}), got "
            f"{warmup_steps}; the warm-up must leave at least one step for the cosine phase, "
            "so shorten the warm-up or train longer"
        )
    warmup = warmup_start_value + (base_value - warmup_start_value) * (
        np.arange(warmup_steps, dtype=np.float64) / max(warmup_steps, 1)
    )  # [W]
    cosine_steps = total_steps - warmup_steps
    progress = np.arange(cosine_steps, dtype=np.float64) / max(cosine_steps - 1, 1)  # [C] 0..1
    cosine = final_value + 0.5 * (base_value - final_value) * (1.0 + np.cos(np.pi * progress))
    return np.concatenate([warmup, cosine])


def linear_schedule(start: float, end: float, total_steps: int) -> np.ndarray:
    """``total_steps`` values evenly spaced from ``start`` to ``end`` (both included).

    A single step gives ``[start]``. Used e.g. for DINO's teacher-temperature warm-up
    (0.04 -> 0.07), followed by a ``constant_schedule``.

    Example:
        >>> linear_schedule(0.04, 0.07, 4).round(3).tolist()
        [0.04, 0.05, 0.06, 0.07]
    """
    _check_steps("total_steps", total_steps)
    _check_finite(start=start, end=end)
    return np.linspace(start, end, total_steps, dtype=np.float64)


def constant_schedule(value: float, steps: int) -> np.ndarray:
    """``steps`` copies of ``value`` (float64); concatenate with others to build phases."""
    _check_steps("steps", steps)
    _check_finite(value=value)
    return np.full(steps, value, dtype=np.float64)


def run_schedules(
    cfg: Config, peak_lr: float, steps_per_epoch: int, total_steps: int | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The learning rate, weight decay and view side of every step of ``cfg``'s run, each
    ``[total_steps]`` (default ``train.planned_steps``): warm-up (``optim.warmup_epochs``) then
    a cosine from ``peak_lr`` to ``optim.final_lr``; a cosine weight decay to
    ``optim.final_weight_decay`` (DINO), else None (constant); the global views' side under
    progressive resizing (``views.progressive_*``), else None."""
    from selfsup.views.progressive import progressive_sizes

    o, v = cfg.optim, cfg.views
    total = total_steps if total_steps is not None else cfg.train.planned_steps(steps_per_epoch)
    warmup = min(round(o.warmup_epochs * steps_per_epoch), total - 1)
    lrs = cosine_schedule(peak_lr, o.final_lr, total, warmup)
    wd = None
    if o.final_weight_decay is not None:  # applied to the groups that decay
        wd = cosine_schedule(o.weight_decay, o.final_weight_decay, total)
    sizes = None
    if v.progressive_start_size is not None:
        start, until, step = v.progressive_start_size, v.progressive_until, v.progressive_step
        sizes = progressive_sizes(total, start, v.size, until, step)
    return lrs, wd, sizes
