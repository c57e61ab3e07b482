"""Precomputed per-step schedules: lengths, end points, warm-up, cosine shape, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfsup.train.schedules import constant_schedule, cosine_schedule, linear_schedule


def reference_cosine(
    base: float, final: float, total: int, warmup: int, start: float
) -> list[float]:
    """Step-by-step formula with math.cos, independent of the vectorised implementation."""
    values = []
    cosine_steps = total - warmup
    for t in range(total):
        if t < warmup:
            values.append(start + (base - start) * t / warmup)
        else:
            progress = (t - warmup) / (cosine_steps - 1) if cosine_steps > 1 else 0.0
            values.append(final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress)))
    return values


@pytest.mark.parametrize(
    ("base", "final", "total", "warmup", "start"),
    [
        (0.3, 0.0, 100, 10, 0.0),
        (1.0, 0.1, 7, 0, 0.0),
        (0.996, 1.0, 50, 0, 0.0),
        (5e-4, 1e-6, 30, 29, 1e-5),
    ],
)
def test_cosine_matches_reference(
    base: float, final: float, total: int, warmup: int, start: float
) -> None:
    got = cosine_schedule(base, final, total, warmup_steps=warmup, warmup_start_value=start)
    assert got.shape == (total,) and got.dtype == np.float64
    np.testing.assert_allclose(got, reference_cosine(base, final, total, warmup, start), rtol=1e-12)


def test_cosine_end_points_and_warmup() -> None:
    s = cosine_schedule(0.3, 0.001, total_steps=100, warmup_steps=10, warmup_start_value=0.01)
    assert s[0] == pytest.approx(0.01)
    assert s[10] == pytest.approx(0.3)  # warm-up reaches the base exactly when cosine starts
    assert s[-1] == pytest.approx(0.001)
    # Linear warm-up: constant increments, ending one increment below the base.
    increments = np.diff(s[:11])
    np.testing.assert_allclose(increments, (0.3 - 0.01) / 10)
    # Cosine half: non-increasing, midpoint halfway between base and final.
    assert np.all(np.diff(s[10:]) <= 0)
    cosine = cosine_schedule(1.0, 0.0, total_steps=101)
    assert cosine[50] == pytest.approx(0.5)


def test_cosine_increasing_for_momentum() -> None:
    s = cosine_schedule(0.996, 1.0, total_steps=1000)
    assert s[0] == pytest.approx(0.996) and s[-1] == pytest.approx(1.0)
    assert np.all(np.diff(s) >= 0)


def test_cosine_single_cosine_step_holds_base() -> None:
    np.testing.assert_allclose(cosine_schedule(2.0, 0.0, total_steps=1), [2.0])
    np.testing.assert_allclose(cosine_schedule(2.0, 0.0, 3, warmup_steps=2), [0.0, 1.0, 2.0])


@pytest.mark.parametrize("warmup", [10, 11, -1])
def test_cosine_rejects_bad_warmup(warmup: int) -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(0.1, 0.0, total_steps=10, warmup_steps=warmup)


@pytest.mark.parametrize("total", [0, -5, 2.5, True])
def test_rejects_bad_total_steps(total: int) -> None:
    with pytest.raises(ValueError, match="total_steps"):
        cosine_schedule(0.1, 0.0, total_steps=total)
    with pytest.raises(ValueError, match="total_steps"):
        linear_schedule(0.0, 1.0, total)
    with pytest.raises(ValueError, match="steps"):
        constant_schedule(1.0, total)


def test_rejects_non_finite_values() -> None:
    with pytest.raises(ValueError, match="base_value"):
        cosine_schedule(float("nan"), 0.0, 10)
    with pytest.raises(ValueError, match="end"):
        linear_schedule(0.0, float("inf"), 10)


def test_linear_and_constant() -> None:
    np.testing.assert_allclose(linear_schedule(0.04, 0.07, 4), [0.04, 0.05, 0.06, 0.07])
    np.testing.assert_allclose(linear_schedule(1.0, 0.0, 1), [1.0])
    s = linear_schedule(0.0, 3.0, 31)
    assert s.shape == (31,) and np.allclose(np.diff(s), 0.1)
    c = constant_schedule(0.04, 5)
    assert c.shape == (5,) and c.dtype == np.float64 and np.all(c == 0.04)
    # Phases compose by concatenation (DINO's teacher temperature).
    teacher_temp = np.concatenate([linear_schedule(0.04, 0.07, 30), constant_schedule(0.07, 70)])
    assert teacher_temp.shape == (100,) and teacher_temp[29] == pytest.approx(0.07)
