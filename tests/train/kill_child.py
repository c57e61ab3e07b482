"""The child process of the SIGKILL tests: one tiny run that dies by SIGKILL at a chosen point.

``tests/train/test_kill_resume.py`` starts :func:`run` through a multiprocessing ``forkserver``
that imports torch and selfsup once, so a child costs a fork instead of a new interpreter.
The kill points are made here by wrapping library calls in the child; the library carries no
test hook.

Kill points (``point``):

* ``in_step``: inside ``method.after_step`` of step ``step`` (the optimiser has stepped, the EMA,
  queue and step counter have not): a crash in the middle of a step.
* ``mid_write``: while writing the checkpoint of step ``step`` to ``target`` (``last.pt`` or
  ``best-step<N>.pt``): the temporary file holds half of it when the process dies.
* ``before_rename``: that temporary file is complete and fsynced, not yet renamed.
* ``none``: no kill of its own; the parent kills the process at an instant it does not choose.
  The child waits (up to 10 minutes) in ``after_step`` of step :data:`STALL_STEP`, so that
  however slowly the parent polls, the run cannot end before its kill.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.config import Config
from selfsup.methods import Progress
from selfsup.train.trainer import Trainer
from tests.conftest import METHOD_OVERRIDES, tiny_config

KILL_POINTS = ("in_step", "mid_write", "before_rename", "none")

# 320 images in batches of 32: 10 steps per epoch, 2 epochs, a checkpoint every 3 steps and at
# the end of each epoch, metrics every 4 steps, the 2 best epochs kept by mean loss.
KILL_RUN = (
    "data.subset=320",
    "train.batch_size=32",
    "train.epochs=2",
    "train.checkpoint_every_steps=3",
    "train.log_every=4",
    "train.keep_best=2",
    "train.deterministic=true",
)
TOTAL_STEPS = 20
STALL_STEP = 16  # point "none": where the child waits for the parent's kill
CHECKPOINT_STEPS = (3, 6, 9, 10, 12, 15, 18, 20)


def kill_config(method: str) -> Config:
    """The configuration of every run in the SIGKILL tests (reference, killed, resumed)."""
    return tiny_config(*METHOD_OVERRIDES[method], *KILL_RUN)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run(
    run_dir: str,
    method: str,
    point: str,
    step: int,
    target: str = "last.pt",
    threads: int = 1,
    matmul_precision: str = "highest",
) -> None:
    """Train ``kill_config(method)`` into ``run_dir`` from scratch and die at the kill point.

    ``threads`` and ``matmul_precision`` are the parent's, so that the two processes compute
    the same floating-point results.
    """
    if point not in KILL_POINTS:
        raise ValueError(f"point must be one of {KILL_POINTS}, got {point!r}")
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(matmul_precision)
    trainer = Trainer(kill_config(method), run_dir)

    if point == "in_step":
        after_step = trainer.method.after_step

        def dying_after_step(progress: Progress) -> None:
            if progress.step + 1 == step:
                _die()
            after_step(progress)

        trainer.method.after_step = dying_after_step  # type: ignore[method-assign]

    elif point == "none":
        after_step = trainer.method.after_step

        def waiting_after_step(progress: Progress) -> None:
            if progress.step + 1 == STALL_STEP:
                time.sleep(600)  # the parent kills the child long before
            after_step(progress)

        trainer.method.after_step = waiting_after_step  # type: ignore[method-assign]

    elif point in ("mid_write", "before_rename"):
        real_save, real_replace = torch.save, os.replace
        pending = []

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            real_save(obj, f, *args, **kwargs)
            ours = isinstance(obj, dict) and obj.get("step") == step
            if ours and Path(f).name.startswith(f".{target}."):
                if point == "mid_write":
                    os.truncate(f, os.path.getsize(f) // 2)
                    _die()
                pending.append(f)

        def replace(src: Any, dst: Any) -> None:
            if pending and Path(dst).name == target:
                _die()
            real_replace(src, dst)

        torch.save = save  # type: ignore[assignment]
        os.replace = replace  # type: ignore[assignment]

    trainer.fit()
