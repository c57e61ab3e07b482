"""One optimisation step of any method, as one object: :class:`TrainStep`.

The trainer, ``selfsup bench`` and a user's own loop take the same step through here, so what
is trained and what is measured cannot drift apart::

    views = step.views(images, generator, global_step)  # the method's batched views, on the
                                                # device (at the step's side, progressive resizing)
    result = step.update(views, global_step)    # zero_grad, forward (autocast), backward,
                                                # unscale, clip, before_optimizer_step,
                                                # lr/wd of global_step, optimiser step, after_step
                                                # (+ labels: the online linear probe's step)

``TrainStep`` reports what happened (loss, logs, lr, a skipped step) and decides nothing about
the run: logging, stopping on NaN/inf and checkpoints are the caller's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from selfsup import build
from selfsup.methods import Method, Progress, StepOutput
from selfsup.nn.distributed import gather_no_grad, world_size
from selfsup.train.compile_policy import compile_unavailable
from selfsup.train.device import autocast, resolve_precision
from selfsup.train.distributed import TrainingStepModule, mean_over_processes, wrap_data_parallel
from selfsup.train.online_probe import ACCURACY_LOG, OnlineLinearProbe, online_probe_for
from selfsup.train.optim import ClipMode, clip_gradients_
from selfsup.train.schedules import run_schedules

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["StepResult", "TrainStep"]

NonFinitePart = Literal["loss", "gradients"]


@dataclass
class StepResult:
    """What one :meth:`TrainStep.update` did. Tensors stay on the device: no host sync."""

    loss: Tensor  # [] detached
    # The method's detached scalars (+ online_linear_train_acc when the probe ran).
    logs: dict[str, Tensor] = field(default_factory=dict)
    lr: float = 0.0  # the learning rate of this step
    # Skip mode: "loss" or "gradients" when that was NaN/inf and the step was undone (buffers
    # restored, no optimiser step, no after_step); None when the step was taken.
    skipped: NonFinitePart | None = None


class TrainStep:
    """The method's training step with its optimiser, schedules, precision and hooks.

    Args:
        method: the method to train (its parameters already on ``device``).
        optimizer: over the method's parameters; its groups' ``lr`` (and, with
            ``wd_schedule``, the ``weight_decay`` of groups that decay) are set at every step:
            ``lr_schedule[k] * lr_scale``, or ``peak_lr * lr_scale`` for a group with
            ``fixed_lr`` (the group keys of :func:`~selfsup.train.optim.param_groups`; 1 and
            False when absent).
        lr_schedule: ``[total_steps]`` learning rate per global step (its length is the run's
            length, passed to ``method.configure_schedules``).
        steps_per_epoch: optimiser steps per epoch (for the method's epoch-based rules).
        wd_schedule: ``[total_steps]`` weight decay per step for the groups that decay (their
            ``"decay"`` flag from :func:`param_groups`, else those without ``lars_exclude``),
            or None to leave weight decay alone.
        autocast_dtype: mixed precision dtype (see :func:`resolve_precision`); None = fp32.
            fp16 scales the loss with a ``GradScaler``.
        channels_last: convert the method and the views to channels-last memory format.
        clip_grad: clip gradients to this norm (:func:`clip_gradients_` in ``clip_mode``).
        skip_nonfinite: undo a step whose loss or gradients are NaN/inf (one host sync a step).
        compile_backend: ``torch.compile`` the method's ``training_step`` with this backend.
        device: where the method lives (default: the device of its first parameter).
        peak_lr: the scaled learning rate before the schedule, for reports and the groups
            with a fixed lr (default: the schedule's largest value).
        probe: an online linear probe (:mod:`selfsup.train.online_probe`) that steps on the
            method's detached ``StepOutput.features`` whenever ``update`` gets labels; its
            running accuracy is reset at each epoch's first step.
        view_sizes: ``[total_steps]`` side of the global views per global step (progressive
            resizing, :func:`~selfsup.views.progressive_sizes`; local crops scale with it), or
            None: the recipe's own sizes at every step.
        data_parallel: in a ``torch.distributed`` process group, run the forward inside
            ``DistributedDataParallel`` (gradients averaged over the processes); the reported
            loss and logs are their means over the processes (the global batch's loss, so every
            process takes the same NaN/inf decision) and the probe learns from the gathered
            global batch.

    Example (a user's own loop; ``step(...)`` is ``step.update(step.views(...), ...)``):
        >>> import torch
        >>> from torch import nn
        >>> from selfsup.methods.byol import BYOL, byol_predictor, byol_projector
        >>> from selfsup.train.schedules import cosine_schedule
        >>> from selfsup.views import MultiViewTransform, byol_views
        >>> _ = torch.manual_seed(0)
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform(byol_views(8), mean=[0.5], std=[0.25])
        >>> method = BYOL(backbone, byol_projector(32, 64, 16), byol_predictor(16, 64), recipe)
        >>> params = [p for p in method.parameters() if p.requires_grad]
        >>> optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9)
        >>> lrs = cosine_schedule(0.05, 0.0, total_steps=6)
        >>> step = TrainStep(method, optimizer, lrs, steps_per_epoch=3)
        >>> generator = torch.Generator().manual_seed(0)
        >>> for global_step in range(6):
        ...     images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
        ...     result = step(images, global_step, generator)
        >>> result.lr, result.skipped, bool(torch.isfinite(result.loss))
        (0.0, None, True)
    """

    def __init__(
        self,
        method: Method,
        optimizer: torch.optim.Optimizer,
        lr_schedule: Sequence[float] | np.ndarray,
        steps_per_epoch: int,
        *,
        wd_schedule: Sequence[float] | np.ndarray | None = None,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        clip_grad: float | None = None,
        clip_mode: ClipMode = "global",
        skip_nonfinite: bool = False,
        compile_backend: str | None = None,
        device: torch.device | None = None,
        peak_lr: float | None = None,
        probe: OnlineLinearProbe | None = None,
        view_sizes: Sequence[int] | np.ndarray | None = None,
        data_parallel: bool = False,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"need steps_per_epoch >= 1, got {steps_per_epoch}")
        self.method = method
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self._check_schedules(lr_schedule, wd_schedule, view_sizes)
        self.device = device if device is not None else _device_of(method)
        self.autocast_dtype = autocast_dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            method.to(memory_format=torch.channels_last)
        self.clip_grad = clip_grad
        self.clip_mode = clip_mode
        self.skip_nonfinite = skip_nonfinite
        self.peak_lr = float(self.lr_schedule.max()) if peak_lr is None else peak_lr
        self.probe = probe
        # Indices, not the dicts: optimizer.load_state_dict replaces the group dicts on resume.
        # A group decays when param_groups says so ("decay"); groups built elsewhere decay
        # unless LARS excludes them (biases and norm parameters).
        self.decay_groups = [
            i
            for i, g in enumerate(optimizer.param_groups)
            if g.get("decay", not g.get("lars_exclude"))
        ]
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=autocast_dtype == torch.float16
        )
        # torch.compile of the forward (backbone, heads, loss); state stays in the method, so
        # checkpoints and resume are unchanged.
        self.compiled_step: Callable[[list[Tensor]], StepOutput] | None = None
        self.data_parallel: DistributedDataParallel | None = None
        if compile_backend is not None:
            self.compile(compile_backend)
        if data_parallel and world_size() > 1:
            step_fn = self.compiled_step or method.training_step
            self.data_parallel = wrap_data_parallel(method, step_fn, self.device)
        method.configure_schedules(self.total_steps, steps_per_epoch)

    def _check_schedules(
        self,
        lr_schedule: Sequence[float] | np.ndarray,
        wd_schedule: Sequence[float] | np.ndarray | None,
        view_sizes: Sequence[int] | np.ndarray | None,
    ) -> None:
        lrs = np.asarray(lr_schedule, dtype=np.float64)  # [total_steps]
        wd = None if wd_schedule is None else np.asarray(wd_schedule, np.float64)
        sizes = None if view_sizes is None else np.asarray(view_sizes, np.int64)
        if len(lrs) < 1:
            raise ValueError(
                "need a learning-rate schedule of >= 1 step (epochs * steps_per_epoch)"
            )
        for name, other in (("wd_schedule", wd), ("view_sizes", sizes)):
            if other is not None and len(other) != len(lrs):
                raise ValueError(
                    f"{name} has {len(other)} steps, lr_schedule {len(lrs)}; build both for "
                    "the same run length"
                )
        self.lr_schedule, self.wd_schedule, self.view_sizes = lrs, wd, sizes
        self.total_steps = len(lrs)

    def set_schedules(
        self,
        lr_schedule: Sequence[float] | np.ndarray,
        wd_schedule: Sequence[float] | np.ndarray | None = None,
        view_sizes: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Re-plan the run: new per-step schedules whose common length is the run's new length,
        and the method's own (EMA momentum, teacher temperature) rebuilt for it. Steps already
        taken keep what they had; :func:`~selfsup.train.schedule_fit.resize_run` re-plans a
        trainer's run this way."""
        self._check_schedules(lr_schedule, wd_schedule, view_sizes)
        self.method.configure_schedules(self.total_steps, self.steps_per_epoch)

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        method: Method,
        steps_per_epoch: int,
        device: torch.device | str,
        num_classes: int | None = None,
    ) -> TrainStep:
        """The step ``cfg`` describes for a run of ``train.planned_steps(steps_per_epoch)`` steps:
        its optimiser, warm-up + cosine learning rate, weight decay, the views' side
        (``views.progressive_*``), precision, clipping, channels-last, NaN/inf mode, compilation
        and, for data with ``num_classes``, the online linear probe (``train.online_linear``).
        Moves ``method`` to ``device``."""
        o, t = cfg.optim, cfg.train
        device = torch.device(device)
        method.to(device)
        if t.channels_last:
            method.to(memory_format=torch.channels_last)
        optimizer, peak_lr = build.make_optimizer(cfg, method)
        lrs, wd, sizes = run_schedules(cfg, peak_lr, steps_per_epoch)
        return cls(
            method,
            optimizer,
            lrs,
            steps_per_epoch,
            wd_schedule=wd,
            autocast_dtype=resolve_precision(t.precision, device),
            channels_last=t.channels_last,
            clip_grad=o.clip_grad,
            clip_mode=cast(ClipMode, o.clip_grad_mode),
            skip_nonfinite=t.on_nonfinite == "skip",
            # auto starts uncompiled: the trainer compiles once it has timed the step
            # (selfsup/train/compile_policy.py)
            compile_backend=t.compile_backend if t.compile is True else None,
            device=device,
            peak_lr=peak_lr,
            probe=online_probe_for(cfg, method.encoder, num_classes, device),
            view_sizes=sizes,
            data_parallel=True,
        )

    def compile(self, backend: str = "inductor") -> None:
        """Run the method's ``training_step`` through ``torch.compile`` from now on (the first
        call compiles), inside DistributedDataParallel too. The eager backend keeps the
        arithmetic bitwise. Refused where torch.compile cannot run (an unsupported Python; no
        C++ compiler for inductor's CPU kernels)."""
        unavailable = compile_unavailable(backend, self.device)
        if unavailable is not None:
            raise ValueError(
                f"cannot torch.compile the training step: {unavailable}; train.compile=false "
                "trains without it"
            )
        self.compiled_step = torch.compile(self.method.training_step, backend=backend)
        if self.data_parallel is not None:  # compiled later in the run (train.compile=auto)
            cast(TrainingStepModule, self.data_parallel.module).step_fn = self.compiled_step

    def autocast(self) -> torch.autocast:
        """The step's mixed-precision context (a no-op in fp32)."""
        return autocast(self.device, self.autocast_dtype)

    def progress(self, global_step: int) -> Progress:
        """The method hooks' view of ``global_step`` (0-based)."""
        epoch = global_step // self.steps_per_epoch
        return Progress(global_step, self.total_steps, epoch, self.steps_per_epoch)

    def views(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        global_step: int | None = None,
    ) -> list[Tensor]:
        """The method's views of a uint8 batch ``[B, C, H, W]`` on the device, in the step's
        memory format; with ``view_sizes`` and a ``global_step``, at that step's side."""
        size = self.view_size(global_step)
        if size is None:  # a method's own make_views(images, generator) needs no size argument
            views = self.method.make_views(images, generator)
        else:
            views = self.method.make_views(images, generator, size=size)
        return [v.contiguous(memory_format=self.memory_format) for v in views]

    def view_size(self, global_step: int | None) -> int | None:
        """The global views' side at ``global_step`` under progressive resizing, else None."""
        if self.view_sizes is None or global_step is None:
            return None
        return int(self.view_sizes[global_step])

    def __call__(
        self,
        images: Tensor,
        global_step: int,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> StepResult:
        """:meth:`views` (at ``global_step``'s side) then :meth:`update`."""
        return self.update(self.views(images, generator, global_step), global_step, labels)

    def update(
        self, views: list[Tensor], global_step: int, labels: Tensor | None = None
    ) -> StepResult:
        """One optimiser step on ``views`` at ``global_step`` (0-based, < ``total_steps``);
        with int64 ``labels [B]`` (-1: unlabelled) and a probe, the probe's step too."""
        if not 0 <= global_step < self.total_steps:
            raise IndexError(
                f"global_step {global_step} is outside this run's {self.total_steps} steps; "
                "build the TrainStep for the whole run (epochs * steps_per_epoch)"
            )
        method, optimizer, scaler = self.method, self.optimizer, self.scaler
        lr = float(self.lr_schedule[global_step])
        for group in optimizer.param_groups:
            # param_groups' rule: a group's lr_scale times the schedule, or times the peak lr
            # when its lr is fixed (SimSiam's predictor); plain groups follow the schedule.
            base = self.peak_lr if group.get("fixed_lr", False) else lr
            group["lr"] = base * group.get("lr_scale", 1.0)
        if self.wd_schedule is not None:
            for i in self.decay_groups:
                optimizer.param_groups[i]["weight_decay"] = float(self.wd_schedule[global_step])
        progress = self.progress(global_step)
        params = [p for p in method.parameters() if p.requires_grad]
        # Skip mode: the buffers before the forward (BN statistics, queue, center), to restore.
        saved = [(b, b.detach().clone()) for b in method.buffers()] if self.skip_nonfinite else []
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = (self.data_parallel or self.compiled_step or method.training_step)(views)
        loss = out.loss.detach()
        scaler.scale(out.loss).backward()
        if self.data_parallel is not None:  # the global batch's loss: the same on every process
            loss, out.logs = mean_over_processes(loss, out.logs)
        if self.clip_grad is not None or self.skip_nonfinite:
            scaler.unscale_(optimizer)
        if self.skip_nonfinite:
            part = nonfinite_part(loss, params)  # one host sync per step in skip mode
            if part is not None:
                for buffer, before in saved:
                    buffer.copy_(before)
                optimizer.zero_grad(set_to_none=True)
                if scaler.is_enabled():
                    scaler.update()  # fp16: back off the loss scale (unscale_ found the inf)
                logs = self._probe_step(out, labels, global_step, learn=False)
                return StepResult(loss, logs, lr, skipped=part)
        if self.clip_grad is not None:
            clip_gradients_(params, self.clip_grad, self.clip_mode)
        method.before_optimizer_step(progress)
        scaler.step(optimizer)
        scaler.update()
        method.after_step(progress)
        return StepResult(loss, self._probe_step(out, labels, global_step), lr)

    def _probe_step(
        self, out: StepOutput, labels: Tensor | None, global_step: int, learn: bool = True
    ) -> dict[str, Tensor]:
        """The online probe's step on the method's detached features (none on a skipped step);
        the method's logs plus the probe's running accuracy."""
        if self.probe is None or labels is None:
            return out.logs
        if out.features is None:
            warnings.warn(
                f"{self.method.name} sets no StepOutput.features, so the online linear probe "
                "is off; set them in its training_step, or train.online_linear=false",
                stacklevel=2,
            )
            self.probe = None
            return out.logs
        if global_step % self.steps_per_epoch == 0:
            self.probe.reset_accuracy()
        if learn:
            features = out.features
            if self.data_parallel is not None:  # every process's probe learns the global batch
                features, labels = gather_no_grad(features), gather_no_grad(labels)
            return {**out.logs, ACCURACY_LOG: self.probe.update(features, labels)}
        return {**out.logs, ACCURACY_LOG: self.probe.accuracy_so_far()}


def nonfinite_part(loss: Tensor, params: Sequence[Tensor]) -> NonFinitePart | None:
    """'loss' or 'gradients' when that is NaN/inf, else None (one host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    grads_finite = (
        torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        if grads
        else torch.ones((), dtype=torch.bool, device=loss.device)
    )
    loss_ok, grads_ok = torch.stack([torch.isfinite(loss).all(), grads_finite]).tolist()
    return None if loss_ok and grads_ok else ("loss" if not loss_ok else "gradients")


def _device_of(method: Method) -> torch.device:
    tensors = [*method.parameters(), *method.buffers()][:1]
    return tensors[0].device if tensors else torch.device("cpu")
