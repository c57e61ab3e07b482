"""``metrics.jsonl``: one JSON record a line, appended as the run goes, cut back on resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfsup.train.checkpoint import CheckpointError, atomic_write

__all__ = ["MetricsLog"]


class MetricsLog:
    """The run's metrics file. ``kept_checkpoint()`` says, in an error message, which
    checkpoint survives a failed write."""

    def __init__(self, path: Path, kept_checkpoint: Callable[[], str]) -> None:
        self.path = Path(path)
        self._kept_checkpoint = kept_checkpoint

    def append(self, record: dict[str, Any]) -> None:
        try:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as err:
            raise CheckpointError(
                f"could not append to {self.path} ({err.strerror or err}); free disk space or "
                f"choose a writable run_dir; {self._kept_checkpoint()}"
            ) from None

    def clear(self) -> None:
        """A new run in this directory: forget an earlier run's records."""
        self.path.unlink(missing_ok=True)

    def truncate(self, step: int) -> None:
        """Drop the records written after ``step`` (the checkpoint a run resumes from) and a
        line torn by a kill, so that the replayed steps are not logged twice."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the last line of a killed run may be cut short
            if record.get("kind") != "end" and record.get("step", 0) <= step:
                kept.append(line + "\n")
        text = "".join(kept)

        def write(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(self.path, write)
