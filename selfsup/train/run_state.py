"""What a training checkpoint holds, and putting it back.

A checkpoint is everything that determines the rest of the run, as tensors and plain
containers: the method state (EMA target, queue and pointer, center, schedule buffers), the
optimiser, the grad scaler, the online linear probe and its optimiser (when the run has one),
every RNG, the step (which fixes the epoch, its data order and the position in it) and the
trainer's running values, under the format string
:data:`~selfsup.methods.upgrade.CHECKPOINT_FORMAT`. A checkpoint of an earlier format has its
method state brought to today's layout by :func:`~selfsup.methods.upgrade.upgrade_method_state`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfsup import build
from selfsup.methods.upgrade import CHECKPOINT_FORMAT, upgrade_method_state
from selfsup.progress import say
from selfsup.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_encoder,
    seed_everything,
    set_rng_state,
)
from selfsup.train.distributed import (
    all_gather_objects,
    average_batchnorm_statistics,
    check_replicas_identical,
    current_context,
    rank_seed,
    run_on_main,
)
from selfsup.train.run_dir import run_status
from selfsup.train.step import TrainStep

if TYPE_CHECKING:
    from selfsup.methods import Method
    from selfsup.train.trainer import Trainer

__all__ = [
    "TrainResult",
    "announce_resume",
    "finish_run",
    "finished_run_result",
    "load_trainer_state",
    "rank_state",
    "restore_run_state",
    "run_state",
    "trainer_state",
]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_completed: int
    final_loss: float
    knn_accuracy: float | None
    wall_time_s: float
    skipped_steps: int = 0  # steps skipped for a NaN/inf loss or gradient (on_nonfinite=skip)
    ran_steps: int = 0  # steps this call trained (0: a finished run resumed, nothing changed)
    already_finished: bool = False  # resume found the run finished and changed nothing


FIRST_FORMAT = "selfsup-checkpoint/1"  # what a checkpoint without a "format" entry is


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint of a :class:`~selfsup.train.trainer.Trainer` at its current step: the
    step's state, the trainer's running values and, distributed, every rank's
    :func:`rank_state` (BatchNorm statistics averaged and the replicas checked first)."""
    trainer.nonfinite.check_parameters(list(trainer.method.parameters()), trainer.step)
    average_batchnorm_statistics(trainer.method)  # distributed: the checkpoint is every rank's
    check_replicas_identical(trainer.method, skip=trainer.method.rank_local_state)
    running = {
        **trainer.geometry(),
        "in_channels": trainer.in_channels,
        "epoch_loss_sum": trainer._epoch_loss_sum.detach().cpu().clone(),
        "epoch_loss_steps": trainer._epoch_loss_steps,
        "skipped_steps": trainer.skipped_steps,
        "last_loss": trainer._last_loss,
        "last_knn": trainer._last_knn,
    }
    ranks = None
    if trainer.dist.active:
        ranks = all_gather_objects(rank_state(trainer.method, trainer.view_generator))
    config = trainer.cfg.to_dict()
    return run_state(
        trainer.step, trainer.train_step, trainer.view_generator, running, config, ranks
    )


def load_trainer_state(trainer: Trainer, path: Path) -> None:
    """Put a trainer back at the checkpoint ``path`` (see :func:`restore_run_state`)."""
    # Distributed: rank 0 reads the file and hands it to the others (no shared disk needed).
    state = run_on_main(lambda: load_checkpoint(path)) if trainer.dist.active else None
    trainer.step, info = restore_run_state(
        path,
        trainer.cfg.method,
        trainer.train_step,
        trainer.view_generator,
        trainer.geometry(),
        trainer.cfg.to_dict(),
        state,
    )
    trainer.nonfinite.reset()
    if "epoch_loss_sum" in info:
        trainer._epoch_loss_sum = info["epoch_loss_sum"].to(trainer.device, torch.float32)
        trainer._epoch_loss_steps = int(info["epoch_loss_steps"])
        trainer.nonfinite.skipped_steps = int(info["skipped_steps"])
        trainer._last_loss = float(info["last_loss"])
        trainer._last_knn = None if info["last_knn"] is None else float(info["last_knn"])
    trainer.checkpoints.saved_step = trainer.step


def run_state(
    step: int,
    train_step: TrainStep,
    view_generator: torch.Generator,
    trainer: dict[str, Any],
    config: dict[str, Any],
    ranks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The checkpoint of the run after ``step`` steps (``trainer``: the running values).
    A distributed run passes every rank's :func:`rank_state` (``ranks``, by rank)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "method": train_step.method.state_dict(),
        "optimizer": train_step.optimizer.state_dict(),
        "scaler": train_step.scaler.state_dict(),
        "rng": rng_state(view_generator),
        "trainer": trainer,
        "config": config,
    }
    if train_step.probe is not None:
        state["online_probe"] = train_step.probe.checkpoint_state()
    if ranks is not None:
        state["ranks"] = ranks
    return state


def rank_state(method: Method, view_generator: torch.Generator) -> dict[str, Any]:
    """What differs between the processes of a distributed run: the RNG states and the
    method's per-process state (``Method.rank_local_state``, e.g. SwAV's queues)."""
    prefixes = method.rank_local_state
    local = {
        k: v.detach().cpu().clone()
        for k, v in method.state_dict().items()
        if prefixes and k.startswith(prefixes)
    }
    return {"rng": rng_state(view_generator), "method": local}


def restore_run_state(
    path: Path,
    method_name: str,
    train_step: TrainStep,
    view_generator: torch.Generator,
    geometry: dict[str, int],
    config: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Load ``path`` into the step's method, optimiser and scaler and the RNGs; returns the
    step and the trainer's running values. ``geometry`` (dataset size, batch size, steps per
    epoch) must match the checkpoint's: the step would map to other images otherwise. With this
    run's ``config`` (``Config.to_dict()``), a model that does not fit is explained by the
    options that differ from the checkpoint's config. ``state``: the checkpoint already loaded
    from ``path`` (a distributed run's rank 0 reads it for every rank).

    A distributed run restores each rank's own RNG states and per-process method state from
    ``ranks``, so it continues exactly; on another number of processes the ranks draw fresh
    streams (said once)."""
    if state is None:
        state = load_checkpoint(path, map_location="cpu")  # moved to the device on load
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
        raise CheckpointError(_does_not_fit(path, err, state.get("config"), config)) from None
    if state.get("scaler"):
        train_step.scaler.load_state_dict(state["scaler"])
    _restore_probe(path, train_step, state.get("online_probe"))
    _restore_rank_state(path, state, train_step.method, view_generator)
    return int(state["step"]), info


def _restore_rank_state(
    path: Path, state: dict[str, Any], method: Method, view_generator: torch.Generator
) -> None:
    """This rank's RNG states and per-process method state (see :func:`restore_run_state`)."""
    ctx = current_context()
    saved = state.get("ranks")
    if saved is not None and len(saved) == ctx.world_size:
        mine = saved[ctx.rank]
        set_rng_state(mine["rng"], view_generator)
        if mine["method"]:
            method.load_state_dict(mine["method"], strict=False)
        return
    if not ctx.active:
        set_rng_state(state["rng"], view_generator)  # rank 0's states when it was distributed
    else:  # a new world size: the ranks start new streams, derived from the seed and the step
        base = int(state.get("config", {}).get("train", {}).get("seed", 0)) + int(state["step"])
        seed = rank_seed(base, ctx.rank)
        seed_everything(seed)
        view_generator.manual_seed(seed)
    if saved is not None or ctx.active:
        was = len(saved) if saved is not None else 1
        say(
            f"note: {path.name} was written by {was} process(es), this run has "
            f"{ctx.world_size}: the views from here on differ from an uninterrupted run"
        )


def _restore_probe(path: Path, train_step: TrainStep, saved: dict[str, Any] | None) -> None:
    """Put the online probe back; a checkpoint without one (written before the probe existed,
    or with train.online_linear=false) starts it fresh, and says so."""
    if train_step.probe is None:
        return
    if saved is None:
        say(f"note: {path.name} has no online linear probe; the probe starts fresh at this step")
        return
    try:
        train_step.probe.load_checkpoint_state(saved)
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} holds an online linear probe that does not fit this run "
            f"({str(err).splitlines()[0]}); resume with the run's own data, or with "
            "train.online_linear=false"
        ) from None


def _does_not_fit(
    path: Path, err: Exception, saved: dict[str, Any] | None, current: dict[str, Any] | None
) -> str:
    """The message of a checkpoint whose model or optimiser this config cannot load: the
    options that changed since it was written, when the checkpoint says, else the error."""
    from selfsup.config import config_changes

    ignore = ("run_dir", "train.", "eval.", "data.num_workers", "data.data_dir")
    changes = []
    if saved is not None and current is not None:
        changes = [c for c in config_changes(saved, current) if not c[0].startswith(ignore)]
    if changes:
        named = ", ".join(f"{key}={new!r} (was {old!r})" for key, old, new in changes)
        return (
            f"{path} holds another model than this config builds: {named} "
            "changes the architecture or the optimiser's parameters; resume without "
            f"{'this override' if len(changes) == 1 else 'these overrides'}, or start a new run "
            "with them"
        )
    return (
        f"{path} holds another model or optimiser than this config builds "
        f"({str(err).splitlines()[0]}); resume with the run's own config.yaml"
    )


def announce_resume(trainer: Trainer) -> None:
    """Say where a resumed run continues from and how many steps it will train."""
    epoch, in_epoch = divmod(trainer.step, trainer.steps_per_epoch)
    todo = trainer.last_step - trainer.step
    say(
        f"resumed {trainer.run_dir} from {trainer.checkpoint_path.name} at step {trainer.step} "
        f"(epoch {epoch + 1}, step {in_epoch} of {trainer.steps_per_epoch} in it); training "
        f"{todo} more step{'s' if todo != 1 else ''} to step {trainer.last_step}"
    )


def finish_run(trainer: Trainer, wall_time_s: float, ran_steps: int) -> TrainResult:
    """The end of a run: the encoder the method's protocol evaluates (DINO: the teacher, or
    ``eval.network``'s) written by rank 0, the ``end`` record, the result."""
    network = trainer.method.resolve_network(trainer.cfg.eval.network)
    encoder = trainer.method.encoder_for(network)
    meta = build.encoder_meta(trainer.cfg, trainer.in_channels, encoder, network)
    run_on_main(lambda: save_encoder(trainer.run_dir, encoder, meta))
    trainer.metrics.append(
        {"kind": "end", "step": trainer.step, "wall_time_s": wall_time_s, "ran_steps": ran_steps}
    )
    return _result(trainer, wall_time_s, ran_steps)


def _result(
    trainer: Trainer, wall_time_s: float, ran_steps: int, already_finished: bool = False
) -> TrainResult:
    return TrainResult(
        trainer.run_dir,
        trainer.step,
        trainer.step // trainer.steps_per_epoch,
        trainer._last_loss,
        trainer._last_knn,
        wall_time_s,
        trainer.skipped_steps,
        ran_steps=ran_steps,
        already_finished=already_finished,
    )


def finished_run_result(trainer: Trainer) -> TrainResult | None:
    """A resumed run that is already finished at its checkpoint: say so and return its result,
    changing nothing (no file is written). ``None`` when there is training left, or when the
    final checkpoint is on disk but the run ended before writing its encoder."""
    if trainer.step < trainer.last_step or not run_status(trainer.run_dir).finished:
        return None
    end: dict[str, Any] = {}
    for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "end":
            end = record
    t = trainer.cfg.train
    more = f"train.epochs={t.epochs + max(1, t.epochs // 2)}"
    if t.total_steps is not None:
        more = f"train.total_steps={t.total_steps + max(1, t.total_steps // 2)}"
    say(
        f"{trainer.run_dir} is finished (step {trainer.step} of {trainer.last_step}); nothing "
        "changed. To train longer, resume with a longer schedule, e.g. `selfsup pretrain "
        f"--resume {trainer.run_dir} {more}`"
    )
    return _result(trainer, float(end.get("wall_time_s", 0.0)), 0, already_finished=True)
