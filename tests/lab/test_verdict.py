"""The verdict kinds on synthetic numbers: every outcome of every kind, one seed, ties, NaN."""

from __future__ import annotations

import math

import pytest

from selfsup.lab.verdict import (
    FAILS,
    HOLDS,
    UNSURE,
    Measurement,
    Verdict,
    above,
    all_of,
    best_of,
    collapse,
    greater,
    matches,
    monotone,
    spearman,
)

NAN = math.nan


def m(label: str, *values: float) -> Measurement:
    return Measurement(label, tuple(values), tuple(range(len(values))))


def test_measurement_mean_spread_and_format() -> None:
    a = m("a", 84.0, 86.0)
    assert (a.mean, a.spread, a.n, a.diverged) == (85.0, 1.0, 2, 0)
    assert a.format() == "85.00 ± 1.00"
    one = m("one", 80.0)
    assert (one.spread, one.format(1)) == (0.0, "80.0 ± 0.0 (1 seed)")
    half = m("half", 80.0, NAN)  # one seed diverged: the other still counts
    assert (half.mean, half.n, half.diverged) == (80.0, 1, 1)
    assert half.format() == "80.00 ± 0.00 (1 of 2 diverged)"
    gone = m("gone", NAN, NAN)
    assert math.isnan(gone.mean) and math.isnan(gone.spread) and gone.format() == "diverged"
    assert gone.to_dict()["values"] == [None, None] and gone.to_dict()["mean"] is None
    assert a.noise(0.3) == 1.0 and one.noise(0.3) == 0.3
    # A small value keeps three significant digits: BYOL's std without predictor, 0.0124 and
    # 0.0073, must not read "0.01 ± 0.00" next to the healthy "0.05 ± 0.00".
    assert m("std", 0.0124, 0.0073).format() == "0.00985 ± 0.00255"
    assert m("std", 0.551, 0.552).format() == "0.552 ± 0.001"
    assert m("zero", 0.0, 0.0).format() == "0.00 ± 0.00"


def test_greater_holds_fails_or_is_inconclusive_by_the_spread() -> None:
    assert greater(m("a", 85, 86), m("b", 80, 81)).outcome == HOLDS
    assert greater(m("a", 80, 81), m("b", 85, 86)).outcome == FAILS
    overlap = greater(m("a", 84, 86), m("b", 83, 85))  # gap 1, spread 1 + 1
    assert overlap.outcome == UNSURE and "within the spread 2.00" in overlap.reason
    assert overlap.numbers == {"gap": 1.0, "margin": 2.0}
    # The intervals must be disjoint: touching is not enough.
    assert greater(m("a", 84, 86), m("b", 82, 84)).outcome == UNSURE  # [84, 86] vs [82, 84]
    assert greater(m("a", 84, 86), m("b", 80.9, 82.9)).outcome == HOLDS


def test_greater_on_ties_and_single_seeds() -> None:
    assert greater(m("a", 85, 85), m("b", 85, 85)).outcome == UNSURE  # a tie is never a win
    assert greater(m("a", 85.1), m("b", 85.0)).outcome == HOLDS  # one seed, no floor: any gap
    # The floor stands for the spread one seed cannot measure.
    assert greater(m("a", 85.1), m("b", 85.0), floor=0.3).outcome == UNSURE
    assert greater(m("a", 86.0), m("b", 85.0), floor=0.3).outcome == HOLDS


def test_greater_with_diverged_arms() -> None:
    assert greater(m("a", 85, 86), m("b", NAN, NAN)).outcome == HOLDS
    assert greater(m("a", NAN, NAN), m("b", 85, 86)).outcome == FAILS
    assert greater(m("a", NAN), m("b", NAN)).outcome == UNSURE
    # A partly diverged arm is judged on its finite seeds.
    assert greater(m("a", 90, NAN), m("b", 80, 81)).outcome == HOLDS


def test_spearman_with_ties_and_constants() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [1, 4, 2, 3, 5]) == pytest.approx(0.7)
    assert spearman([1, 2, 3], [5, 5, 6]) == pytest.approx(math.sqrt(3) / 2)  # average ranks
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7]))


def sweep(*means: float, spread: float = 0.1) -> list[tuple[float, Measurement]]:
    return [(float(x), m(f"x{x}", v - spread, v + spread)) for x, v in enumerate(means, start=1)]


def test_monotone_rise_holds() -> None:
    v = monotone(sweep(80, 81, 82, 83, 84))
    assert v.outcome == HOLDS and v.numbers["spearman"] == pytest.approx(1.0)
    # Wiggles within the spread do not break a trend whose ends differ beyond it.
    assert monotone(sweep(80, 83, 82.9, 84)).outcome == HOLDS


def test_monotone_reversal_beyond_the_spread_fails() -> None:
    v = monotone(sweep(80, 84, 82, 85))  # 84 > 82 beyond 0.2
    assert v.outcome == FAILS and "not monotone" in v.reason and "x2" in v.reason
    assert monotone(sweep(84, 83, 82)).outcome == FAILS  # a clear fall, claimed rise
    assert monotone(sweep(84, 83, 82), increasing=False).outcome == HOLDS


def test_monotone_inconclusive_cases() -> None:
    assert monotone(sweep(80, 80.1, 80.05, 80.1)).outcome == UNSURE  # flat within the spread
    # Ends apart, no clear reversal, but the ranks do not follow x (rho 0.7 < 0.8).
    assert monotone(sweep(80, 85, 84.85, 84.9, 86), floor=0.2).outcome == UNSURE
    two = monotone(sweep(80, 90))
    assert two.outcome == UNSURE and "fewer than 3" in two.reason


def test_monotone_drops_diverged_settings_and_says_so() -> None:
    points = [*sweep(80, 81, 82), (9.0, m("x9", NAN, NAN))]
    v = monotone(points)
    assert v.outcome == HOLDS and "x9 diverged" in v.reason
    assert monotone([(1.0, m("a", NAN)), *sweep(80, 81)]).outcome == UNSURE


def test_matches_within_beyond_or_unsure() -> None:
    assert matches(m("a", 85.0, 85.2), m("b", 85.3, 85.5), tolerance=1.0).outcome == HOLDS
    far = matches(m("a", 80, 80.2), m("b", 85, 85.2), tolerance=1.0)
    assert far.outcome == FAILS and far.numbers["difference"] == pytest.approx(5.0)
    # difference 0.8 within 1, but the spread 0.6 could carry it beyond
    assert matches(m("a", 85, 85.6), m("b", 85.8, 86.4), tolerance=1.0).outcome == UNSURE
    assert matches(m("a", 85), m("b", 85), tolerance=0.0).outcome == HOLDS  # exact tie
    assert matches(m("a", NAN), m("b", 85), tolerance=1.0).outcome == FAILS
    assert matches(m("a", NAN), m("b", NAN), tolerance=1.0).outcome == UNSURE


def test_best_of_outcomes() -> None:
    arms = [m("0.25", 80, 80.4), m("0.5", 82, 82.4), m("0.75", 85, 85.4), m("0.9", 81, 81.2)]
    assert best_of(arms, {"0.75"}).outcome == HOLDS
    close = [*arms[:3], m("0.9", 85.0, 85.2)]
    v = best_of(close, {"0.75"})
    assert v.outcome == UNSURE and "within the spread of 0.9" in v.reason
    assert best_of(arms, {"0.5"}).outcome == FAILS  # 0.75 beats 0.5 beyond the spread
    assert best_of(close, {"0.9", "0.75"}).outcome == HOLDS  # either expected one will do
    near = [m("a", 85, 85.4), m("b", 85.1, 85.5)]
    assert best_of(near, {"a"}).outcome == UNSURE  # b is best, within the spread


def test_best_of_with_diverged_arms() -> None:
    arms = [m("a", 80, 81), m("b", NAN, NAN)]
    assert best_of(arms, {"a"}).outcome == HOLDS  # a diverged rival is no rival
    assert best_of(arms, {"b"}).outcome == FAILS
    assert best_of([m("a", NAN), m("b", NAN)], {"a"}).outcome == UNSURE


def test_collapse_towards_zero() -> None:
    healthy = m("BYOL", 0.06, 0.065)
    hit = collapse(healthy, m("no predictor", 0.003, 0.005))
    assert hit.outcome == HOLDS and hit.kind == "collapse (collapsed)"
    assert hit.numbers["distance_ratio"] == pytest.approx(0.004 / 0.0625)
    missed = collapse(healthy, m("no predictor", 0.05, 0.055))
    assert missed.outcome == FAILS and "did not collapse" in missed.reason
    split = collapse(healthy, m("no predictor", 0.002, 0.04))  # one seed each way
    assert split.outcome == UNSURE and "seeds disagree" in split.reason
    # expect=False: the claim is that this arm does not collapse
    assert collapse(healthy, m("x", 0.05, 0.055), expect=False).outcome == HOLDS
    assert collapse(healthy, m("x", 0.001, 0.002), expect=False).outcome == FAILS


def test_collapse_towards_a_ceiling_uniform_targets() -> None:
    healthy = m("DINO", 0.50, 0.55)  # entropy / ln K: distance to uniform 0.45-0.50
    assert collapse(healthy, m("no sharpening", 0.97, 0.99), ceiling=1.0).outcome == HOLDS
    assert collapse(healthy, m("no sharpening", 0.6, 0.7), ceiling=1.0).outcome == FAILS
    # One dimension (entropy 0) is far from uniform: not this collapse.
    assert collapse(healthy, m("no centering", 0.0, 0.0), ceiling=1.0).outcome == FAILS


def test_collapse_is_inconclusive_without_a_healthy_reference() -> None:
    sick = collapse(m("BYOL", 0.001, 0.002), m("x", 0.0001, 0.0001), healthy_floor=0.01)
    assert sick.outcome == UNSURE and "itself within" in sick.reason
    assert collapse(m("BYOL", NAN, NAN), m("x", 0.001)).outcome == UNSURE
    gone = collapse(m("BYOL", 0.06), m("x", NAN, NAN))
    assert gone.outcome == UNSURE and "x diverged" in gone.reason


def test_above_a_threshold() -> None:
    assert above(m("std", 0.3, 0.4), 0.01).outcome == HOLDS
    assert above(m("std", 0.001, 0.002), 0.01, "complete collapse").outcome == FAILS
    assert above(m("std", 0.001, 0.4), 0.01).outcome == UNSURE
    assert above(m("std", 0.01), 0.01).outcome == FAILS  # at the threshold is not above
    assert above(m("std", NAN), 0.01).outcome == FAILS


def test_all_of_combines_parts() -> None:
    yes = Verdict(HOLDS, "x", "")
    no = Verdict(FAILS, "x", "")
    maybe = Verdict(UNSURE, "x", "")
    assert all_of([yes, yes]).outcome == HOLDS
    assert all_of([yes, maybe]).outcome == UNSURE
    assert all_of([maybe, no, yes]).outcome == FAILS
    assert all_of([]).outcome == UNSURE
    combined = all_of([yes, no], "both")
    assert combined.parts == (yes, no) and combined.reason == "both: 1 of 2 parts hold"
    assert combined.text == "does not hold at this scale" and yes.text == "holds"
    assert combined.to_dict()["parts"][1]["outcome"] == FAILS
