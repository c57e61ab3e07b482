"""Elastic restarts: what a worker group restarted by ``torchrun --max-restarts K`` resumes.

When a worker dies (killed, out of memory, a lost machine), torchrun stops the whole group and
starts it again with the same command, setting ``TORCHELASTIC_RESTART_COUNT``. The restarted
``selfsup pretrain`` must not start the run afresh, nor refuse the directory its first attempt
wrote: it continues from the run's ``checkpoints/last.pt`` (written every
``train.checkpoint_every`` epochs and every ``train.checkpoint_every_steps`` steps), so the
steps since that checkpoint are trained again, exactly as they were (a resumed run is bitwise
the uninterrupted one).

A restart resumes only a run directory that holds *this* command's run: the directory must be
named on the command line (``--run-dir`` or ``run_dir=``; a default, time-stamped name would
differ between attempts) and its ``config.yaml`` must be the command's configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from selfsup.config import Config, config_changes
from selfsup.train.distributed import launched_by_torchrun, restart_count
from selfsup.train.run_dir import run_status

__all__ = ["ElasticStart", "elastic_start", "max_restarts"]


def max_restarts() -> int:
    """``torchrun --max-restarts`` of this launch (0 outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)


@dataclass(frozen=True)
class ElasticStart:
    """How this attempt starts: ``resume`` the run's checkpoint, or a new run (``overwrite``:
    the files an earlier attempt of this same command left before its first checkpoint)."""

    resume: bool
    overwrite: bool
    attempt: int


def elastic_start(cfg: Config, run_dir: str | None, overwrite: bool) -> ElasticStart:
    """Decide how this attempt of a torchrun launch starts (see the module docstring)."""
    attempt = restart_count()
    if not launched_by_torchrun() or max_restarts() == 0:
        return ElasticStart(False, overwrite, attempt)
    if not run_dir:
        raise ValueError(
            "torchrun --max-restarts needs the run directory named (--run-dir PATH or "
            "run_dir=PATH): a restarted worker group resumes it, and a default name is "
            "time-stamped per attempt"
        )
    if attempt == 0:
        return ElasticStart(False, overwrite, attempt)
    path = Path(run_dir)
    saved = path / "config.yaml"
    if not saved.is_file():
        return ElasticStart(False, overwrite, attempt)  # the first attempt wrote nothing yet
    before = yaml.safe_load(saved.read_text()) or {}
    # The run's config.yaml holds what the run resolved (normalisation from the data, "auto"
    # choices); the command's own config leaves those open.
    changes = [
        (key, old, new)
        for key, old, new in config_changes(before, cfg.to_dict())
        if key != "run_dir" and new not in (None, "auto")
    ]
    if changes:
        key, old, new = changes[0]
        raise ValueError(
            f"restart {attempt}: {run_dir} holds a run with another configuration ({key}={old!r}, "
            f"this command {new!r}); it is not this launch's run, so it is left alone"
        )
    if run_status(path).has_checkpoint:
        return ElasticStart(True, False, attempt)
    return ElasticStart(False, True, attempt)  # this command's own files, before a checkpoint
