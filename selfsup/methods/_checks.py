"""Argument checks shared by the method constructors: each names the problem and the fix."""

from __future__ import annotations

import math

from torch import Tensor

from selfsup.views import MultiViewTransform


def check_recipe(view_recipe: MultiViewTransform, method: str, views_fn: str) -> None:
    """Two global views, then any local crops (``views.local_crops``) of one size."""
    specs = view_recipe.specs
    if len(specs) < 2:
        raise ValueError(
            f"{method} needs 2 global views (then any local crops), the recipe makes "
            f"{len(specs)}; build it from {views_fn}"
        )
    if len({spec.size for spec in specs[2:]}) > 1:
        raise ValueError(f"{method}: every local crop must have the same size")


def check_views(views: list[Tensor], method: str) -> None:
    if len(views) < 2:
        raise ValueError(
            f"{method} needs 2 global views (then any local crops), got {len(views)}; pass the "
            "output of method.make_views(images)"
        )


def check_temperature(temperature: float, typical: str) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}; {typical}")


def check_momentum(momentum: float, name: str, typical: str) -> None:
    if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
        raise ValueError(
            f"{name} must be in [0, 1], got {momentum}; 1 freezes the target network, {typical}"
        )


def positive_int(value: int, name: str, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; {hint}")


def check_schedule(schedule: str) -> None:
    if schedule not in ("cosine", "constant"):
        raise ValueError(
            f"momentum_schedule must be 'cosine' or 'constant', got {schedule!r}; 'cosine' is "
            "the paper's schedule (BYOL, MoCo v3, DINO)"
        )
