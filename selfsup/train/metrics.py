"""``metrics.jsonl``: one JSON record a line, appended as the run goes, cut back on resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfsup.train.checkpoint import CheckpointError, atomic_write
from selfsup.train.device import precision_name

if TYPE_CHECKING:
    from selfsup.train.trainer import Trainer

__all__ = ["MetricsLog", "setup_record", "train_record"]


def train_record(trainer: Trainer, epoch: int, lr: float, img_per_s: float) -> dict[str, Any]:
    """A ``train`` line: the step's synced loss and method logs, its lr, the throughput and,
    under progressive resizing, the side of its global views (``view_size``)."""
    record = {
        "kind": "train",
        "step": trainer.step,
        "epoch": epoch + 1,
        "loss": trainer._last_loss,
        "lr": lr,
        "img_per_s": img_per_s,
        **trainer._last_logs,
    }
    view_size = trainer.train_step.view_size(trainer.step - 1)  # the step just taken
    if view_size is not None:  # progressive resizing (views.progressive_start_size)
        record["view_size"] = view_size
    if trainer.nonfinite.skip:
        record["skipped_steps"] = trainer.skipped_steps
    return record


def setup_record(trainer: Trainer) -> dict[str, Any]:
    """The first line of ``metrics.jsonl``: the device, precision, batch, schedule length, the
    resolved learning-rate rule, the sizes of the model, ``train.compile`` and the online
    probe's learning rate (None: no probe), as the run resolved them."""
    o, t = trainer.cfg.optim, trainer.cfg.train
    best = trainer.checkpoints.best
    probe = trainer.train_step.probe
    return {
        "device": str(trainer.device),
        "autocast": precision_name(trainer.autocast_dtype),
        "global_batch_size": t.batch_size,
        "processes": trainer.dist.world_size,  # torch.distributed world size (1: one process)
        "steps_per_epoch": trainer.steps_per_epoch,
        "total_steps": trainer.total_steps,
        "in_channels": trainer.in_channels,
        "lr_rule": f"{o.lr_scaling}: base_lr {o.base_lr} x rule(B={t.batch_size}) = "
        f"{trainer.peak_lr:.5g}",
        "peak_lr": trainer.peak_lr,
        "parameters": sum(p.numel() for p in trainer.method.parameters()),
        "encoder_parameters": sum(p.numel() for p in trainer.method.encoder.parameters()),
        "on_nonfinite": t.on_nonfinite,
        "compile": t.compile,  # as configured; the decision is the "compile" record that follows
        "keep_best": t.keep_best,
        "best_metric": best.metric if best is not None else None,
        "online_linear_lr": probe.optimizer.param_groups[0]["lr"] if probe is not None else None,
    }


class MetricsLog:
    """The run's metrics file. ``kept_checkpoint()`` says, in an error message, which
    checkpoint survives a failed write. ``path=None`` (the ranks of a distributed run other
    than 0) writes nothing."""

    def __init__(self, path: Path | None, kept_checkpoint: Callable[[], str]) -> None:
        self.writes = path is not None
        self.path = Path(path if path is not None else "metrics.jsonl")
        self._kept_checkpoint = kept_checkpoint
        self._events: Any = None  # a torch.utils.tensorboard SummaryWriter when enabled

    def start_tensorboard(self, enabled: bool | None, resumed_step: int | None) -> None:
        """Mirror ``train``/``epoch`` records as TensorBoard scalars in ``RUN/tensorboard/``
        (``enabled=None``: when the package is installed). A resumed run passes the first
        step after its checkpoint: events from there on are purged, as metrics.jsonl is cut
        back."""
        if enabled is False or not self.writes:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if enabled:
                raise ValueError(
                    "train.tensorboard=true needs the tensorboard package: pip install "
                    "tensorboard (or set train.tensorboard=false)"
                ) from None
            return
        self._events = SummaryWriter(
            log_dir=str(self.path.parent / "tensorboard"), purge_step=resumed_step
        )

    def _mirror(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind in ("train", "epoch"):
            for key, value in record.items():
                if key not in ("kind", "step", "epoch") and isinstance(value, int | float):
                    self._events.add_scalar(f"{kind}/{key}", value, int(record["step"]))
        if kind in ("epoch", "end"):
            self._events.flush()
        if kind == "end":
            self._events.close()
            self._events = None

    def append(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        try:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            if self._events is not None:
                self._mirror(record)
        except OSError as err:
            raise CheckpointError(
                f"could not append to {self.path} ({err.strerror or err}); free disk space or "
                f"choose a writable run_dir; {self._kept_checkpoint()}"
            ) from None

    def clear(self) -> None:
        """A new run in this directory: forget an earlier run's records."""
        if self.writes:
            self.path.unlink(missing_ok=True)

    def truncate(self, step: int) -> None:
        """Drop the records written after ``step`` (the checkpoint a run resumes from) and a
        line torn by a kill, so that the replayed steps are not logged twice."""
        if not self.writes or not self.path.exists():
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
