"""A claim: its statement, setup, arms, measures, seeds, plot and verdict rule; the registry
``selfsup lab --list`` reads; and running one (:func:`run_claim`).

A finished claim leaves a record, ``LAB_DIR/claims/<id>.json``: the settings, the command and
the cached result of every arm and seed. The report is rebuilt from these records and the
result cache alone (:mod:`selfsup.lab.report`), its verdicts recomputed by the rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from selfsup.config import apply_overrides
from selfsup.lab.arms import ArmSpec, preset_config, run_plan, train_images
from selfsup.lab.runner import ArmResult, LabRunner, write_json
from selfsup.lab.settings import EVAL_SECONDS, THROUGHPUT, LabSettings
from selfsup.lab.verdict import Measurement, Verdict
from selfsup.progress import say

__all__ = [
    "CLAIMS",
    "Claim",
    "ClaimResult",
    "PlotSpec",
    "Results",
    "all_claims",
    "budget_text",
    "estimate_minutes",
    "get_claim",
    "load_record",
    "register_claim",
    "run_claim",
    "save_record",
]

CLAIM_FORMAT = "selfsup-lab-claim/1"


@dataclass(frozen=True)
class PlotSpec:
    """``sweep``: each measure against the arms' ``x`` (a line with spread); ``bars``: one bar
    per arm; one panel per measure. ``grouped``: one panel, a bar per measure for each arm
    (measures of one unit, e.g. a linear probe before and after the projector)."""

    kind: Literal["sweep", "bars", "grouped"]
    measures: tuple[str, ...]
    x_label: str = ""
    log_x: bool = False


class Results:
    """The per-seed numbers of a claim's arms: ``get(arm, measure)`` is a Measurement."""

    def __init__(self, claim: Claim, results: Sequence[ArmResult]) -> None:
        self.claim = claim
        self.results = list(results)

    def get(self, arm: str, measure: str) -> Measurement:
        rows = sorted((r for r in self.results if r.arm == arm), key=lambda r: r.seed)
        if not rows:
            raise KeyError(f"claim {self.claim.id} has no results for arm {arm!r}")
        values = tuple(r.values.get(measure, math.nan) for r in rows)
        return Measurement(arm, values, tuple(r.seed for r in rows))

    def arms(self, measure: str) -> list[Measurement]:
        return [self.get(a.name, measure) for a in self.claim.arms]

    def sweep(self, measure: str) -> list[tuple[float, Measurement]]:
        return [(float(a.x), self.get(a.name, measure)) for a in self.claim.arms if a.x is not None]


@dataclass(frozen=True)
class Claim:
    """One textbook claim and the experiment that checks it."""

    number: int
    id: str
    name: str  # the claim in a few words
    statement: str  # the claim as the literature states it, with its source
    setup: str  # what the arms are and what is measured
    arms: tuple[ArmSpec, ...]
    measures: tuple[str, ...]
    judge: Callable[[Results], Verdict]
    plot: PlotSpec
    seeds: tuple[int, ...] = (0, 1)
    eval_overrides: tuple[str, ...] = ()  # the claim's own evaluation settings


CLAIMS: dict[str, Claim] = {}


def register_claim(claim: Claim) -> Claim:
    if claim.id in CLAIMS or any(c.number == claim.number for c in CLAIMS.values()):
        raise ValueError(f"claim {claim.number} ({claim.id}) is registered twice")
    CLAIMS[claim.id] = claim
    return claim


def all_claims() -> list[Claim]:
    import selfsup.lab.claims  # noqa: F401  (registers them)

    return sorted(CLAIMS.values(), key=lambda c: c.number)


def get_claim(name: str) -> Claim:
    """A claim by id (``batch-size``) or number (``1``)."""
    for claim in all_claims():
        if name in (claim.id, str(claim.number)):
            return claim
    known = ", ".join(f"{c.number} {c.id}" for c in all_claims())
    raise ValueError(f"unknown claim {name!r}; `selfsup lab --list` shows them: {known}")


def estimate_minutes(claim: Claim, settings: LabSettings) -> float:
    """Minutes of a claim on the 2-core CPU of bench/RESULTS.md: images per arm over the
    preset's measured images/s, plus the measures' rough cost; an estimate, not a measurement."""
    seconds = 0.0
    seeds = len(settings.seeds_for(claim.seeds))
    images_per_epoch = train_images(settings)
    for arm in claim.arms:
        cfg = apply_overrides(preset_config(arm.preset), arm.overrides)
        batch = 64 if settings.tiny else cfg.train.batch_size
        steps, _ = run_plan(arm, settings, images_per_epoch, batch)
        seconds += seeds * steps * batch / THROUGHPUT.get(cfg.method, 400.0)
        seconds += seeds * sum(EVAL_SECONDS.get(m, 0.0) for m in claim.measures)
    return seconds / 60


def budget_text(claim: Claim, settings: LabSettings) -> str:
    epochs = sorted({a.epochs * settings.scale for a in claim.arms})
    per_arm = (
        "a few steps (--tiny)"
        if settings.tiny
        else (
            f"{'/'.join(f'{e:g}' for e in epochs)} epoch{'s' if epochs != [1] else ''} of "
            f"{settings.dataset} ({train_images(settings)} images) each"
        )
    )
    seeds = settings.seeds_for(claim.seeds)
    arms = f"{len(claim.arms)} arm{'s' if len(claim.arms) > 1 else ''}"
    size = f"{arms} x {len(seeds)} seed{'s' if len(seeds) > 1 else ''}, {per_arm}"
    if settings.tiny:
        return f"{size}; seconds"
    return (
        f"{size}; about {estimate_minutes(claim, settings):.0f} min on 2 CPU cores (an "
        "estimate from the throughputs in bench/RESULTS.md)"
    )


@dataclass
class ClaimResult:
    """A claim run: its numbers, the verdict, the figure and the command that made them."""

    claim: Claim
    settings: LabSettings
    results: Results
    verdict: Verdict
    command: str
    png: Path | None = None
    seeds: tuple[int, ...] = field(default=())


def run_claim(claim: Claim, settings: LabSettings, runner: LabRunner | None = None) -> ClaimResult:
    """Every arm and seed of ``claim`` (cached ones read back), the verdict, the plot, and the
    claim's record for the report."""
    runner = runner or LabRunner(settings)
    seeds = settings.seeds_for(claim.seeds)
    say(f"claim {claim.number} ({claim.id}): {claim.name}")
    done = [
        runner.run(arm, seed, claim.measures, claim.eval_overrides)
        for arm in claim.arms
        for seed in seeds
    ]
    results = Results(claim, done)
    command = save_record(claim, settings, seeds, done)
    out = ClaimResult(claim, settings, results, claim.judge(results), command, seeds=seeds)
    from selfsup.lab.plots import plot_claim

    out.png = plot_claim(out, settings.lab_dir / "plots" / f"{claim.id}.png")
    return out


def save_record(
    claim: Claim, settings: LabSettings, seeds: Sequence[int], done: Sequence[ArmResult]
) -> str:
    """Write ``LAB_DIR/claims/<id>.json`` (what the report reads); returns the command."""
    command = settings.command(claim.id, seeds)
    record = {
        "format": CLAIM_FORMAT,
        "claim": claim.id,
        "settings": settings.to_dict(),
        "seeds": list(seeds),
        "command": command,
        "results": [{"arm": r.arm, "seed": r.seed, "key": r.key} for r in done],
    }
    write_json(settings.lab_dir / "claims" / f"{claim.id}.json", record)
    return command


def load_record(path: Path) -> ClaimResult:
    """A claim's result rebuilt from its record and the cached arm results (no training)."""
    record: dict[str, Any] = json.loads(path.read_text())
    claim = get_claim(record["claim"])
    settings = LabSettings.from_dict(record["settings"])
    cache = path.parent.parent / "results"  # LAB_DIR/claims/<id>.json -> LAB_DIR/results
    done = []
    for entry in record["results"]:
        result_path = cache / f"{entry['key']}.json"
        if not result_path.is_file():
            raise FileNotFoundError(
                f"{path} names the result {result_path}, which is missing; run "
                f"`{record['command']}` again to measure it"
            )
        result = ArmResult.from_dict(json.loads(result_path.read_text()))
        done.append(replace(result, arm=entry["arm"]))  # the name this claim gives the arm
    results = Results(claim, done)
    seeds = tuple(int(s) for s in record["seeds"])
    return ClaimResult(
        claim, settings, results, claim.judge(results), record["command"], None, seeds
    )
