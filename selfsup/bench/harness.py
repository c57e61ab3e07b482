"""The training step as the benchmark drives it: one :class:`~selfsup.train.step.TrainStep`
walking through the global steps of a real run, and the backbone alone for reference."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor

from selfsup import build
from selfsup.config import Config
from selfsup.train.step import StepResult, TrainStep

__all__ = ["BenchStep"]


class BenchStep:
    """The trainer's step for ``cfg`` on a fresh method, at global steps 0, 1, 2, ... of a run
    of ``train.epochs`` epochs of ``steps_per_epoch`` steps (wrapping around at its end), so
    the per-step schedules and the hooks' epoch rules cost what they cost in training.

    ``train.compile`` is ignored: the benchmark compiles only when asked (:meth:`compile`),
    after counting FLOPs eagerly. So is progressive resizing (``views.progressive_start_size``):
    every step runs at ``views.size``, the size the benchmark reports, so that its views, step
    and end-to-end timings measure the same shapes (the trainer, and the time-to-accuracy
    benchmark that runs it, follow the schedule).
    """

    def __init__(
        self, cfg: Config, in_channels: int, device: torch.device, steps_per_epoch: int
    ) -> None:
        eager = copy.deepcopy(cfg)
        eager.train.compile = False
        torch.manual_seed(cfg.train.seed)
        method = build.make_method(eager, in_channels)
        self.train_step = TrainStep.from_config(eager, method, steps_per_epoch, device)
        self.train_step.view_sizes = None  # views.size at every step (see above)
        self.method = self.train_step.method
        self.method.train()
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
        self.global_step = 0
        self.encoder: Callable[[Tensor], Tensor] = self.method.encoder

    def _next_step(self) -> int:
        step = self.global_step
        self.global_step = (step + 1) % self.train_step.total_steps
        return step

    def compile(self) -> None:
        """``torch.compile`` the training step's forward and the encoder from now on."""
        self.train_step.compile()
        self.encoder = torch.compile(self.method.encoder)

    def views(self, images: Tensor) -> list[Tensor]:
        """The step's views of a uint8 batch on the device."""
        return self.train_step.views(images, self.generator)

    def update(self, views: list[Tensor]) -> StepResult:
        """Exactly ``TrainStep.update`` at the next global step."""
        return self.train_step.update(views, self._next_step())

    def full_step(self, images: Tensor) -> StepResult:
        """Views and update, as the trainer takes a step."""
        return self.train_step(images, self._next_step(), self.generator)

    def forward(self, views: list[Tensor]) -> None:
        """The method's ``training_step`` alone (under autocast, graph built then dropped)."""
        with self.train_step.autocast():
            self.method.training_step(views)

    def backbone_step(self, views: list[Tensor]) -> None:
        """The encoder's forward and backward on every view, nothing else: views of one size
        go through as one concatenated batch (the cheapest way to run the backbone on them)."""
        by_size: dict[tuple[int, ...], list[Tensor]] = {}
        for v in views:
            by_size.setdefault(tuple(v.shape[1:]), []).append(v)
        self.train_step.optimizer.zero_grad(set_to_none=True)
        with self.train_step.autocast():
            loss = sum(self.encoder(torch.cat(group)).float().mean() for group in by_size.values())
        assert isinstance(loss, Tensor)
        loss.backward()
