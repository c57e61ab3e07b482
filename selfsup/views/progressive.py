"""Progressive resizing (FFCV, Leclerc et al. 2022): the views' side as a function of the step.

Early in training the views are drawn at a smaller side, so the backbone's step costs less (a
convolution's cost grows with the side squared); the side grows linearly to the full size over
the first ``until`` of the run's optimiser steps and stays there. Sides are rounded down to a
multiple of ``multiple``, so only a few shapes occur: ``torch.compile`` and cudnn's autotuner
meet each shape once. Like the learning rate, the side is a pure function of the global step
(precomputed by :func:`progressive_sizes`), so a resumed run draws its views at the same side.
Evaluation is not affected: it always runs at the full size.

:meth:`MultiViewTransform.at_size <selfsup.views.MultiViewTransform.at_size>` applies a side to
a recipe (local crops scale with the global views, :func:`scaled_side`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_SIDE", "progressive_size", "progressive_sizes", "scaled_side"]

MIN_SIDE = 8  # the smallest side a scaled local crop is given (as views.local_size allows)


def progressive_size(
    step: int, total_steps: int, start: int, end: int, until: float = 0.75, multiple: int = 4
) -> int:
    """The global views' side at ``step`` (0-based) of a run of ``total_steps`` steps.

    Linear from ``start`` at step 0 to ``end`` at step ``round(until * total_steps)``, rounded
    down to a multiple of ``multiple`` (never below ``start`` rounded down, or ``start`` itself
    when ``multiple`` exceeds it), and exactly ``end`` from that step on.

    Example (32 px views from 16 px, over the first half of 100 steps, in 4 px steps):
        >>> [progressive_size(k, 100, 16, 32, until=0.5) for k in (0, 12, 13, 25, 49, 50, 99)]
        [16, 16, 20, 24, 28, 32, 32]
    """
    if total_steps < 1 or step < 0:
        raise ValueError(f"need total_steps >= 1 and step >= 0, got {total_steps} and {step}")
    if not 1 <= start <= end:
        raise ValueError(f"need 1 <= start <= end (pixels), got start={start}, end={end}")
    if not 0 < until <= 1:
        raise ValueError(f"until is a fraction of the run in (0, 1], got {until}")
    if multiple < 1:
        raise ValueError(f"multiple must be a positive number of pixels, got {multiple}")
    ramp = max(1, round(until * total_steps))  # the first step at the full side
    if step >= ramp:
        return end
    side = (start * ramp + (end - start) * step) // ramp  # floor of the line, exact in integers
    lowest = start - start % multiple or start
    return min(end, max(lowest, side - side % multiple))


def progressive_sizes(
    total_steps: int, start: int, end: int, until: float = 0.75, multiple: int = 4
) -> np.ndarray:
    """``[total_steps]`` int64: :func:`progressive_size` at every step, indexed like the lr
    schedule."""
    sides = [
        progressive_size(k, total_steps, start, end, until, multiple) for k in range(total_steps)
    ]
    return np.asarray(sides, dtype=np.int64)


def scaled_side(size: int, side: int, full: int) -> int:
    """A view of ``size`` px in a recipe whose global views are ``full`` px, when the global
    views are drawn at ``side``: the same ratio, rounded, at least :data:`MIN_SIDE` (or ``size``
    when it is smaller).

    Example (DINO's 96 px local crops of 224 px views, at 112 px):
        >>> scaled_side(96, 112, 224), scaled_side(12, 16, 32)
        (48, 8)
    """
    return max(min(MIN_SIDE, size), round(size * side / full))
