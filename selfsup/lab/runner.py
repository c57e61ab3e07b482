"""The lab's runner: one arm and seed, trained through the normal :class:`Trainer` into
``LAB_DIR/runs/<config key>/``, measured, and cached as ``LAB_DIR/results/<result key>.json``.

* A cached result is never computed again: the same arm, seed, budget, measures, evaluation
  settings and version of the measuring code read it back (the key hashes all of them).
* An interrupted arm resumes: a run directory holding a checkpoint of the same configuration
  continues with ``fit(resume=True)`` (a checkpoint is written every tenth of the run, see
  :mod:`selfsup.lab.settings`); a finished one is measured without training again.
* A run that diverges (NaN/inf loss) is recorded as diverged, its measures NaN: a verdict
  counts it (:mod:`selfsup.lab.verdict`), and a rerun does not train it again.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import selfsup
from selfsup import build
from selfsup.bench.machine import machine_description
from selfsup.config import Config, config_changes
from selfsup.data import ImageDataset
from selfsup.lab.arms import ArmSpec, arm_config, base_config, config_key, digest
from selfsup.lab.measures import MEASURES, MEASURES_VERSION, MeasureContext
from selfsup.lab.settings import FINETUNE_LABELS, LabSettings, eval_overrides
from selfsup.progress import say
from selfsup.train.device import resolve_device
from selfsup.train.run_dir import run_status
from selfsup.train.trainer import NonFiniteLossError, Trainer

__all__ = ["RESULT_FORMAT", "ArmResult", "LabRunner", "write_json"]

RESULT_FORMAT = "selfsup-lab-result/1"
# Filled in by the trainer, not chosen: a run directory whose config differs only here matches.
_FILLED_BY_TRAINER = {"run_dir", "data.data_dir"}


@dataclass(frozen=True)
class ArmResult:
    """One arm and seed, measured."""

    arm: str
    seed: int
    key: str  # results/<key>.json
    run_key: str  # runs/<run_key>/
    values: dict[str, float]  # NaN where the run diverged
    diverged: bool = False
    cached: bool = False
    machine: str = ""  # where it was measured (seconds and ms per step depend on it)

    def to_dict(self) -> dict[str, Any]:
        values = {k: (v if math.isfinite(v) else None) for k, v in self.values.items()}
        return {
            "arm": self.arm,
            "seed": self.seed,
            "key": self.key,
            "run_key": self.run_key,
            "values": values,
            "diverged": self.diverged,
            "machine": self.machine,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cached: bool = True) -> ArmResult:
        values = {k: (math.nan if v is None else float(v)) for k, v in data["values"].items()}
        return cls(
            str(data["arm"]),
            int(data["seed"]),
            str(data["key"]),
            str(data["run_key"]),
            values,
            bool(data.get("diverged", False)),
            cached,
            str(data.get("machine", "")),
        )


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a result file is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _same_config(run_dir: Path, cfg: Config) -> bool:
    """The run directory's config.yaml is ``cfg`` (up to what the trainer fills in)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return False
    changes = config_changes(Config.from_yaml(path).to_dict(), cfg.to_dict())
    return all(key in _FILLED_BY_TRAINER for key, _, _ in changes)


class LabRunner:
    """Runs arms for one :class:`~selfsup.lab.settings.LabSettings`, keeping the loaded data."""

    def __init__(self, settings: LabSettings) -> None:
        self.settings = settings
        self._train_sets: dict[str, ImageDataset] = {}
        self._eval_sets: dict[str, tuple[ImageDataset, ImageDataset]] = {}

    @property
    def results_dir(self) -> Path:
        return self.settings.lab_dir / "results"

    @property
    def runs_dir(self) -> Path:
        return self.settings.lab_dir / "runs"

    def result_key(self, run_key: str, measures: Sequence[str], evals: Sequence[str]) -> str:
        """Names a result: the run, what was measured, how, and by which code."""
        return digest(
            {
                "run": run_key,
                "measures": sorted(measures),
                "eval": list(evals),
                "finetune_labels": FINETUNE_LABELS,
                "measures_version": MEASURES_VERSION,
                "selfsup": selfsup.__version__,
            }
        )

    def cached(self, key: str) -> ArmResult | None:
        path = self.results_dir / f"{key}.json"
        if not path.is_file():
            return None
        return ArmResult.from_dict(json.loads(path.read_text()))

    def run(
        self, arm: ArmSpec, seed: int, measures: Sequence[str], extra_eval: Sequence[str] = ()
    ) -> ArmResult:
        """The arm's measures for ``seed``: from the cache, or trained (resumed) and measured."""
        unknown = [m for m in measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measure {unknown[0]!r}; known: {', '.join(MEASURES)}")
        base = base_config(arm, self.settings)
        train_set = self._train_set(base, seed)
        cfg = arm_config(arm, seed, self.settings, train_set)
        run_key = config_key(cfg)
        evals = (*eval_overrides(self.settings.tiny), *extra_eval)
        key = self.result_key(run_key, measures, evals)
        found = self.cached(key)
        if found is not None:  # perhaps measured for another claim's arm of the same config
            say(f"  {arm.name}, seed {seed}: cached ({self.results_dir / key}.json)")
            return replace(found, arm=arm.name)
        run_dir = self.runs_dir / run_key
        steps = cfg.train.total_steps
        say(f"  {arm.name}, seed {seed}: {cfg.method}, {steps} steps in {run_dir}")
        diverged = self._train(cfg, run_dir, train_set)
        device = resolve_device(cfg.train.device)
        if diverged:
            values = {m: math.nan for m in measures}
        else:
            ctx = MeasureContext(
                run_dir,
                cfg,
                self._labelled(cfg, train_set),
                str(device),
                tuple(evals),
                FINETUNE_LABELS,
                tuple(measures),
            )
            values = {m: float(MEASURES[m].fn(ctx)) for m in measures}
        machine = machine_description(device)
        result = ArmResult(arm.name, seed, key, run_key, values, diverged, machine=machine)
        self.store(result, measures=list(measures), eval=list(evals), config=cfg.to_dict())
        return result

    def store(self, result: ArmResult, **provenance: Any) -> Path:
        """Write ``result`` to the cache with what produced it (measures, eval settings,
        config); the report needs only the result itself."""
        record = {
            "format": RESULT_FORMAT,
            **result.to_dict(),
            "measures_version": MEASURES_VERSION,
            "selfsup": selfsup.__version__,
            **provenance,
        }
        path = self.results_dir / f"{result.key}.json"
        write_json(path, record)
        return path

    def _train(self, cfg: Config, run_dir: Path, train_set: ImageDataset) -> bool:
        """Train (or resume, or skip a finished run of) ``cfg``; True when it diverged."""
        resume = False
        if run_dir.exists():
            same = _same_config(run_dir, cfg)
            status = run_status(run_dir)
            if status.finished and same:
                return False
            resume = status.has_checkpoint and same
        trainer = Trainer(copy.deepcopy(cfg), run_dir, train_set, overwrite=not resume)
        try:
            trainer.fit(resume=resume)
        except NonFiniteLossError as err:
            say(f"  diverged: {err}")
            return True
        return False

    def _train_set(self, cfg: Config, seed: int) -> ImageDataset:
        data = cfg.data.model_dump()
        key = digest([data, seed if cfg.data.subset else None])
        if key not in self._train_sets:
            probe = copy.deepcopy(cfg)
            probe.train.seed = seed  # a data.subset is drawn with the run's seed
            self._train_sets[key] = build.train_dataset(probe)
        return self._train_sets[key]

    def _labelled(self, cfg: Config, train_set: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
        from selfsup.eval.labelled import labelled_sets

        channels = build.input_channels(cfg, train_set)
        key = digest([cfg.data.model_dump(), channels])
        if key not in self._eval_sets:
            self._eval_sets[key] = labelled_sets(copy.deepcopy(cfg), channels)
        return self._eval_sets[key]
