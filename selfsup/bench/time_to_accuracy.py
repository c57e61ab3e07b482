"""Time to accuracy: k-NN top-1 against minutes of pre-training, for each preset and seed.

One run of one preset for a wall-clock budget of B minutes:

1. *Calibration* (not counted): a throw-away run of the same config is timed over 20 steps
   after 5 (the trainer as it will run: loader, views, step, logging); the schedule is first
   sized to ``train.total_steps = 0.85 * B * 60 * img/s / batch``, then re-planned from the
   run's own sustained speed at 10%, 30% and 60% of the budget to end at 97% of it
   (:class:`~selfsup.train.schedule_fit.BudgetFit`): the lr, weight-decay and momentum
   schedules anneal fully within the budget, as a user who has B minutes would run.
2. *Training*, with a clock that counts training time only. At each mark (minutes) the clock
   pauses and the current encoder (the one the method's protocol evaluates: DINO's teacher) is
   measured by the full k-NN protocol of ``selfsup eval knn``: every training image in the bank,
   every test image a query, ``eval.knn_k`` neighbours, temperature ``eval.knn_temperature``,
   features at ``eval.precision``. Mark 0 is the random initialisation. The evaluation time is
   reported apart.
3. The run stops at the budget, wherever its schedule is; a schedule that ends earlier (the
   run slowed after its last re-planning) is evaluated at its end, at the time it ended.
4. With ``linear``, the final encoder is also measured by ``selfsup eval linear``'s protocol
   (the issue's "k-NN or linear" bar); its time is reported apart.

The online k-NN and the online linear probe are off in these runs (their cost is the user's
choice, not the method's), so the time counted is the method's training step, the data and
the checkpoints. ``train.compile=auto`` decides in the run as in any other (the calibration
run is too short for it to compile); its compile time counts as training time, and the
re-planning times the compiled steps apart. ``train.compile=true`` compiles both the
calibration and the run.
Figures are specific to the machine: the report names it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfsup import build
from selfsup.bench.machine import machine_description, sync
from selfsup.config import Config
from selfsup.config.root import apply_overrides
from selfsup.data import ImageDataset
from selfsup.eval.knn import knn_accuracy
from selfsup.eval.run import evaluate_run, features_of, pixel_features
from selfsup.progress import say
from selfsup.train.device import resolve_device
from selfsup.train.schedule_fit import BudgetFit
from selfsup.train.trainer import Trainer

__all__ = [
    "SCHEDULE_MARGIN",
    "MarkResult",
    "TimedRun",
    "calibrate",
    "default_marks",
    "full_knn",
    "labelled_splits",
    "pixels_knn",
    "pixels_linear",
    "planned_steps_for",
    "run_time_to_accuracy",
]

# The schedule is sized to this share of the budget. On the 2-core machine a run's sustained
# steps measured 7-20% slower than short calibrations (repeated calibrations of one config read
# 591 and 675 img/s, the run 556); a run cut at the budget before its schedule ends has not
# annealed, one that ends early is measured at its end.
SCHEDULE_MARGIN = 0.85


@dataclass
class MarkResult:
    """The k-NN top-1 (percent) of the encoder after ``train_s`` seconds of training."""

    minutes: float  # the mark asked for
    train_s: float  # training seconds when it was taken (the first step past the mark)
    step: int
    knn_top1: float
    eval_s: float  # seconds the evaluation took (not counted as training)


@dataclass
class TimedRun:
    """One preset, one seed, one budget."""

    name: str
    seed: int
    budget_min: float
    img_per_s: float  # calibrated step throughput
    calibration_s: float
    planned_steps: int
    steps_per_epoch: int
    steps: int = 0  # steps trained
    train_s: float = 0.0
    marks: list[MarkResult] = field(default_factory=list)
    machine: str = ""
    # (training s, step, new total steps) of each re-planning from the sustained speed
    fits: list[tuple[float, int, int]] = field(default_factory=list)
    final_planned_steps: int | None = None  # the schedule's length after the last re-planning
    linear_top1: float | None = None  # the final encoder's linear probe (percent), if asked
    linear_s: float | None = None  # seconds it took (not counted as training)
    batch_size: int = 0  # the preset's batch (0 in records from before it was kept)

    @property
    def run_img_per_s(self) -> float | None:
        """The run's own throughput over its training time (None where not recorded)."""
        if not self.batch_size or self.train_s <= 0:
            return None
        return self.steps * self.batch_size / self.train_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimedRun:
        """The inverse of :meth:`to_dict` (a ``--json`` line's ``run``)."""
        marks = [MarkResult(**m) for m in data.get("marks", [])]
        fits = [(float(s), int(k), int(n)) for s, k, n in data.get("fits", [])]
        return cls(**{**data, "marks": marks, "fits": fits})


def default_marks(budget_min: float) -> list[float]:
    """0 (random init), then 1, 2, 5, 10, 20, 30, 60, ... minutes below the budget, and the
    budget itself."""
    ladder = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 240.0]
    return [0.0] + [m for m in ladder if m < budget_min] + [float(budget_min)]


def planned_steps_for(budget_s: float, img_per_s: float, batch_size: int) -> int:
    """Steps that fit in ``SCHEDULE_MARGIN`` of the budget at the calibrated throughput."""
    if budget_s <= 0 or img_per_s <= 0:
        raise ValueError(f"need a positive budget and throughput, got {budget_s}, {img_per_s}")
    return max(1, math.floor(SCHEDULE_MARGIN * budget_s * img_per_s / batch_size))


def calibrate(
    cfg: Config, dataset: ImageDataset, steps: int = 20, warmup: int = 5
) -> tuple[float, float]:
    """Images/s of ``cfg``'s training as the trainer runs it (loader, views, step, hooks,
    logging; compiling first when ``train.compile``), timed over ``steps`` steps after
    ``warmup`` of a throw-away run, and the seconds the calibration took.

    Under progressive resizing (``views.progressive_start_size``) the throw-away run is
    ``warmup + steps`` steps long, so that it walks the whole schedule of view sides in the
    run's proportions instead of timing its first, smallest side. Its warm-up steps are the
    smallest ones, and each new side may compile or autotune once within the timed steps, so
    the rate errs low: the schedule then ends before the budget (step 3 of the module's
    docstring)."""
    start = time.perf_counter()
    probe = copy.deepcopy(cfg)
    probe.train.max_steps = warmup + steps
    if cfg.views.progressive_start_size is not None:
        probe.train.total_steps = warmup + steps
    probe.train.progress = False
    ends: list[float] = []
    with tempfile.TemporaryDirectory(prefix="selfsup-calibrate-") as tmp:
        trainer = Trainer(probe, tmp, dataset, overwrite=True)
        if trainer.last_step < warmup + steps:
            raise ValueError(
                f"calibration needs {warmup + steps} steps; the run has {trainer.last_step}"
            )

        def clock(t: Trainer) -> None:
            sync(t.device)
            ends.append(time.perf_counter())

        trainer.step_hooks.append(clock)
        with contextlib.redirect_stderr(io.StringIO()):  # its plan line is not the run's
            trainer.fit()
    per_step = (ends[-1] - ends[warmup - 1]) / steps
    return cfg.train.batch_size / per_step, time.perf_counter() - start


def _knn_top1(
    bank: tuple[Tensor, Tensor], query: tuple[Tensor, Tensor], cfg: Config, num_classes: int
) -> float:
    """``eval.knn_k``-NN top-1 (percent) of ``query`` features against the ``bank``."""
    e = cfg.eval
    return 100 * knn_accuracy(
        *bank, *query, num_classes, k=min(e.knn_k, len(bank[0])), temperature=e.knn_temperature
    )


def full_knn(
    encoder: nn.Module,
    cfg: Config,
    eval_sets: tuple[ImageDataset, ImageDataset],
    device: torch.device,
) -> float:
    """Top-1 (percent) of the ``selfsup eval knn`` protocol: whole train split as the bank."""
    train, test = eval_sets
    was_training = encoder.training
    encoder.eval()
    try:
        bank = features_of(encoder, train, cfg, device)
        query = features_of(encoder, test, cfg, device)
    finally:
        encoder.train(was_training)
    return _knn_top1(bank, query, cfg, int(train.num_classes or 0))


def labelled_splits(cfg: Config) -> tuple[ImageDataset, ImageDataset]:
    """The labelled (train, test) splits of ``cfg`` (``data.eval_dataset`` when set)."""
    splits = build.eval_datasets(cfg)
    if splits is None:
        raise ValueError(
            f"{cfg.data.dataset} has no labelled splits to measure a k-NN on; set "
            "data.eval_dataset to a labelled dataset"
        )
    return splits


def pixels_linear(
    cfg: Config, eval_sets: tuple[ImageDataset, ImageDataset], device: str = "cpu"
) -> float:
    """The raw-pixel baseline of ``selfsup eval linear``'s protocol, all labels (percent)."""
    from selfsup.eval.labelled import label_subset
    from selfsup.eval.protocols import feature_protocol

    cfg = copy.deepcopy(cfg)
    build.resolve_normalization(cfg, eval_sets[0])
    train, test = (pixel_features(split, cfg) for split in eval_sets)
    classes = int(eval_sets[0].num_classes or 0)
    everything = label_subset("100%", eval_sets[0], classes, cfg, Path("."))  # writes no file
    top1, _ = feature_protocol(
        "linear", "raw pixels", train, test, everything, cfg, classes, device, None
    )
    return 100 * top1


def pixels_knn(cfg: Config, eval_sets: tuple[ImageDataset, ImageDataset]) -> float:
    """The raw-pixel baseline under the same protocol (percent); pixels normalised with the
    training split's statistics when the config does not give them."""
    cfg = copy.deepcopy(cfg)
    build.resolve_normalization(cfg, eval_sets[0])
    bank, query = (pixel_features(split, cfg) for split in eval_sets)
    return _knn_top1(bank, query, cfg, int(eval_sets[0].num_classes or 0))


class MarkClock:
    """The trainer's step hook: counts training time (evaluations excluded), evaluates at each
    mark and stops the run at the budget."""

    def __init__(
        self,
        marks_min: Sequence[float],
        budget_s: float,
        evaluate: Callable[[Trainer], float],
        record: Callable[[MarkResult], None],
    ) -> None:
        self.pending = sorted(m for m in marks_min if m > 0)
        self.budget_s = budget_s
        self.evaluate = evaluate
        self.record = record
        self.start = time.perf_counter()
        self.paused_s = 0.0

    def restart(self) -> None:
        """Training starts now: zero the clock."""
        self.start, self.paused_s = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused_s

    def __call__(self, trainer: Trainer) -> None:
        sync(trainer.device)  # the step's work is done before the clock is read
        now = self.elapsed()
        while self.pending and now >= 60 * self.pending[0]:
            self.take(trainer, self.pending.pop(0), now)
        if now >= self.budget_s:
            trainer.stop_after_step()

    def take(self, trainer: Trainer, minutes: float, now: float) -> None:
        paused = time.perf_counter()
        accuracy = self.evaluate(trainer)
        eval_s = time.perf_counter() - paused
        self.paused_s += eval_s
        self.record(MarkResult(minutes, now, trainer.step, accuracy, eval_s))


def run_time_to_accuracy(
    cfg: Config,
    name: str,
    budget_min: float,
    run_dir: str | Path,
    marks_min: Sequence[float] | None = None,
    train_set: ImageDataset | None = None,
    eval_sets: tuple[ImageDataset, ImageDataset] | None = None,
    linear: bool = False,
) -> TimedRun:
    """Calibrate, size the schedule to ``budget_min`` (re-planned from the run's speed), train
    with k-NN at ``marks_min`` (default :func:`default_marks`) and return the curve; with
    ``linear``, the final encoder's linear probe too. ``cfg.train.seed`` is the run's seed."""
    if budget_min <= 0:
        raise ValueError(f"the budget must be positive, got {budget_min} minutes")
    marks = sorted(set(default_marks(budget_min) if marks_min is None else marks_min))
    if any(m < 0 or m > budget_min for m in marks):
        raise ValueError(f"marks must lie in [0, {budget_min}] minutes, got {marks}")
    cfg = apply_overrides(
        copy.deepcopy(cfg), ["train.knn_every=0", "train.online_linear=false"]
    ).validate()
    device = resolve_device(cfg.train.device)
    train_set = train_set if train_set is not None else build.train_dataset(cfg)
    eval_sets = eval_sets if eval_sets is not None else labelled_splits(cfg)
    build.resolve_normalization(cfg, train_set)

    img_per_s, calibration_s = calibrate(cfg, train_set)
    steps = planned_steps_for(60 * budget_min, img_per_s, cfg.train.batch_size)
    cfg.train.total_steps = steps
    trainer = Trainer(cfg, run_dir, train_set, eval_sets, overwrite=True)
    run = TimedRun(
        name,
        cfg.train.seed,
        budget_min,
        img_per_s,
        calibration_s,
        steps,
        trainer.steps_per_epoch,
        machine=machine_description(device),
        batch_size=cfg.train.batch_size,
    )
    say(
        f"{name} (seed {cfg.train.seed}): {img_per_s:.0f} img/s calibrated in "
        f"{calibration_s:.0f} s; schedule of {steps} steps "
        f"({steps / trainer.steps_per_epoch:.2f} epochs) for {budget_min:g} minutes"
    )

    def evaluate(t: Trainer) -> float:
        encoder = t.method.encoder_for(t.cfg.eval.network)
        with torch.no_grad():
            return full_knn(encoder, t.cfg, eval_sets, device)

    def record(mark: MarkResult) -> None:
        run.marks.append(mark)
        say(
            f"{name} (seed {cfg.train.seed}): {mark.minutes:g} min (trained {mark.train_s:.0f} s, "
            f"step {mark.step}): k-NN {mark.knn_top1:.2f}% (evaluated in {mark.eval_s:.0f} s)"
        )

    clock = MarkClock(marks, 60 * budget_min, evaluate, record)
    if 0 in marks:  # the random initialisation
        clock.take(trainer, 0.0, 0.0)
    clock.restart()
    fit = BudgetFit(60 * budget_min, clock.elapsed)  # re-plans from the sustained speed
    trainer.step_hooks += [clock, fit]
    trainer.fit()
    run.train_s, run.steps = clock.elapsed(), trainer.step
    run.fits, run.final_planned_steps = fit.fits, trainer.total_steps
    if clock.pending:  # the schedule ended before the budget: its end stands for the rest
        clock.take(trainer, clock.pending[-1], run.train_s)
    if linear:
        started = time.perf_counter()
        (row,) = evaluate_run(run_dir, ("linear",), False, device, eval_sets, cache=False)
        run.linear_top1, run.linear_s = 100 * (row.linear or 0.0), time.perf_counter() - started
        say(f"{name} (seed {cfg.train.seed}): linear probe {run.linear_top1:.2f}% at the end")
    return run
