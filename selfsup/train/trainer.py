"""The training run: a plain loop around :class:`~selfsup.train.step.TrainStep`::

    for images, _ in loader.iterate(epoch, start_step):
        result = train_step(images, step, generator)   # views, forward, backward, clip, hooks,
        nonfinite.after_step(result, step + 1, epoch)  # lr/wd of the step, optimiser step
        log; at the epoch end: epoch record, online k-NN, best-k; checkpoint when due

around which the trainer keeps the run directory. Each concern has a module of its own:
``device``, ``interrupt``, ``nonfinite``, ``compile_policy``, ``metrics``, ``epoch_monitor``,
``checkpoint_policy``, ``run_state``; the guarantees are in ``docs/reliability.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selfsup import build
from selfsup.config import Config
from selfsup.data import EpochLoader, ImageDataset
from selfsup.methods import Method
from selfsup.nn.sync_batchnorm import convert_sync_batchnorm
from selfsup.progress import say, set_quiet
from selfsup.train.checkpoint import CheckpointError, atomic_write, seed_everything
from selfsup.train.checkpoint_policy import CheckpointPolicy
from selfsup.train.compile_policy import CompileControl
from selfsup.train.device import autocast, cpu_has_fast_bf16, resolve_device, resolve_precision
from selfsup.train.distributed import (
    agree_any,
    broadcast_object,
    check_distributed_config,
    current_context,
    process_device,
    rank_seed,
    run_on_main,
)
from selfsup.train.epoch_monitor import EpochMonitor
from selfsup.train.interrupt import GracefulInterrupt
from selfsup.train.metrics import MetricsLog, setup_record, train_record
from selfsup.train.nonfinite import MAX_CONSECUTIVE_SKIPS, NonFiniteLossError, NonFinitePolicy
from selfsup.train.progress_report import TrainProgress
from selfsup.train.run_dir import claim_run_dir, default_run_dir
from selfsup.train.run_state import (
    TrainResult,
    announce_resume,
    finish_run,
    finished_run_result,
    load_trainer_state,
    trainer_state,
)
from selfsup.train.step import StepResult, TrainStep

__all__ = [
    "MAX_CONSECUTIVE_SKIPS",
    "CheckpointError",
    "NonFiniteLossError",
    "StepResult",
    "TrainResult",
    "TrainStep",
    "Trainer",
    "autocast",
    "cpu_has_fast_bf16",
    "default_run_dir",
    "resolve_device",
    "resolve_precision",
    "seed_everything",
]


class Trainer:
    """Pre-train ``cfg.method`` on ``cfg.data`` into a run directory.

    ``train_set``/``eval_sets`` may be passed to train on in-memory data without the dataset
    loaders (tests, notebooks); otherwise they are loaded from the config. A new run refuses a
    directory that already holds one unless ``overwrite`` (see :mod:`selfsup.train.run_dir`).
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path | None = None,
        train_set: ImageDataset | None = None,
        eval_sets: tuple[ImageDataset, ImageDataset] | None = None,
        overwrite: bool = False,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        t = cfg.train
        self.overwrite = overwrite
        # torch.distributed: this process's rank (rank 0 of 1 without a process group).
        self.dist = current_context()
        if not self.dist.is_main:
            set_quiet()  # one voice: rank 0 prints progress
        check_distributed_config(cfg, self.dist.world_size)
        run_dir = run_dir or cfg.run_dir or default_run_dir(cfg.method, cfg.data.dataset)
        self.run_dir = Path(broadcast_object(str(run_dir)))  # rank 0's choice
        cfg.run_dir = str(self.run_dir)
        self.device = resolve_device(process_device(t.device, self.dist))
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.train_set = train_set if train_set is not None else build.train_dataset(cfg)
        if len(self.train_set) < t.batch_size:
            raise ValueError(
                f"train.batch_size={t.batch_size} is larger than the training set "
                f"({len(self.train_set)} images); lower train.batch_size"
            )
        self.eval_sets = eval_sets
        if eval_sets is None and t.knn_every > 0 and self.dist.is_main:  # rank 0 evaluates
            self.eval_sets = build.eval_datasets(cfg)
        build.resolve_normalization(cfg, self.train_set)
        self.in_channels = build.input_channels(cfg, self.train_set)

        self.loader = EpochLoader(
            self.train_set,
            t.batch_size,
            seed=t.seed,
            num_workers=cfg.data.num_workers,
            device=self.device,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.steps_per_epoch = self.loader.steps_per_epoch()
        self.total_steps = t.planned_steps(self.steps_per_epoch)
        self.last_step = min(self.total_steps, t.max_steps or self.total_steps)
        seed_everything(t.seed)
        method = build.make_method(cfg, self.in_channels)
        if t.sync_batchnorm and self.dist.active:
            convert_sync_batchnorm(method, self.device)
        spe, classes = self.steps_per_epoch, self.train_set.num_classes  # classes: online probe
        self.train_step = TrainStep.from_config(cfg, method, spe, self.device, classes)
        # Data statistics (Colorization's colour prior), before any step; a resumed run then
        # loads the same values from its checkpoint.
        self.method.prepare_data(self.train_set)
        # Every rank draws its own views, masks and puzzles (rank 0: the run's own seed).
        own_seed = rank_seed(t.seed, self.dist.rank)
        if self.dist.rank > 0:
            seed_everything(own_seed)
        self.view_generator = torch.Generator(device=self.device).manual_seed(own_seed)
        self.step = 0  # optimiser steps completed

        with_knn = broadcast_object(self.eval_sets is not None and t.knn_every > 0)
        self.monitor = EpochMonitor(cfg, self.eval_sets, self.device) if self.eval_sets else None
        self.checkpoints = CheckpointPolicy(
            self.run_dir, t, self.steps_per_epoch, self.last_step, with_knn, self.dist.is_main
        )
        metrics_path = self.run_dir / "metrics.jsonl" if self.dist.is_main else None
        self.metrics = MetricsLog(metrics_path, self.checkpoints.kept)
        self.nonfinite = NonFinitePolicy(
            cfg,
            self.train_step.lr_schedule,
            self.train_step.autocast_dtype,
            self.device,
            self.metrics.append,
            self.checkpoints.kept,
        )
        # Sum and count of this epoch's (finite) losses, for the epoch's mean loss.
        self._epoch_loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        self._epoch_loss_steps = 0
        self._last_loss = float("nan")  # loss of the latest synced step (logged, epoch end)
        self._last_logs: dict[str, float] = {}  # the method's logs at that step
        self._last_knn: float | None = None
        # train.compile: the decision (auto: after timing the first steps) and the run's
        # compile cache
        self.compiling = CompileControl(
            cfg, self.train_step, self.run_dir, self.metrics.append, self.dist.is_main
        )
        self.progress = TrainProgress(self)  # plan, duration estimate, bar or plain lines
        # Called after every step with the trainer (e.g. the time-to-accuracy benchmark's marks);
        # a hook may end the run early with stop_after_step().
        self.step_hooks: list[Callable[[Trainer], None]] = []
        self._agreed_interrupt = False

    # -- what the step owns, by its usual names ----------------------------------------------------
    @property
    def method(self) -> Method:
        return self.train_step.method

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.train_step.optimizer

    @property
    def lr_schedule(self) -> np.ndarray:
        return self.train_step.lr_schedule

    @property
    def wd_schedule(self) -> np.ndarray | None:
        return self.train_step.wd_schedule

    @property
    def peak_lr(self) -> float:
        return self.train_step.peak_lr

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return self.train_step.autocast_dtype

    @property
    def skipped_steps(self) -> int:
        return self.nonfinite.skipped_steps

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoints.path

    # -- checkpoints ----------------------------------------------------------------------------
    def geometry(self) -> dict[str, int]:
        """What maps a step to a position in the data: resuming needs the same values."""
        return {
            "dataset_size": len(self.train_set),
            "batch_size": self.cfg.train.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything that determines the rest of the run (see :mod:`selfsup.train.run_state`).
        Refuses NaN/inf parameters."""
        return trainer_state(self)

    def save(self, state: dict[str, Any] | None = None) -> None:
        """Write ``checkpoints/last.pt`` for the current step atomically (never a NaN/inf one)."""
        self.nonfinite.raise_if_nonfinite()
        self.checkpoints.write(self.step, state if state is not None else self.checkpoint_state())
        self.compiling.on_checkpoint()

    def load(self, path: Path | None = None) -> None:
        """Restore a checkpoint written by :meth:`save`; training continues exactly from it."""
        load_trainer_state(self, Path(path or self.checkpoint_path))

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train until ``train.epochs`` (or ``train.max_steps``); ``resume`` continues the run
        from ``checkpoints/last.pt`` exactly as if it had never stopped.

        Ctrl-C finishes the step in flight, writes a checkpoint and raises ``KeyboardInterrupt``;
        a second Ctrl-C raises at once and keeps the previous checkpoint.
        """
        main = self.dist.is_main  # rank 0 alone writes the run directory
        if not resume:
            self.removed_outputs = run_on_main(lambda: claim_run_dir(self.run_dir, self.overwrite))
        run_on_main(self.checkpoints.prepare_run_dir)
        if resume:
            self.load()  # before config.yaml is rewritten: a config that does not fit fails here
            finished = run_on_main(lambda: finished_run_result(self))
            if finished is not None:
                return finished
            announce_resume(self)
        first_step = self.step
        config_text = self.cfg.to_yaml()

        def write_config(tmp: Path) -> None:
            tmp.write_text(config_text)

        if main:
            atomic_write(self.run_dir / "config.yaml", write_config)
        self.checkpoints.start(self.step if resume else None)
        if resume:
            self.metrics.truncate(self.step)
        else:
            self.metrics.clear()
            self.metrics.append({"kind": "setup", "step": 0, **setup_record(self)})
        self.metrics.start_tensorboard(
            self.cfg.train.tensorboard, self.step + 1 if resume else None
        )
        self.compiling.start(self.step, self.last_step, resume)

        start = time.perf_counter()
        with GracefulInterrupt() as interrupt:
            try:
                while self.step < self.last_step and not self._interrupted(interrupt):
                    epoch, start_in_epoch = divmod(self.step, self.steps_per_epoch)
                    self._train_epoch(epoch, start_in_epoch, interrupt)
            except KeyboardInterrupt:
                say(f"stopped at once: {self.checkpoints.kept()}")
                raise
            if self._interrupted(interrupt) and self.step < self.last_step:
                if self.checkpoints.due_on_interrupt(self.step):
                    self.save()
                say(
                    f"interrupted: checkpoint saved at step {self.step}; continue with "
                    f"`selfsup pretrain --resume {self.run_dir}`"
                )
                raise KeyboardInterrupt
        self.nonfinite.raise_if_nonfinite()
        return finish_run(self, time.perf_counter() - start, self.step - first_step)

    def _train_epoch(self, epoch: int, start_in_epoch: int, interrupt: GracefulInterrupt) -> None:
        """Steps from ``start_in_epoch`` to the end of the epoch, ``last_step`` or a Ctrl-C, then
        the epoch's bookkeeping and checkpoint."""
        t = self.cfg.train
        self.method.train()
        steps_here = min(self.steps_per_epoch, self.last_step - epoch * self.steps_per_epoch)
        self.progress.start_epoch(epoch, start_in_epoch, steps_here)
        if start_in_epoch == 0:
            self._epoch_loss_sum.zero_()
            self._epoch_loss_steps = 0
        window_start, window_images = time.perf_counter(), 0
        for images, labels in self.loader.iterate(epoch, start_in_epoch):
            result = self.train_step(images, self.step, self.view_generator, labels)
            self.nonfinite.after_step(result, self.step + 1, epoch)
            if result.skipped is None:
                self._epoch_loss_sum += result.loss.float()
                self._epoch_loss_steps += 1
            self.step += 1
            if self.compiling.after_step(self.step, self.last_step, result.loss):
                self.progress.remeasure(self.step)  # auto compiled: the steps change speed
            for hook in self.step_hooks:
                hook(self)
            global_images = images.shape[0] * self.dist.world_size  # every process's share
            window_images += global_images
            line_due = self.progress.after_step(self.step, global_images)
            epoch_end = self.step % self.steps_per_epoch == 0
            logged = self.step % t.log_every == 0 or self.step == self.last_step
            if logged or epoch_end:  # host syncs (stop mode): here and for a progress line
                self.nonfinite.raise_if_nonfinite()
                self._last_loss = float(result.loss)
                self._last_logs = {k: float(v) for k, v in result.logs.items()}
            if logged:
                img_per_s = window_images / max(time.perf_counter() - window_start, 1e-9)
                self.metrics.append(train_record(self, epoch, result.lr, img_per_s))
                self.progress.postfix(self._last_loss, result.lr, img_per_s)
                window_start, window_images = time.perf_counter(), 0
            if line_due:  # a host sync, only when a progress line is printed
                self.progress.report(self.step, epoch, float(result.loss), result.lr)
            if epoch_end or self.step >= self.last_step or self._interrupted(interrupt, logged):
                break
            if self.checkpoints.due(self.step):
                self.save()
        self.progress.end_epoch()
        self.nonfinite.raise_if_nonfinite()
        ended = self.step % self.steps_per_epoch == 0 or self.step == self.total_steps
        state = self._end_epoch(epoch) if ended else None
        if self.checkpoints.due(self.step):
            self.save(state)

    def _end_epoch(self, epoch: int) -> dict[str, Any] | None:
        """The epoch record (losses, method logs, online k-NN, probe top-1, collapse metrics and
        warnings) and the best-k offer; returns the checkpoint state built for it, or None."""
        steps = self._epoch_loss_steps
        mean_loss = float(self._epoch_loss_sum) / steps if steps else float("nan")
        record: dict[str, Any] = {
            "kind": "epoch",
            "step": self.step,
            "epoch": epoch + 1,
            "loss": self._last_loss,  # the epoch's last step (always synced)
            "mean_loss": mean_loss,
            **self._last_logs,
        }
        if self.nonfinite.skip:
            record["skipped_steps"] = self.skipped_steps
        warnings = self.method.diagnose(self._last_logs)
        found = run_on_main(lambda: self._epoch_measures(epoch))  # rank 0's, shared
        if found is not None:
            record.update(found[0])
            warnings += found[1]
            self._last_knn = found[0]["knn_top1"]
        for warning in warnings:
            say(f"warning (epoch {epoch + 1}): {warning}")
        if warnings:
            record["warnings"] = warnings
        self.metrics.append(record)
        return self.checkpoints.offer_best(self.step, epoch + 1, record, self.checkpoint_state)

    def _epoch_measures(self, epoch: int) -> tuple[dict[str, Any], list[str]] | None:
        """The monitor's record and warnings when it is due at this epoch's end, else None."""
        if self.monitor is None or not self.monitor.due(epoch + 1):
            return None
        found = self.monitor(self._evaluated_encoder(), epoch + 1, self.train_step.probe)
        return found.record, found.warnings

    def _interrupted(self, interrupt: GracefulInterrupt, agree: bool = False) -> bool:
        """A Ctrl-C was seen. Distributed, every rank must stop at the same step: the ranks agree
        (one tiny all-reduce) at logged steps and keep that answer in between."""
        if not self.dist.active:
            return interrupt.requested
        if agree:
            self._agreed_interrupt = agree_any(interrupt.requested, self.device)
        return self._agreed_interrupt

    def stop_after_step(self) -> None:
        """End the run at the current step (a step hook's budget ran out): the encoder and the
        last checkpoint are written as at a normal end; the schedules keep their planned length."""
        self.last_step = self.checkpoints.last_step = self.step

    def online_knn(self) -> float | None:
        """k-NN accuracy of the current encoder (subset bank for speed; see train.knn_*)."""
        if self.monitor is None:
            return None
        return self.monitor.knn(self._evaluated_encoder()).accuracy

    def _evaluated_encoder(self) -> nn.Module:
        """The network evaluation and export use (``eval.network``; DINO: the teacher)."""
        return self.method.encoder_for(self.cfg.eval.network)
