"""The ten claims: the registry, each claim's rule on synthetic numbers that support and that
contradict it, and each claim's --tiny run end to end (digits, a few steps per arm)."""

from __future__ import annotations

import math

import pytest

from selfsup.lab.claim import Claim, Results, all_claims, get_claim, run_claim
from selfsup.lab.runner import ArmResult
from selfsup.lab.settings import LabSettings
from selfsup.lab.verdict import FAILS, HOLDS, UNSURE

PERCENT = {"knn", "linear", "linear_z", "finetune"}


def synthetic(claim: Claim, table: dict[str, dict[str, float]]) -> Results:
    """Two seeds per arm at ``value x (1 ± 0.002)``; unlisted arms and measures: 50 (or 0.5
    for the collapse measures), a clear loser."""

    def value(arm: str, measure: str, seed: int) -> float:
        middle = 0.5 if measure in ("embedding_std", "teacher_entropy") else 50.0
        return table.get(arm, {}).get(measure, middle) * (1.002 if seed else 0.998)

    done = [
        ArmResult(
            arm.name,
            seed,
            f"{arm.name}-{seed}",
            "run",
            {m: value(arm.name, m, seed) for m in claim.measures},
        )
        for arm in claim.arms
        for seed in (0, 1)
    ]
    return Results(claim, done)


def knn(**arms: float) -> dict[str, dict[str, float]]:
    return {name.replace("_", " "): {"knn": v} for name, v in arms.items()}


# claim id -> (numbers that support the claim, numbers that contradict it)
CASES: dict[str, tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]] = {
    "batch-size": (
        {f"batch {b}": {"knn": 80 + i} for i, b in enumerate((32, 64, 128, 256, 512))},
        {f"batch {b}": {"knn": 85 - i} for i, b in enumerate((32, 64, 128, 256, 512))},
    ),
    "moco-queue": (
        {"MoCo (batch 64, queue 4096)": {"knn": 85.0}, "SimCLR (batch 512)": {"knn": 85.2}},
        {"MoCo (batch 64, queue 4096)": {"knn": 80.0}, "SimCLR (batch 512)": {"knn": 85.2}},
    ),
    "moco-momentum": (
        knn(m_0=70, **{"m 0.9": 80, "m 0.99": 85, "m 0.999": 84}),
        knn(m_0=70, **{"m 0.9": 90, "m 0.99": 85, "m 0.999": 84}),
    ),
    "byol-collapse": (
        {
            "BYOL": {"embedding_std": 0.06, "feature_std": 0.3},
            "no predictor": {"embedding_std": 0.002},
            "no EMA target": {"embedding_std": 0.003},
        },
        {
            "BYOL": {"embedding_std": 0.06, "feature_std": 0.3},
            "no predictor": {"embedding_std": 0.05},
            "no EMA target": {"embedding_std": 0.003},
        },
    ),
    "dino-collapse": (
        {
            "DINO": {"teacher_entropy": 0.5},
            "no centering": {"teacher_entropy": 0.01},
            "no sharpening": {"teacher_entropy": 0.95},
        },
        {
            "DINO": {"teacher_entropy": 0.5},
            "no centering": {"teacher_entropy": 0.5},
            "no sharpening": {"teacher_entropy": 0.99},
        },
    ),
    "augmentations": (
        knn(crop=80, colour=70, **{"crop + colour": 85}),
        knn(crop=80, colour=82, **{"crop + colour": 85}),
    ),
    "projection-head": (
        {"SimCLR": {"linear": 85, "linear_z": 75}},
        {"SimCLR": {"linear": 85, "linear_z": 90}},
    ),
    "mae-mask-ratio": (
        {"ratio 0.75": {"finetune": 85, "linear": 70}, "ratio 0.5": {"finetune": 80, "linear": 60}},
        {"ratio 0.75": {"finetune": 85, "linear": 70}, "ratio 0.25": {"finetune": 90}},
    ),
    "temperature": (
        knn(**{"tau 0.1": 85, "tau 1": 80}),
        knn(**{"tau 0.1": 85, "tau 1": 90}),
    ),
    "families": (
        {
            "SimCLR (contrastive)": {"linear": 85},
            "VICReg (non-contrastive)": {"linear": 84},
            "MAE (masked)": {"linear": 78},
            "rotation (pretext)": {"linear": 80},
        },
        {
            "SimCLR (contrastive)": {"linear": 85},
            "VICReg (non-contrastive)": {"linear": 84},
            "MAE (masked)": {"linear": 78},
            "rotation (pretext)": {"linear": 86},
        },
    ),
}


def test_the_ten_claims_are_registered_in_order() -> None:
    claims = all_claims()
    assert [c.number for c in claims] == list(range(1, 11))
    assert len({c.id for c in claims}) == 10
    assert get_claim("7") is get_claim("projection-head")
    with pytest.raises(ValueError, match=r"unknown claim .nope.*1 batch-size"):
        get_claim("nope")
    for claim in claims:
        assert claim.statement and claim.setup and claim.arms and len(claim.seeds) >= 2
        assert set(claim.plot.measures) <= set(claim.measures)
        assert len({a.name for a in claim.arms}) == len(claim.arms)


@pytest.mark.parametrize("claim_id", sorted(CASES))
def test_each_claims_rule_on_numbers_that_support_and_contradict_it(claim_id: str) -> None:
    claim = get_claim(claim_id)
    support, contradict = CASES[claim_id]
    assert claim.judge(synthetic(claim, support)).outcome == HOLDS
    assert claim.judge(synthetic(claim, contradict)).outcome == FAILS


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabSettings:
    """One lab directory for every tiny claim: arms the claims share train once."""
    return LabSettings(lab_dir=tmp_path_factory.mktemp("lab"), tiny=True)


# Measured on 2 cores: ten ViT arms fine-tuned and probed ~30 s; five SimCLR batches up to 512
# (and the first test's imports) ~8 s; every other claim 1-5 s.
SLOW = {"mae-mask-ratio", "batch-size"}


@pytest.mark.parametrize(
    "claim_id",
    [pytest.param(c.id, marks=[pytest.mark.slow] if c.id in SLOW else []) for c in all_claims()],
)
def test_each_claim_runs_tiny_and_returns_numbers_spread_and_a_verdict(
    claim_id: str, lab: LabSettings
) -> None:
    claim = get_claim(claim_id)
    result = run_claim(claim, lab)
    assert result.verdict.outcome in (HOLDS, FAILS, UNSURE) and result.verdict.reason
    for arm in claim.arms:
        for measure in claim.measures:
            m = result.results.get(arm.name, measure)
            assert m.seeds == (0, 1) and m.n == 2, (arm.name, measure, m)
            assert math.isfinite(m.spread) and m.spread >= 0
            if measure in PERCENT:
                assert min(m.finite) >= 0 and max(m.finite) <= 100
    assert result.png is not None and result.png.stat().st_size > 1000
    assert result.command == f"selfsup lab {claim.id} --tiny --seeds 0,1 --lab-dir {lab.lab_dir}"
