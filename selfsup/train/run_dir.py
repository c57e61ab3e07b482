"""What a run directory holds, and the rules that keep its results from being lost.

* A new run goes into a new or empty directory. A directory that already holds a run is
  refused with a message naming ``--resume`` (continue it) and ``--overwrite`` (start again);
  an overwrite removes every output of the earlier run (checkpoints, metrics, encoder,
  eval.json, exports, reports) so that no file describes another encoder. A non-empty
  directory that is not a run directory is never written into.
* :func:`run_status` says whether a run finished (an ``end`` record closes metrics.jsonl and
  the encoder is written), is unfinished (training now, killed or interrupted: a checkpoint
  but no end) or has no checkpoint yet.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_OUTPUTS",
    "RunDirectoryError",
    "RunStatus",
    "claim_run_dir",
    "default_run_dir",
    "run_status",
]

# Every file or folder a run (and the commands on it) writes at the top of its directory.
RUN_OUTPUTS: tuple[str, ...] = (
    "config.yaml",
    "metrics.jsonl",
    "tensorboard",
    "checkpoints",
    "encoder.safetensors",
    "encoder.json",
    "compile_cache.bin",
    "eval.json",
    "export",
    "report",
)
# Any of these marks a directory as a selfsup run directory.
_RUN_MARKERS = ("config.yaml", "metrics.jsonl", "checkpoints", "encoder.safetensors")


class RunDirectoryError(ValueError):
    """A run directory that must not be written into as asked."""


def default_run_dir(method: str, dataset: str, root: str | Path = "runs") -> Path:
    """``runs/<method>-<dataset>-<date>-<time>``, with ``-2``, ``-3``... when that is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{method}-{dataset}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def claim_run_dir(run_dir: Path, overwrite: bool = False) -> list[str]:
    """Make ``run_dir`` ready for a new run; returns the earlier outputs it removed.

    Raises :class:`RunDirectoryError` when it holds a run and ``overwrite`` is false, or
    holds files but is not a run directory.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {run_dir} is a file; choose a directory path")
    entries = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".write-test."))
    if not entries:
        return []
    if not any((run_dir / marker).exists() for marker in _RUN_MARKERS):
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        raise RunDirectoryError(
            f"{run_dir} is not empty ({shown}) and is not a selfsup run directory; choose a new "
            "or empty --run-dir (nothing was written)"
        )
    if not overwrite:
        status = run_status(run_dir)
        raise RunDirectoryError(
            f"{run_dir} already holds a run ({status.describe()}); continue it with "
            f"`selfsup pretrain --resume {run_dir}`, start it again with --overwrite (removes its "
            "checkpoints, encoder, metrics, eval.json, exports and reports), or choose another "
            "--run-dir"
        )
    removed = []
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands, read from its directory without loading a checkpoint."""

    finished: bool  # an end record closes metrics.jsonl and encoder.safetensors exists
    has_checkpoint: bool  # checkpoints/last.pt exists
    last_step: int | None  # the step of the newest metrics record
    total_steps: int | None  # the run's planned steps (setup record)

    def describe(self) -> str:
        of = f" of {self.total_steps}" if self.total_steps else ""
        if self.finished:
            return f"finished at step {self.last_step}"
        if self.has_checkpoint:
            return f"unfinished, last logged step {self.last_step}{of}"
        return "started, no checkpoint yet"


def run_status(run_dir: str | Path) -> RunStatus:
    """Read ``metrics.jsonl`` (tolerating a line torn by a kill) and the files present."""
    run_dir = Path(run_dir)
    records = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    setup: dict[str, Any] = next((r for r in records if r.get("kind") == "setup"), {})
    last = records[-1] if records else {}
    finished = last.get("kind") == "end" and (run_dir / "encoder.safetensors").is_file()
    return RunStatus(
        finished=finished,
        has_checkpoint=(run_dir / "checkpoints" / "last.pt").is_file(),
        last_step=int(last["step"]) if "step" in last else None,
        total_steps=int(setup["total_steps"]) if "total_steps" in setup else None,
    )
