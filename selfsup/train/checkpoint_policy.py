"""When a run writes a checkpoint, decided in one place.

``checkpoints/last.pt`` is written at the end of the run, at the end of every
``train.checkpoint_every``-th epoch, every ``train.checkpoint_every_steps`` steps and on Ctrl-C;
at each epoch end the step is also offered to the best-k list (``train.keep_best``), ranked by
online k-NN top-1 when it runs, else by the epoch's mean loss. Every write is atomic
(:mod:`selfsup.train.checkpoint`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfsup.config import TrainConfig
from selfsup.train.checkpoint import (
    BestCheckpoints,
    CheckpointError,
    remove_stale_temp_files,
    save_checkpoint,
)

__all__ = ["CheckpointPolicy"]


class CheckpointPolicy:
    """The checkpoints of the run in ``run_dir``: when they are due, and writing them."""

    def __init__(
        self,
        run_dir: Path,
        train: TrainConfig,
        steps_per_epoch: int,
        last_step: int,
        with_knn: bool,
        writer: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        # False on the ranks of a distributed run other than 0: they decide as rank 0 does (the
        # same steps, the same records) but write nothing.
        self.writer = writer
        self.path = self.run_dir / "checkpoints" / "last.pt"
        self.every_epochs = train.checkpoint_every
        self.every_steps = train.checkpoint_every_steps
        self.steps_per_epoch = steps_per_epoch
        self.last_step = last_step
        self.saved_step: int | None = None  # step of the newest checkpoint on disk
        self.best_metric = "knn_top1" if with_knn else "mean_loss"
        self.best = (
            BestCheckpoints(self.path.parent, train.keep_best, self.best_metric, with_knn)
            if train.keep_best
            else None
        )

    def prepare_run_dir(self) -> None:
        """Fail before training if the run directory cannot be written; drop stale temp files."""
        checkpoints = self.path.parent
        try:
            checkpoints.mkdir(parents=True, exist_ok=True)
            for directory in (self.run_dir, checkpoints):
                fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=directory)
                os.close(fd)
                os.unlink(probe)
        except OSError as err:
            raise CheckpointError(
                f"run directory {self.run_dir} is not writable ({err.strerror or err}); fix its "
                "permissions or choose another one (run_dir=PATH, or --run-dir)"
            ) from None
        for directory in (self.run_dir, checkpoints):
            remove_stale_temp_files(directory)

    def start(self, resumed_step: int | None) -> None:
        """A new run forgets an earlier run's best checkpoints; a resumed one those after its
        step (they are offered again as the steps are replayed)."""
        if self.best is None or not self.writer:
            return
        if resumed_step is None:
            self.best.clear()
        else:
            self.best.truncate(resumed_step)

    def due(self, step: int) -> bool:
        """Whether ``last.pt`` is written after step ``step`` (steps completed)."""
        if step >= self.last_step:
            return True
        epoch_end = step % self.steps_per_epoch == 0
        if epoch_end and (step // self.steps_per_epoch) % self.every_epochs == 0:
            return True
        return bool(self.every_steps) and step % self.every_steps == 0

    def due_on_interrupt(self, step: int) -> bool:
        """Ctrl-C: write the current step unless it is on disk already."""
        return self.saved_step != step

    def offer_best(
        self, step: int, epoch: int, record: dict[str, Any], state: Callable[[], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Offer the epoch that ends at ``step`` to the best-k list; returns the checkpoint state
        when one was built for it (to write ``last.pt`` from the same), else None.

        The best file is written before ``last.pt``: a kill between the two replays this epoch
        on resume, which offers the same step again (the index keeps one entry per step).
        """
        if self.best is None or self.best_metric not in record:
            return None
        built = state()
        if self.writer:
            self.best.offer(step, epoch, float(record[self.best_metric]), built)
        return built

    def write(self, step: int, state: dict[str, Any]) -> None:
        """Write ``last.pt`` for ``step`` atomically."""
        if not self.writer:
            self.saved_step = step
            return
        try:
            save_checkpoint(self.path, state)
        except CheckpointError as err:
            raise CheckpointError(f"checkpoint of step {step} not written: {err}") from None
        self.saved_step = step

    def kept(self) -> str:
        """Which checkpoint survives a failure now, for error messages."""
        if self.saved_step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint ({self.path}, step {self.saved_step}) is kept"
