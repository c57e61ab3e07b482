"""Verdicts: does a claim hold at this scale? Pure functions of per-seed numbers.

A :class:`Measurement` is one arm's value of one measure, one number per seed (NaN where the
arm diverged). Its *spread* is half the range over the seeds, so ``mean ± spread`` covers every
seed. Each verdict kind is one claim shape and answers ``holds``, ``does not hold`` or
``inconclusive``:

* :func:`greater`: A > B by more than the seeds' spread. Holds when the intervals
  ``mean ± noise`` are disjoint with A above, does not hold when they are disjoint with B above,
  inconclusive when they overlap (ties included).
* :func:`monotone`: a trend over a sweep. Does not hold when any setting beats a later one
  beyond the spread (a clear reversal); holds when none does, the last setting beats the first
  beyond the spread and Spearman's rho of the means is >= 0.8; inconclusive otherwise.
* :func:`matches`: |A - B| within a tolerance: holds when even the difference plus the spread
  is within it, does not hold when the difference minus the spread exceeds it.
* :func:`best_of`: the best setting of a sweep is one of the expected ones: holds when it is and
  beats every other setting beyond the spread; does not hold when another setting beats the
  best expected one beyond the spread.
* :func:`collapse`: an ablated arm collapsed relative to a healthy one: every seed of the ablated
  arm is below ``ratio`` times every seed of the healthy one (towards 0, e.g. embedding std), or
  as close to a ceiling (e.g. the entropy of uniform targets).
* :func:`above`: every seed above a fixed threshold (e.g. the library's complete-collapse
  threshold of the feature std): holds when all are, does not hold when none is.
* :func:`all_of`: several parts together: holds when all hold, does not hold when any does not.

``noise`` is ``max(spread, floor)``: the floor (e.g. 0.3 points of top-1) stands for the spread
when one seed gives none, or when seeds agree by chance. A diverged arm (every seed NaN) counts
as the worst possible result in :func:`greater` and :func:`best_of`, and makes :func:`matches`
and :func:`collapse` undecidable or false as their docstrings say.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FAILS",
    "HOLDS",
    "UNSURE",
    "Measurement",
    "Outcome",
    "Verdict",
    "above",
    "all_of",
    "best_of",
    "collapse",
    "greater",
    "matches",
    "monotone",
    "spearman",
]

Outcome = Literal["holds", "does not hold", "inconclusive"]
HOLDS: Outcome = "holds"
FAILS: Outcome = "does not hold"
UNSURE: Outcome = "inconclusive"


@dataclass(frozen=True)
class Measurement:
    """One arm's value of one measure: one number per seed (NaN: that seed diverged)."""

    label: str
    values: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    @property
    def finite(self) -> tuple[float, ...]:
        return tuple(v for v in self.values if math.isfinite(v))

    @property
    def n(self) -> int:
        """Seeds with a finite value."""
        return len(self.finite)

    @property
    def diverged(self) -> int:
        return len(self.values) - self.n

    @property
    def mean(self) -> float:
        return sum(self.finite) / self.n if self.n else math.nan

    @property
    def spread(self) -> float:
        """Half the range over the seeds (0 for one seed, NaN for none)."""
        return (max(self.finite) - min(self.finite)) / 2 if self.n else math.nan

    def noise(self, floor: float = 0.0) -> float:
        return max(self.spread, floor)

    def format(self, digits: int | None = None) -> str:
        """``85.21 ± 0.18`` (``(1 seed)`` / ``(1 of 2 diverged)`` added where they apply);
        without ``digits``, enough of them that a small value (a std of 0.0098) still shows."""
        if not self.n:
            return "diverged"
        if digits is None:
            size = abs(self.mean)
            digits = 2 if size >= 1 or size == 0 else min(6, 1 - math.floor(math.log10(size)) + 1)
        text = f"{self.mean:.{digits}f} ± {self.spread:.{digits}f}"
        if self.diverged:
            text += f" ({self.diverged} of {len(self.values)} diverged)"
        elif self.n == 1:
            text += " (1 seed)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "values": [v if math.isfinite(v) else None for v in self.values],
            "seeds": list(self.seeds),
            "mean": self.mean if self.n else None,
            "spread": self.spread if self.n else None,
        }


@dataclass(frozen=True)
class Verdict:
    """An outcome, the rule that gave it (``kind``), why (with the numbers) and its parts."""

    outcome: Outcome
    kind: str
    reason: str
    parts: tuple[Verdict, ...] = ()
    numbers: Mapping[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """As the report prints it: a claim that fails here fails *at this scale*."""
        return "does not hold at this scale" if self.outcome == FAILS else self.outcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "kind": self.kind,
            "reason": self.reason,
            "numbers": dict(self.numbers),
            "parts": [p.to_dict() for p in self.parts],
        }


def _show(m: Measurement) -> str:
    return f"{m.label} {m.format()}"


def greater(a: Measurement, b: Measurement, floor: float = 0.0) -> Verdict:
    """A > B by more than the seeds' spread (each interval ``mean ± max(spread, floor)``)."""
    if not a.n or not b.n:
        if a.n:
            return Verdict(HOLDS, "greater", f"{_show(a)}; {b.label} diverged")
        if b.n:
            return Verdict(FAILS, "greater", f"{a.label} diverged; {_show(b)}")
        return Verdict(UNSURE, "greater", f"{a.label} and {b.label} both diverged")
    gap = a.mean - b.mean
    margin = a.noise(floor) + b.noise(floor)
    numbers = {"gap": gap, "margin": margin}
    if gap > margin:
        why = f"{_show(a)} > {_show(b)}: the gap {gap:.2f} exceeds the spread {margin:.2f}"
        return Verdict(HOLDS, "greater", why, numbers=numbers)
    if -gap > margin:
        why = f"{_show(b)} > {_show(a)}: the gap {-gap:.2f} exceeds the spread {margin:.2f}"
        return Verdict(FAILS, "greater", why, numbers=numbers)
    why = f"{_show(a)} vs {_show(b)}: the gap {gap:.2f} is within the spread {margin:.2f}"
    return Verdict(UNSURE, "greater", why, numbers=numbers)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties; NaN when either side is constant)."""

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for k in range(start, end + 1):
                out[order[k]] = (start + end) / 2
            start = end + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx and vy else math.nan


def monotone(
    points: Sequence[tuple[float, Measurement]], increasing: bool = True, floor: float = 0.0
) -> Verdict:
    """The measure rises (``increasing``) or falls along the sweep ``(x, measurement)``."""
    kept = sorted((p for p in points if p[1].n), key=lambda p: p[0])
    lost = [p[1].label for p in points if not p[1].n]
    note = f" ({', '.join(lost)} diverged)" if lost else ""
    if len(kept) < 3:
        return Verdict(UNSURE, "monotone", f"fewer than 3 settings to judge a trend{note}")
    sign = 1.0 if increasing else -1.0
    rho = spearman([x for x, _ in kept], [m.mean for _, m in kept])
    numbers = {"spearman": rho}
    direction = "rises" if increasing else "falls"
    for i, (_, early) in enumerate(kept):
        for _, late in kept[i + 1 :]:
            worse, better = (late, early) if increasing else (early, late)
            reversal = greater(better, worse, floor)
            if reversal.outcome == HOLDS:
                why = f"not monotone: {reversal.reason}{note}"
                return Verdict(FAILS, "monotone", why, numbers=numbers)
    first, last = kept[0][1], kept[-1][1]
    ends = greater(last, first, floor) if increasing else greater(first, last, floor)
    trend = f"Spearman rho {rho:.2f}; {ends.reason}{note}"
    if ends.outcome == HOLDS and sign * rho >= 0.8:
        return Verdict(HOLDS, "monotone", f"{direction}: {trend}", numbers=numbers)
    return Verdict(UNSURE, "monotone", f"no clear trend: {trend}", numbers=numbers)


def matches(a: Measurement, b: Measurement, tolerance: float, floor: float = 0.0) -> Verdict:
    """|A - B| <= ``tolerance`` even allowing for the spread (both arms must have trained)."""
    if not a.n or not b.n:
        if a.n or b.n:
            gone = a.label if not a.n else b.label
            return Verdict(FAILS, "matches", f"{gone} diverged and the other did not")
        return Verdict(UNSURE, "matches", f"{a.label} and {b.label} both diverged")
    diff = abs(a.mean - b.mean)
    margin = a.noise(floor) + b.noise(floor)
    numbers = {"difference": diff, "margin": margin, "tolerance": tolerance}
    both = f"{_show(a)} vs {_show(b)}: difference {diff:.2f}, spread {margin:.2f}"
    if diff + margin <= tolerance:
        return Verdict(HOLDS, "matches", f"{both}, within {tolerance:g}", numbers=numbers)
    if diff - margin > tolerance:
        return Verdict(FAILS, "matches", f"{both}, beyond {tolerance:g}", numbers=numbers)
    return Verdict(UNSURE, "matches", f"{both}: cannot tell against {tolerance:g}", numbers=numbers)


def best_of(arms: Sequence[Measurement], expected: Collection[str], floor: float = 0.0) -> Verdict:
    """The best arm (highest mean) is one of the ``expected`` labels, beyond the spread."""
    finite = [m for m in arms if m.n]
    hoped = [m for m in finite if m.label in expected]
    want = " or ".join(sorted(expected))
    if not finite:
        return Verdict(UNSURE, "best", "every setting diverged")
    if not hoped:
        return Verdict(FAILS, "best", f"{want} diverged")
    top = max(finite, key=lambda m: m.mean)
    top_hoped = max(hoped, key=lambda m: m.mean)
    if top.label in expected:
        rivals = [m for m in finite if m.label not in expected]
        close = [r for r in rivals if greater(top, r, floor).outcome != HOLDS]
        if not close:
            return Verdict(HOLDS, "best", f"{_show(top)} is best, beyond the spread of the rest")
        others = ", ".join(_show(r) for r in close)
        return Verdict(UNSURE, "best", f"{_show(top)} is best but within the spread of {others}")
    beaten = greater(top, top_hoped, floor)
    if beaten.outcome == HOLDS:
        return Verdict(FAILS, "best", f"{top.label} is best: {beaten.reason}")
    return Verdict(UNSURE, "best", f"{top.label} is best, within the spread: {beaten.reason}")


def collapse(
    healthy: Measurement,
    ablated: Measurement,
    ratio: float = 0.2,
    ceiling: float | None = None,
    healthy_floor: float = 0.0,
    expect: bool = True,
) -> Verdict:
    """Did ``ablated`` collapse (``expect``) relative to ``healthy``?

    Measured as the distance to the collapsed value: the value itself (collapse towards 0,
    e.g. an embedding std) or ``ceiling - value`` (collapse towards a ceiling, e.g. a teacher
    entropy at ln K, uniform). Collapsed: every ablated seed's distance is below ``ratio`` times
    every healthy seed's. Not collapsed: every ablated seed is at or above ``ratio`` times every
    healthy seed. A healthy arm within ``healthy_floor`` of the collapsed value, or a diverged
    arm, makes the verdict inconclusive.
    """

    def dist(m: Measurement) -> list[float]:
        return [v if ceiling is None else ceiling - v for v in m.finite]

    towards = "0" if ceiling is None else f"{ceiling:g}"
    if not healthy.n or not ablated.n:
        gone = healthy.label if not healthy.n else ablated.label
        return Verdict(UNSURE, "collapse", f"{gone} diverged: no collapse to measure")
    hd, ad = dist(healthy), dist(ablated)
    if min(hd) <= healthy_floor:
        why = f"the reference {_show(healthy)} is itself within {healthy_floor:g} of {towards}"
        return Verdict(UNSURE, "collapse", why)
    numbers = {"distance_ratio": (sum(ad) / len(ad)) / (sum(hd) / len(hd))}
    both = f"{_show(ablated)} vs {_show(healthy)} (collapsed = {towards})"
    if max(ad) < ratio * min(hd):
        state, outcome = "collapsed", HOLDS if expect else FAILS
        why = f"{ablated.label} collapsed: {both}, every seed below {ratio:g} of the reference"
    elif min(ad) >= ratio * max(hd):
        state, outcome = "not collapsed", FAILS if expect else HOLDS
        why = f"{ablated.label} did not collapse: {both}"
    else:
        state, outcome = "unclear", UNSURE
        why = f"{ablated.label}: seeds disagree: {both}"
    return Verdict(outcome, f"collapse ({state})", why, numbers=numbers)


def above(m: Measurement, threshold: float, what: str = "") -> Verdict:
    """Every seed of ``m`` is above ``threshold`` (``what`` names it); a diverged arm is not."""
    named = f"{threshold:g}{f' ({what})' if what else ''}"
    if not m.n:
        return Verdict(FAILS, "above", f"{m.label} diverged")
    if min(m.finite) > threshold:
        return Verdict(HOLDS, "above", f"{_show(m)}: every seed above {named}")
    if max(m.finite) <= threshold:
        return Verdict(FAILS, "above", f"{_show(m)}: no seed above {named}")
    return Verdict(UNSURE, "above", f"{_show(m)}: seeds on both sides of {named}")


def all_of(parts: Sequence[Verdict], what: str = "") -> Verdict:
    """Holds when every part holds; does not hold when any part does not; else inconclusive."""
    outcomes = [p.outcome for p in parts]
    if outcomes and all(o == HOLDS for o in outcomes):
        outcome: Outcome = HOLDS
    elif FAILS in outcomes:
        outcome = FAILS
    else:
        outcome = UNSURE
    count = sum(o == HOLDS for o in outcomes)
    reason = f"{what}{': ' if what else ''}{count} of {len(parts)} parts hold"
    return Verdict(outcome, "all", reason, tuple(parts))
