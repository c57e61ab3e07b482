"""What a training run tells the user while it runs (stderr, through :func:`selfsup.progress.say`).

- At the start of every run (fresh or resumed): one plan line, e.g. ``plan: simclr, resnet18
  x0.25, fashion_mnist (60000 images), 20 epochs x 234 steps = 4680 steps, batch 256, cpu,
  bfloat16, compile: auto, decided after 10 timed steps`` (or the decision, e.g. ``compile: off
  (train.compile=false)``); auto then prints its decision on a line of its own
  (:mod:`selfsup.train.compile_policy`).
- After the first measured window (the first step, which may compile or warm up, excluded; then
  >= 5 s or >= 20 steps): ``estimated duration: 40h12m for 4680 steps at 412 img/s``; again,
  ``... for the remaining N steps``, when ``train.compile=auto`` has compiled the step (measured
  after the compiling step).
- A bar per epoch when ``train.progress`` shows one; otherwise a plain line every
  ``train.progress_every_s`` seconds and at the last step: ``step 120/4680 (epoch 1/20) loss
  4.1234 lr 0.3 412 img/s, elapsed 1m05s, ETA 40m12s``.

The loss of a line needs a host sync; :meth:`TrainProgress.after_step` says when one is due so
the trainer syncs only then (the hot path stays sync-free otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selfsup import progress
from selfsup.progress import ProgressStyle, format_duration, progress_bar, say
from selfsup.train.device import precision_name

if TYPE_CHECKING:
    from tqdm import tqdm

    from selfsup.train.trainer import Trainer

__all__ = ["ESTIMATE_AFTER_S", "ESTIMATE_AFTER_STEPS", "TrainProgress", "plan_line"]

ESTIMATE_AFTER_S = 5.0  # the duration estimate is measured over at least this long ...
ESTIMATE_AFTER_STEPS = 20  # ... or this many steps, after the first step


def plan_line(trainer: Trainer) -> str:
    """What the run is about to do, in one line."""
    cfg, t = trainer.cfg, trainer.cfg.train
    backbone = cfg.backbone.name
    if backbone.startswith("resnet"):
        backbone += f" x{cfg.backbone.width:g}"
    if t.total_steps is None:
        epochs = f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}"
        steps = f"{epochs} x {trainer.steps_per_epoch} steps = {trainer.total_steps} steps"
    else:
        epochs_run = trainer.total_steps / trainer.steps_per_epoch
        steps = f"{trainer.total_steps} steps (train.total_steps) = {epochs_run:.3g} epochs"
    if trainer.last_step < trainer.total_steps:
        steps += f", stopping at step {trainer.last_step} (train.max_steps)"
    v = cfg.views
    if v.progressive_start_size is not None:
        steps += (
            f", views {v.progressive_start_size} -> {v.size} px (progressive, reached at "
            f"{v.progressive_until:.0%} of the steps)"
        )
    start = f", from step {trainer.step}" if trainer.step else ""
    return (
        f"plan: {cfg.method}, {backbone}, {cfg.data.dataset} ({len(trainer.train_set)} images), "
        f"{steps}{start}, batch {t.batch_size}, {trainer.device}, "
        f"{precision_name(trainer.autocast_dtype)}, {trainer.compiling.plan_text()}"
    )


class TrainProgress:
    """The trainer's progress: the plan, the duration estimate, the epoch bar or plain lines."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.style = ProgressStyle.of(trainer.cfg.train)
        self.running = False
        self.bar: tqdm[Any] | None = None

    def begin(self, step: int) -> None:
        """A run starts at ``step``: print the plan and start the clocks."""
        self.running, self.estimated = True, False
        self.start_step, self.start = step, progress.now()
        self.first: tuple[int, float] | None = None  # (step, time) after the first step
        self.measure_from = step + 1  # the clock starts at the end of this step
        self.window_start, self.window_images = self.start, 0
        say(plan_line(self.trainer))

    def remeasure(self, step: int) -> None:
        """The step changes speed from the next one on (``train.compile=auto`` compiles it):
        measure again, leaving out that next step, which compiles, and estimate the remaining
        steps once more. (The clock restarts at the end of step ``step + 1``: were it started
        now, a compile of minutes would count as one step, and the estimate read hours.)"""
        self.start_step, self.estimated, self.first = step, False, None
        self.measure_from = step + 1  # the compiling step

    def start_epoch(self, epoch: int, start_in_epoch: int, steps_here: int) -> None:
        if not self.running:
            self.begin(self.trainer.step)
        if self.style.shows_bar():
            epochs = self.trainer.cfg.train.planned_epochs(self.trainer.steps_per_epoch)
            self.bar = progress_bar(f"epoch {epoch + 1}/{epochs}", steps_here, start_in_epoch)

    def after_step(self, step: int, images: int) -> bool:
        """Count a finished step; True when a plain line or the estimate is due (the caller then
        syncs the loss and calls :meth:`report`)."""
        if self.bar is not None:
            self.bar.update(1)
        self.window_images += images
        t = progress.now()
        if self.first is None and step >= self.measure_from:
            # the first step (after a remeasure: the compiling one) may compile or warm up:
            # the clock starts once it is done
            self.first = (step, t)
            self.window_start, self.window_images = t, 0
        if not self.estimated and self._estimate_due(step, t):
            return True
        if self.bar is not None or self.style.every_s <= 0:
            return False
        return step >= self.trainer.last_step or t - self.window_start >= self.style.every_s

    def _estimate_due(self, step: int, t: float) -> bool:
        if self.first is None:  # the clock has not started (the compiling step is running)
            return False
        first_step, first_t = self.first
        measured = step - first_step
        return measured > 0 and (
            t - first_t >= ESTIMATE_AFTER_S or measured >= ESTIMATE_AFTER_STEPS
        )

    def _seconds_per_step(self, step: int, t: float) -> float:
        assert self.first is not None
        first_step, first_t = self.first
        return (t - first_t) / (step - first_step) if step > first_step else float("nan")

    def report(self, step: int, epoch: int, loss: float, lr: float) -> None:
        """Print what :meth:`after_step` found due: the estimate and/or the plain line."""
        t = progress.now()
        per_step = self._seconds_per_step(step, t)
        batch = self.trainer.cfg.train.batch_size
        last = self.trainer.last_step
        if not self.estimated and self._estimate_due(step, t):
            self.estimated = True
            steps = last - self.start_step
            what = f"{steps} steps" if not self.start_step else f"the remaining {steps} steps"
            sizes = self.trainer.train_step.view_sizes  # progressive resizing: still growing?
            growing = sizes is not None and sizes[step - 1] < sizes[last - 1]
            say(
                f"estimated duration: {format_duration(steps * per_step)} for {what} at "
                f"{batch / per_step:.0f} img/s"
                + (" (measured on the early, smaller views: expect longer)" if growing else "")
            )
        if self.bar is not None or self.style.every_s <= 0:
            return
        if step < last and t - self.window_start < self.style.every_s:
            return
        img_s = self.window_images / max(t - self.window_start, 1e-9)
        epochs = self.trainer.cfg.train.planned_epochs(self.trainer.steps_per_epoch)
        say(
            f"step {step}/{last} (epoch {epoch + 1}/{epochs}) loss {loss:.4f} lr {lr:.3g} "
            f"{img_s:.0f} img/s, elapsed {format_duration(t - self.start)}, ETA "
            f"{format_duration((last - step) * per_step if step < last else 0.0)}"
        )
        self.window_start, self.window_images = t, 0

    def postfix(self, loss: float, lr: float, img_per_s: float) -> None:
        """The latest logged values on the bar."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", img_s=f"{img_per_s:.0f}")

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.trainer.step >= self.trainer.last_step:
            self.running = False  # a later fit() (another run) prints its own plan
