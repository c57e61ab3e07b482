"""A lab directory filled with made-up results, as `selfsup lab` would leave it, for the report
and CLI tests: nothing is trained."""

from __future__ import annotations

from pathlib import Path

from selfsup.lab.arms import digest
from selfsup.lab.claim import get_claim, save_record
from selfsup.lab.runner import ArmResult, LabRunner
from selfsup.lab.settings import LabSettings

# Numbers that support claim 9 (tau 0.1 best, tau 1 worse) and contradict claim 7 (z beats h).
TEMPERATURE = {"tau 0.05": 80.0, "tau 0.1": 85.0, "tau 0.2": 84.0, "tau 0.5": 82.0, "tau 1": 78.0}
HEAD = {"linear": 80.0, "linear_z": 84.0}


def synthetic_lab(lab_dir: Path) -> LabSettings:
    """Claims 7 and 9 with two seeds each (seed 1 = seed 0 + 0.2)."""
    settings = LabSettings(lab_dir=lab_dir)
    runner = LabRunner(settings)
    for claim_id, values in (
        ("temperature", {arm: {"knn": v} for arm, v in TEMPERATURE.items()}),
        ("projection-head", {"SimCLR": HEAD}),
    ):
        claim = get_claim(claim_id)
        done = []
        for arm in claim.arms:
            for seed in (0, 1):
                numbers = {m: v + 0.2 * seed for m, v in values[arm.name].items()}
                key = digest([claim_id, arm.name, seed])
                done.append(ArmResult(arm.name, seed, key, "no-run", numbers, machine="a CPU"))
                runner.store(done[-1])
        save_record(claim, settings, (0, 1), done)
    return settings
