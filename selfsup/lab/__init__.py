"""The claims lab: textbook claims about self-supervised learning, each checked by a small,
budgeted, cached experiment with a verdict (``selfsup lab``; README, "The claims lab").

* :mod:`~selfsup.lab.verdict`: the verdict kinds, pure functions of per-seed numbers.
* :mod:`~selfsup.lab.arms`: an arm (a preset, a claim's changes, a budget) resolved to the exact
  configuration it trains, and the key that names it.
* :mod:`~selfsup.lab.runner`: trains an arm through the normal Trainer (resumably), measures it
  (:mod:`~selfsup.lab.measures`) and caches the result.
* :mod:`~selfsup.lab.claim`: a claim, the registry and :func:`run_claim`;
  :mod:`selfsup.lab.claims` holds the ten claims.
* :mod:`~selfsup.lab.report` and :mod:`~selfsup.lab.plots`: docs/claims.md and its figures,
  rebuilt from the cache alone.
"""

from selfsup.lab.arms import ArmSpec
from selfsup.lab.claim import (
    Claim,
    ClaimResult,
    PlotSpec,
    Results,
    all_claims,
    get_claim,
    run_claim,
)
from selfsup.lab.runner import ArmResult, LabRunner
from selfsup.lab.settings import LabSettings
from selfsup.lab.verdict import Measurement, Verdict

__all__ = [
    "ArmResult",
    "ArmSpec",
    "Claim",
    "ClaimResult",
    "LabRunner",
    "LabSettings",
    "Measurement",
    "PlotSpec",
    "Results",
    "Verdict",
    "all_claims",
    "get_claim",
    "run_claim",
]
