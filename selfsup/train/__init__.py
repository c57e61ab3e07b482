"""Training: one step (:class:`TrainStep`), the run around it (:class:`Trainer`), optimisers
(LARS), schedules, checkpoints. Imports are lazy: ``selfsup.build`` imports the optimisers from
here, and the step imports ``selfsup.build``."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StepResult": "selfsup.train.step",
    "TrainStep": "selfsup.train.step",
    "TrainResult": "selfsup.train.trainer",
    "Trainer": "selfsup.train.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'selfsup.train' has no attribute {name!r}")
