"""The training loop every method plugs into.

A plain PyTorch loop, recognisable at a glance::

    for images, _ in loader.iterate(epoch, start_step):
        views = method.make_views(images, generator)        # batched, on the device
        with autocast: out = method.training_step(views)     # loss + detached logs
        out.loss.backward(); clip; method.before_optimizer_step(progress)
        set lr (and weight decay) from schedule[step]; optimizer.step()
        method.after_step(progress)                          # EMA, queue, center ...

around which the trainer keeps the run directory: ``config.yaml`` (fully resolved),
``metrics.jsonl``, ``checkpoints/last.pt`` and the best-k ``checkpoints/best-step<N>.pt`` (atomic
writes), ``encoder.safetensors`` + ``encoder.json``.

What is guaranteed (exact resume after a kill, atomic checkpoints, NaN/inf policy, disk errors,
Ctrl-C) is written down in ``docs/reliability.md`` and tested in ``tests/train``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from selfsup import build
from selfsup.config import Config
from selfsup.data import EpochLoader, ImageDataset
from selfsup.eval.features import extract_features
from selfsup.eval.knn import knn_accuracy
from selfsup.methods import Method, Progress, StepOutput
from selfsup.train.checkpoint import (
    BestCheckpoints,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    save_encoder,
    set_rng_state,
)
from selfsup.train.optim import ClipMode, clip_gradients_
from selfsup.train.schedules import cosine_schedule

# With train.on_nonfinite=skip, this many skipped steps in a row mean the model itself is broken
# (NaN/inf parameters make every later loss NaN): the run stops instead of skipping forever.
MAX_CONSECUTIVE_SKIPS = 20


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


class _GracefulInterrupt:
    """While active, the first Ctrl-C (SIGINT) only sets ``requested``: the trainer finishes the
    step in flight, writes a checkpoint and raises ``KeyboardInterrupt``. A second Ctrl-C raises
    at once. Installed only in the main thread and only over a Python-level handler (an ignored
    SIGINT, e.g. under ``nohup``, stays ignored)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del signum, frame
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write(
            "interrupt: finishing the current step, then writing a checkpoint "
            "(Ctrl-C again stops at once, keeping the previous checkpoint)"
        )

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but CUDA is not available; use train.device=cpu")
    return device


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX512-BF16), where bf16 autocast
    runs convolutions about twice as fast as fp32; elsewhere CPU bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next(
                (line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), []
            )
    except OSError:
        return False
    return bool(set(flags) & {"amx_bf16", "avx512_bf16"})


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ValueError("train.precision=fp16 is for GPUs; use bf16 or fp32 on the CPU")
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Mixed precision in ``dtype`` on ``device`` (from :func:`resolve_precision`); None = fp32."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.method}-{cfg.data.dataset}-{stamp}"


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_completed: int
    final_loss: float
    knn_accuracy: float | None
    wall_time_s: float
    skipped_steps: int = 0  # steps skipped for a NaN/inf loss or gradient (on_nonfinite=skip)


class Trainer:
    """Pre-train ``cfg.method`` on ``cfg.data`` into a run directory.

    ``train_set``/``eval_sets`` may be passed to train on in-memory data without the dataset
    loaders (tests, notebooks); otherwise they are loaded from the config.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path | None = None,
        train_set: ImageDataset | None = None,
        eval_sets: tuple[ImageDataset, ImageDataset] | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir or cfg.run_dir or default_run_dir(cfg))
        cfg.run_dir = str(self.run_dir)
        self.device = resolve_device(cfg.train.device)
        self.autocast_dtype = resolve_precision(cfg.train.precision, self.device)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.train_set = train_set if train_set is not None else build.train_dataset(cfg)
        if len(self.train_set) < cfg.train.batch_size:
            raise ValueError(
                f"train.batch_size={cfg.train.batch_size} is larger than the training set "
                f"({len(self.train_set)} images); lower train.batch_size"
            )
        self.eval_sets = eval_sets
        if eval_sets is None and cfg.train.knn_every > 0:
            self.eval_sets = build.eval_datasets(cfg)
        build.resolve_normalization(cfg, self.train_set)
        self.in_channels = build.input_channels(cfg, self.train_set)

        seed_everything(cfg.train.seed)
        self.method: Method = build.make_method(cfg, self.in_channels).to(self.device)
        if cfg.train.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        # torch.compile of the forward (backbone, heads, loss); state stays in the method, so
        # checkpoints and resume are unchanged. Measured +24% img/s on the 2-core CPU for the
        # SimCLR step after a ~55 s first call (bench/RESULTS.md); off by default.
        self._compiled_step: Callable[[list[Tensor]], StepOutput] | None = None
        if cfg.train.compile:
            self._compiled_step = torch.compile(
                self.method.training_step, backend=cfg.train.compile_backend
            )
        self.view_generator = torch.Generator(device=self.device).manual_seed(cfg.train.seed)

        o, t = cfg.optim, cfg.train
        self.loader = EpochLoader(
            self.train_set,
            t.batch_size,
            seed=t.seed,
            num_workers=cfg.data.num_workers,
            device=self.device,
        )
        self.steps_per_epoch = self.loader.steps_per_epoch()
        self.total_steps = t.epochs * self.steps_per_epoch
        self.last_step = min(self.total_steps, t.max_steps or self.total_steps)
        self.optimizer, self.peak_lr = build.make_optimizer(cfg, self.method)
        warmup = min(round(o.warmup_epochs * self.steps_per_epoch), self.total_steps - 1)
        self.lr_schedule = cosine_schedule(self.peak_lr, o.final_lr, self.total_steps, warmup)
        # Weight decay: constant, or a cosine from weight_decay to final_weight_decay (DINO),
        # applied to the groups that decay (never to biases and norm parameters).
        self.wd_schedule = (
            None
            if o.final_weight_decay is None
            else cosine_schedule(o.weight_decay, o.final_weight_decay, self.total_steps)
        )
        # Indices, not the dicts: optimizer.load_state_dict replaces the group dicts on resume.
        self._decay_groups = [
            i for i, g in enumerate(self.optimizer.param_groups) if not g.get("lars_exclude")
        ]
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.autocast_dtype == torch.float16
        )
        self.step = 0  # optimiser steps completed
        self.skip_nonfinite = t.on_nonfinite == "skip"
        self.skipped_steps = 0
        self._consecutive_skips = 0
        # Stop mode watches the loss on the device and syncs only at logged steps and checkpoints:
        # whether every loss so far was finite, and the first step that was not.
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        self._first_bad_step = torch.zeros((), dtype=torch.int64, device=self.device)
        # Sum and count of this epoch's (finite) losses, for the epoch's mean loss.
        self._epoch_loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        self._epoch_loss_steps = 0
        self._last_loss = float("nan")  # loss of the latest synced step (logged, epoch end)
        self._last_logs: dict[str, float] = {}  # the method's logs at that step
        self._last_knn: float | None = None
        self._saved_step: int | None = None  # step of the newest checkpoint on disk
        # The k best checkpoints by online k-NN top-1 when it runs, else by lowest epoch mean loss.
        with_knn = self.eval_sets is not None and t.knn_every > 0
        self.best_metric = "knn_top1" if with_knn else "mean_loss"
        self.best = (
            BestCheckpoints(self.checkpoint_path.parent, t.keep_best, self.best_metric, with_knn)
            if t.keep_best
            else None
        )

    # -- run directory --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def _prepare_run_dir(self) -> None:
        """Fail before training if the run directory cannot be written; drop stale temp files."""
        checkpoints = self.checkpoint_path.parent
        try:
            checkpoints.mkdir(parents=True, exist_ok=True)
            for directory in (self.run_dir, checkpoints):
                fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=directory)
                os.close(fd)
                os.unlink(probe)
        except OSError as err:
            raise CheckpointError(
                f"run directory {self.run_dir} is not writable ({err.strerror or err}); fix its "
                "permissions or choose another one (run_dir=PATH, or --run-dir)"
            ) from None
        for directory in (self.run_dir, checkpoints):
            remove_stale_temp_files(directory)

    def _log(self, record: dict[str, Any]) -> None:
        path = self.run_dir / "metrics.jsonl"
        try:
            with open(path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as err:
            raise CheckpointError(
                f"could not append to {path} ({err.strerror or err}); free disk space or choose a "
                f"writable run_dir; {self._kept_checkpoint()}"
            ) from None

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines written after the checkpoint we resume from (and a line torn by a
        kill), so that the replayed steps are not logged twice."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the last line of a killed run may be cut short
            if record.get("kind") != "end" and record.get("step", 0) <= step:
                kept.append(line + "\n")
        text = "".join(kept)

        def write(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(path, write)

    def _kept_checkpoint(self) -> str:
        if self._saved_step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint ({self.checkpoint_path}, step {self._saved_step}) is kept"

    # -- checkpoints ----------------------------------------------------------------------------
    def _geometry(self) -> dict[str, int]:
        """What maps a step to a position in the data: resuming needs the same values."""
        return {
            "dataset_size": len(self.train_set),
            "batch_size": self.cfg.train.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything that determines the rest of the run, as tensors and plain containers.

        Method state (EMA target, queue and pointer, center, schedule buffers), optimiser,
        grad scaler, every RNG, the step (which fixes the epoch, its data order and the position
        in it), and the trainer's own running values. Refuses NaN/inf parameters.
        """
        self._check_finite_parameters()
        return {
            "format": "selfsup-checkpoint/1",
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.view_generator),
            "trainer": {
                **self._geometry(),
                "epoch_loss_sum": self._epoch_loss_sum.detach().cpu().clone(),
                "epoch_loss_steps": self._epoch_loss_steps,
                "skipped_steps": self.skipped_steps,
                "last_loss": self._last_loss,
                "last_knn": self._last_knn,
            },
            "config": self.cfg.to_dict(),
        }

    def save(self, state: dict[str, Any] | None = None) -> None:
        """Write ``checkpoints/last.pt`` for the current step atomically (never a NaN/inf one)."""
        self._raise_if_nonfinite()
        state = state if state is not None else self.checkpoint_state()
        try:
            save_checkpoint(self.checkpoint_path, state)
        except CheckpointError as err:
            raise CheckpointError(f"checkpoint of step {self.step} not written: {err}") from None
        self._saved_step = self.step

    def load(self, path: Path | None = None) -> None:
        """Restore a checkpoint written by :meth:`save`; training continues exactly from it."""
        path = Path(path or self.checkpoint_path)
        state = load_checkpoint(path, map_location="cpu")  # moved to the device by load_state_dict
        missing = [k for k in ("step", "method", "optimizer", "rng") if k not in state]
        if missing:
            raise CheckpointError(
                f"{path} is not a selfsup training checkpoint (no {', '.join(missing)}); pass a "
                "checkpoints/*.pt file written by selfsup pretrain"
            )
        info = state.get("trainer", {})
        expected = self._geometry()
        changed = [k for k, v in expected.items() if k in info and int(info[k]) != v]
        if changed:
            was = ", ".join(f"{k}={info[k]}" for k in changed)
            now = ", ".join(f"{k}={expected[k]}" for k in changed)
            raise CheckpointError(
                f"{path} was written with {was}, this run has {now}: the step would map to other "
                "images. Resume with the run's own data and train.batch_size"
            )
        try:
            self.method.load_state_dict(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"{path} holds another model or optimiser than this config builds "
                f"({str(err).splitlines()[0]}); resume with the run's own config.yaml"
            ) from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.view_generator)
        self.step = int(state["step"])
        self._finite.fill_(True)
        if "epoch_loss_sum" in info:
            self._epoch_loss_sum = info["epoch_loss_sum"].to(self.device, torch.float32)
            self._epoch_loss_steps = int(info["epoch_loss_steps"])
            self.skipped_steps = int(info["skipped_steps"])
            self._last_loss = float(info["last_loss"])
            self._last_knn = None if info["last_knn"] is None else float(info["last_knn"])
        self._saved_step = self.step

    def _checkpoint_due(self, epoch_done: bool, epoch: int) -> bool:
        t = self.cfg.train
        if self.step >= self.last_step:
            return True
        if epoch_done and (epoch + 1) % t.checkpoint_every == 0:
            return True
        return bool(t.checkpoint_every_steps) and self.step % t.checkpoint_every_steps == 0

    # -- NaN / inf --------------------------------------------------------------------------------
    def _raise_if_nonfinite(self) -> None:
        """Stop mode: raise if any loss so far was NaN/inf, naming the first such step (a sync)."""
        if self.skip_nonfinite or bool(self._finite):
            return
        step = int(self._first_bad_step)
        raise NonFiniteLossError(
            self._nonfinite_message(f"loss became NaN/inf at step {step}", step)
            + "; train.on_nonfinite=skip skips such steps instead"
        )

    def _check_finite_parameters(self) -> None:
        """Refuse to checkpoint NaN/inf parameters (one sync, at checkpoint time only)."""
        params = [p.detach() for p in self.method.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise NonFiniteLossError(
                self._nonfinite_message(f"parameters became NaN/inf by step {self.step}", self.step)
            )

    def _nonfinite_message(self, what: str, step: int) -> str:
        lr = float(self.lr_schedule[min(max(step - 1, 0), len(self.lr_schedule) - 1)])
        precision = (
            str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "fp32"
        )
        causes = ["learning rate too high (lower optim.base_lr)"]
        section = getattr(self.cfg, self.cfg.method, None)
        temperatures = [
            f"{self.cfg.method}.{name}={getattr(section, name)}"
            for name in ("temperature", "student_temperature", "teacher_temperature")
            if hasattr(section, name)
        ]
        if temperatures:
            causes.append(f"temperature too low ({', '.join(temperatures)})")
        causes.append("fp16 overflow (use train.precision=bf16 or fp32)")
        return (
            f"{what} (lr {lr:.3g}, precision {precision}); the run stopped and "
            f"{self._kept_checkpoint()}. Likely causes: {'; '.join(causes)}"
        )

    def _nonfinite_part(self, loss: Tensor, params: Sequence[Tensor]) -> str | None:
        """Skip mode: 'loss' or 'gradients' when that is NaN/inf, else None (one host sync)."""
        grads = [p.grad for p in params if p.grad is not None]
        grads_finite = (
            torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
            if grads
            else torch.ones((), dtype=torch.bool, device=loss.device)
        )
        loss_ok, grads_ok = torch.stack([torch.isfinite(loss).all(), grads_finite]).tolist()
        return None if loss_ok and grads_ok else ("loss" if not loss_ok else "gradients")

    def _skip_step(
        self, part: str, loss: Tensor, saved: list[tuple[Tensor, Tensor]], epoch: int, lr: float
    ) -> None:
        """Undo a step with a NaN/inf loss or gradient: no optimiser step, no ``after_step``,
        the method's buffers (BN statistics, queue, center) as they were before the forward."""
        for buffer, before in saved:
            buffer.copy_(before)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.update()  # fp16: back off the loss scale (unscale_ found the inf)
        self.skipped_steps += 1
        self._consecutive_skips += 1
        step = self.step + 1
        self._log(
            {
                "kind": "skip",
                "step": step,
                "epoch": epoch + 1,
                "reason": f"non-finite {part}",
                "loss": float(loss),
                "lr": lr,
                "skipped_steps": self.skipped_steps,
            }
        )
        tqdm.write(
            f"warning: step {step} skipped, its {part} is NaN/inf (train.on_nonfinite=skip; "
            f"{self.skipped_steps} skipped so far)"
        )
        if self._consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteLossError(
                self._nonfinite_message(
                    f"{MAX_CONSECUTIVE_SKIPS} steps in a row had a NaN/inf {part}, the last at "
                    f"step {step}: the model itself has diverged",
                    step,
                )
            )

    # -- evaluation during training --------------------------------------------------------------
    def online_knn(self) -> float | None:
        """20-NN accuracy of the current encoder (subset bank for speed; see train.knn_*)."""
        if self.eval_sets is None:
            return None
        train, test = self.eval_sets
        t, e = self.cfg.train, self.cfg.eval
        transform = build.eval_transform(self.cfg)
        gen = torch.Generator().manual_seed(t.seed + 1)
        bank_idx = torch.randperm(len(train), generator=gen)[: t.knn_train_samples or len(train)]
        query_idx = torch.randperm(len(test), generator=gen)[: t.knn_test_samples or len(test)]
        encoder = self.method.encoder
        bank, bank_labels = extract_features(
            encoder,
            _index_batches(train, bank_idx, e.batch_size, self.device),
            transform,
            self.device,
            channels_last=t.channels_last,
        )
        query, query_labels = extract_features(
            encoder,
            _index_batches(test, query_idx, e.batch_size, self.device),
            transform,
            self.device,
            channels_last=t.channels_last,
        )
        num_classes = int(max(bank_labels.max(), query_labels.max()).item()) + 1
        return knn_accuracy(
            bank,
            bank_labels,
            query,
            query_labels,
            num_classes,
            k=e.knn_k,
            temperature=e.knn_temperature,
        )

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train until ``train.epochs`` (or ``train.max_steps``); ``resume`` continues the run
        from ``checkpoints/last.pt`` exactly as if it had never stopped.

        Ctrl-C finishes the step in flight, writes a checkpoint and raises ``KeyboardInterrupt``;
        a second Ctrl-C raises at once and keeps the previous checkpoint.
        """
        self._prepare_run_dir()
        if resume:
            self.load()  # before config.yaml is rewritten: a config that does not fit fails here
        config_text = self.cfg.to_yaml()

        def write_config(tmp: Path) -> None:
            tmp.write_text(config_text)

        atomic_write(self.run_dir / "config.yaml", write_config)
        if resume:
            self._truncate_metrics(self.step)
            if self.best is not None:
                self.best.truncate(self.step)
        else:
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            if self.best is not None:
                self.best.clear()
            self._log({"kind": "setup", "step": 0, **self._setup_record()})

        start = time.perf_counter()
        with _GracefulInterrupt() as interrupt:
            try:
                while self.step < self.last_step and not interrupt.requested:
                    epoch, start_in_epoch = divmod(self.step, self.steps_per_epoch)
                    self._train_epoch(epoch, start_in_epoch, interrupt)
                    self._raise_if_nonfinite()
                    epoch_done = self.step % self.steps_per_epoch == 0
                    state = self._end_epoch(epoch) if epoch_done else None
                    if self._checkpoint_due(epoch_done, epoch):
                        self.save(state)
            except KeyboardInterrupt:
                tqdm.write(f"stopped at once: {self._kept_checkpoint()}")
                raise
            if interrupt.requested and self.step < self.last_step:
                if self._saved_step != self.step:
                    self.save()
                tqdm.write(
                    f"interrupted: checkpoint saved at step {self.step}; continue with "
                    f"`selfsup pretrain --resume {self.run_dir}`"
                )
                raise KeyboardInterrupt
        self._raise_if_nonfinite()
        meta = build.encoder_meta(self.cfg, self.in_channels, self.method.encoder)
        save_encoder(self.run_dir, self.method.encoder, meta)
        wall = time.perf_counter() - start
        self._log({"kind": "end", "step": self.step, "wall_time_s": wall})
        return TrainResult(
            self.run_dir,
            self.step,
            self.step // self.steps_per_epoch,
            self._last_loss,
            self._last_knn,
            wall,
            self.skipped_steps,
        )

    def _setup_record(self) -> dict[str, Any]:
        o, t = self.cfg.optim, self.cfg.train
        return {
            "device": str(self.device),
            "autocast": str(self.autocast_dtype).replace("torch.", "")
            if self.autocast_dtype
            else "fp32",
            "global_batch_size": t.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "lr_rule": f"{o.lr_scaling}: base_lr {o.base_lr} x rule(B={t.batch_size}) = {self.peak_lr:.5g}",
            "peak_lr": self.peak_lr,
            "parameters": sum(p.numel() for p in self.method.parameters()),
            "encoder_parameters": sum(p.numel() for p in self.method.encoder.parameters()),
            "on_nonfinite": t.on_nonfinite,
            "keep_best": t.keep_best,
            "best_metric": self.best_metric if self.best is not None else None,
        }

    def _end_epoch(self, epoch: int) -> dict[str, Any] | None:
        """The epoch record (losses, method logs, collapse warnings, online k-NN) and the best-k
        update; returns the checkpoint state when one was built for it, else None."""
        t = self.cfg.train
        mean_loss = (
            float(self._epoch_loss_sum) / self._epoch_loss_steps
            if self._epoch_loss_steps
            else float("nan")
        )
        record: dict[str, Any] = {
            "kind": "epoch",
            "step": self.step,
            "epoch": epoch + 1,
            "loss": self._last_loss,  # the epoch's last step (always synced)
            "mean_loss": mean_loss,
            **self._last_logs,
        }
        if self.skip_nonfinite:
            record["skipped_steps"] = self.skipped_steps
        warnings = self.method.diagnose(self._last_logs)
        for warning in warnings:
            tqdm.write(f"warning (epoch {epoch + 1}): {warning}")
        if warnings:
            record["warnings"] = warnings
        if t.knn_every and (epoch + 1) % t.knn_every == 0:
            knn = self.online_knn()
            if knn is not None:
                self._last_knn = knn
                record["knn_top1"] = knn
                tqdm.write(
                    f"epoch {epoch + 1}: online {self.cfg.eval.knn_k}-NN top-1 {100 * knn:.2f}%"
                )
        self._log(record)
        if self.best is None or self.best_metric not in record:
            return None
        # The best file is written before last.pt: a kill between the two replays this epoch on
        # resume, which offers the same step again (the index keeps one entry per step).
        state = self.checkpoint_state()
        self.best.offer(self.step, epoch + 1, float(record[self.best_metric]), state)
        return state

    def _train_epoch(self, epoch: int, start_in_epoch: int, interrupt: _GracefulInterrupt) -> None:
        """Steps from ``start_in_epoch`` to the end of the epoch, ``last_step`` or a Ctrl-C."""
        t = self.cfg.train
        self.method.train()
        steps_here = min(self.steps_per_epoch, self.last_step - epoch * self.steps_per_epoch)
        bar = tqdm(
            total=steps_here,
            initial=start_in_epoch,
            desc=f"epoch {epoch + 1}/{t.epochs}",
            disable=None if t.progress else True,  # None: off when not a terminal
            dynamic_ncols=True,
            leave=False,
        )
        if start_in_epoch == 0:
            self._epoch_loss_sum.zero_()
            self._epoch_loss_steps = 0
        window_start, window_images = time.perf_counter(), 0
        params = [p for p in self.method.parameters() if p.requires_grad]
        buffers = list(self.method.buffers()) if self.skip_nonfinite else []
        for images, _ in self.loader.iterate(epoch, start_in_epoch):
            loss, logs, lr = self._step(images, epoch, params, buffers)
            self.step += 1
            window_images += images.shape[0]
            bar.update(1)
            epoch_end = self.step % self.steps_per_epoch == 0
            logged = self.step % t.log_every == 0 or self.step == self.last_step
            if logged or epoch_end:  # the only host syncs of a step (stop mode)
                self._raise_if_nonfinite()
                self._last_loss = float(loss)
                self._last_logs = {k: float(v) for k, v in logs.items()}
            if logged:
                elapsed = time.perf_counter() - window_start
                record = {
                    "kind": "train",
                    "step": self.step,
                    "epoch": epoch + 1,
                    "loss": self._last_loss,
                    "lr": lr,
                    "img_per_s": window_images / max(elapsed, 1e-9),
                    **self._last_logs,
                }
                if self.skip_nonfinite:
                    record["skipped_steps"] = self.skipped_steps
                self._log(record)
                bar.set_postfix(
                    loss=f"{self._last_loss:.4f}",
                    lr=f"{lr:.3g}",
                    img_s=f"{record['img_per_s']:.0f}",
                )
                window_start, window_images = time.perf_counter(), 0
            if epoch_end or self.step >= self.last_step or interrupt.requested:
                break  # the epoch's bookkeeping and checkpoint happen in fit, in that order
            every = t.checkpoint_every_steps
            if every and self.step % every == 0:
                self.save()
        bar.close()

    def _step(
        self, images: Tensor, epoch: int, params: Sequence[Tensor], buffers: list[Tensor]
    ) -> tuple[Tensor, dict[str, Tensor], float]:
        """One optimisation step (or, in skip mode, a skipped one): (loss, logs, lr)."""
        o = self.cfg.optim
        method, optimizer = self.method, self.optimizer
        channels_last = self.cfg.train.channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        views = method.make_views(images, self.view_generator)
        views = [v.contiguous(memory_format=memory_format) for v in views]
        lr = float(self.lr_schedule[self.step])
        for group in optimizer.param_groups:
            group["lr"] = lr
        if self.wd_schedule is not None:
            for i in self._decay_groups:
                optimizer.param_groups[i]["weight_decay"] = float(self.wd_schedule[self.step])
        progress = Progress(self.step, self.total_steps, epoch, self.steps_per_epoch)
        # Skip mode: the buffers before the forward (BN statistics, queue, center), to restore.
        saved = [(b, b.detach().clone()) for b in buffers]
        with autocast(self.device, self.autocast_dtype):
            out = (self._compiled_step or method.training_step)(views)
        loss = out.loss.detach()
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        if o.clip_grad is not None or self.skip_nonfinite:
            self.scaler.unscale_(optimizer)
        if self.skip_nonfinite:
            part = self._nonfinite_part(loss, params)  # one host sync per step in skip mode
            if part is not None:
                self._skip_step(part, loss, saved, epoch, lr)
                return loss, out.logs, lr
            self._consecutive_skips = 0
        if o.clip_grad is not None:
            clip_gradients_(params, o.clip_grad, cast(ClipMode, o.clip_grad_mode))
        method.before_optimizer_step(progress)
        self.scaler.step(optimizer)
        self.scaler.update()
        if not self.skip_nonfinite:
            bad = ~torch.isfinite(loss)
            self._first_bad_step = torch.where(
                self._finite & bad, self.step + 1, self._first_bad_step
            )
            self._finite = self._finite & ~bad
        method.after_step(progress)
        self._epoch_loss_sum += loss.float()
        self._epoch_loss_steps += 1
        return loss, out.logs, lr


def _index_batches(
    dataset: ImageDataset, indices: Tensor, batch_size: int, device: torch.device
) -> Any:
    for chunk in indices.split(batch_size):
        images, labels = dataset.get_batch(chunk)
        yield images.to(device, non_blocking=True), labels
