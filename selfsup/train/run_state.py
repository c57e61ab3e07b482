"""What a training checkpoint holds, and putting it back.

A checkpoint is everything that determines the rest of the run, as tensors and plain
containers: the method state (EMA target, queue and pointer, center, schedule buffers), the
optimiser, the grad scaler, every RNG, the step (which fixes the epoch, its data order and the
position in it) and the trainer's running values, under the format string
:data:`~selfsup.methods.upgrade.CHECKPOINT_FORMAT`. A checkpoint of an earlier format has its
method state brought to today's layout by :func:`~selfsup.methods.upgrade.upgrade_method_state`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from selfsup.methods.upgrade import CHECKPOINT_FORMAT, upgrade_method_state
from selfsup.train.checkpoint import CheckpointError, load_checkpoint, rng_state, set_rng_state
from selfsup.train.step import TrainStep

__all__ = ["restore_run_state", "run_state"]

FIRST_FORMAT = "selfsup-checkpoint/1"  # what a checkpoint without a "format" entry is


def run_state(
    step: int,
    train_step: TrainStep,
    view_generator: torch.Generator,
    trainer: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint of the run after ``step`` steps (``trainer``: the running values)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "method": train_step.method.state_dict(),
        "optimizer": train_step.optimizer.state_dict(),
        "scaler": train_step.scaler.state_dict(),
        "rng": rng_state(view_generator),
        "trainer": trainer,
        "config": config,
    }


def restore_run_state(
    path: Path,
    method_name: str,
    train_step: TrainStep,
    view_generator: torch.Generator,
    geometry: dict[str, int],
) -> tuple[int, dict[str, Any]]:
    """Load ``path`` into the step's method, optimiser and scaler and the RNGs; returns the
    step and the trainer's running values. ``geometry`` (dataset size, batch size, steps per
    epoch) must match the checkpoint's: the step would map to other images otherwise."""
    state = load_checkpoint(path, map_location="cpu")  # moved to the device by load_state_dict
    missing = [k for k in ("step", "method", "optimizer", "rng") if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not a selfsup training checkpoint (no {', '.join(missing)}); pass a "
            "checkpoints/*.pt file written by selfsup pretrain"
        )
    info = state.get("trainer", {})
    changed = [k for k, v in geometry.items() if k in info and int(info[k]) != v]
    if changed:
        was = ", ".join(f"{k}={info[k]}" for k in changed)
        now = ", ".join(f"{k}={geometry[k]}" for k in changed)
        raise CheckpointError(
            f"{path} was written with {was}, this run has {now}: the step would map to other "
            "images. Resume with the run's own data and train.batch_size"
        )
    try:
        method_state = upgrade_method_state(
            method_name, state["method"], state.get("format", FIRST_FORMAT)
        )
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    try:
        train_step.method.load_state_dict(method_state)
        train_step.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} holds another model or optimiser than this config builds "
            f"({str(err).splitlines()[0]}); resume with the run's own config.yaml"
        ) from None
    if state.get("scaler"):
        train_step.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], view_generator)
    return int(state["step"]), info
