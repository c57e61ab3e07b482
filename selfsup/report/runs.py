"""What a report reads from a run directory: config.yaml, metrics.jsonl, eval.json.

Reading never writes: a report only ever writes into its own output folder (and, asked to,
``RUN/tensorboard/``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfsup.config import Config
from selfsup.eval.results import EVAL_FILE, read_results
from selfsup.train.run_dir import RunStatus, run_status

__all__ = ["RunRecords", "read_run", "run_labels"]


@dataclass
class RunRecords:
    """One run as the report sees it. ``train``/``epoch`` hold the metrics records of that
    kind in file order; ``setup``/``end`` are empty dicts when absent; ``eval`` is None
    without ``eval.json``."""

    path: Path
    label: str
    cfg: Config
    status: RunStatus
    setup: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)
    train: list[dict[str, Any]] = field(default_factory=list)
    epoch: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # "skip" records: steps skipped for a NaN/inf loss
    eval: dict[str, Any] | None = None

    @property
    def warnings(self) -> list[tuple[int, str]]:
        """The collapse warnings the method raised, as ``(epoch, text)``."""
        return [(int(r.get("epoch", 0)), str(w)) for r in self.epoch for w in r.get("warnings", [])]


def _records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of ``metrics.jsonl``; a line torn by a kill is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_run(run_dir: str | Path, label: str | None = None) -> RunRecords:
    """Read a run directory for a report.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist, or the run has no metrics.jsonl yet.
        ValueError: ``run_dir`` is not a selfsup run directory (no config.yaml).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{run_dir} does not exist or is not a directory")
    if not (path / "config.yaml").is_file():
        raise ValueError(
            f"{run_dir} is not a selfsup run directory (no config.yaml); pass the --run-dir "
            "of `selfsup pretrain`"
        )
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no metrics.jsonl: the run has not started training; report it "
            "once `selfsup pretrain` has logged a step"
        )
    cfg = Config.from_yaml(path / "config.yaml")
    run = RunRecords(path, label or path.name, cfg, run_status(path))
    for record in _records(metrics):
        kind = record.get("kind")
        if kind == "setup" and not run.setup:
            run.setup = record
        elif kind == "end":
            run.end = record
        elif kind == "train":
            run.train.append(record)
        elif kind == "epoch":
            run.epoch.append(record)
        elif kind == "skip":
            run.skipped += 1
        elif kind == "resize" and run.setup:  # the schedule re-planned to a time budget
            run.setup = {**run.setup, "total_steps": record["total_steps"]}
    if (path / EVAL_FILE).is_file():
        run.eval = read_results(path)
    return run


def run_labels(paths: list[Path]) -> list[str]:
    """Short, distinct names for runs: the folder name, with as many parent folders as it
    takes to tell runs of the same name apart."""
    parts = [p.resolve().parts for p in paths]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            return labels
        depth += 1


def numeric(value: Any) -> float | None:
    """``value`` as a finite-or-NaN float when it is a plain number (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return None if math.isinf(value) else value
