"""The training loop every method plugs into.

A plain PyTorch loop, recognisable at a glance::

    for images, _ in loader.iterate(epoch, start_step):
        views = method.make_views(images, generator)        # batched, on the device
        with autocast: out = method.training_step(views)     # loss + detached logs
        out.loss.backward(); clip; method.before_optimizer_step(progress)
        set lr (and weight decay) from schedule[step]; optimizer.step()
        method.after_step(progress)                          # EMA, queue, center ...

around which the trainer keeps the run directory: ``config.yaml`` (fully resolved),
``metrics.jsonl``, ``checkpoints/last.pt`` (atomic), ``encoder.safetensors`` + ``encoder.json``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from selfsup import build
from selfsup.config import Config
from selfsup.data import EpochLoader, ImageDataset
from selfsup.eval.features import extract_features
from selfsup.eval.knn import knn_accuracy
from selfsup.methods import Method, Progress
from selfsup.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_encoder,
    set_rng_state,
)
from selfsup.train.optim import clip_grad_norm_per_tensor_
from selfsup.train.schedules import cosine_schedule


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


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
        self._last_logs: dict[str, float] = {}  # the method's logs at the last logged step

    # -- run directory --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines written after the checkpoint we resume from, so curves do not jump."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        path.write_text("".join(line + "\n" for line in kept))

    def save(self) -> None:
        state = {
            "format": "selfsup-checkpoint/1",
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.view_generator),
            "config": self.cfg.to_dict(),
        }
        save_checkpoint(self.checkpoint_path, state)

    def load(self, path: Path | None = None) -> None:
        state = load_checkpoint(path or self.checkpoint_path, map_location=self.device)
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.view_generator)
        self.step = int(state["step"])

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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
        if resume:
            self.load()
            self._truncate_metrics(self.step)
        elif (self.run_dir / "metrics.jsonl").exists():
            (self.run_dir / "metrics.jsonl").unlink()

        t = self.cfg.train
        start = time.perf_counter()
        if not resume:
            self._log({"kind": "setup", "step": 0, **self._setup_record()})
        final_loss, knn = float("nan"), None
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        try:
            while self.step < self.last_step:
                epoch, start_in_epoch = divmod(self.step, self.steps_per_epoch)
                final_loss, finite = self._train_epoch(epoch, start_in_epoch, finite)
                epoch_done = self.step % self.steps_per_epoch == 0
                if epoch_done:
                    record = {
                        "kind": "epoch",
                        "step": self.step,
                        "epoch": epoch + 1,
                        "loss": final_loss,
                        **self._last_logs,
                    }
                    warnings = self.method.diagnose(self._last_logs)
                    for warning in warnings:
                        tqdm.write(f"warning (epoch {epoch + 1}): {warning}")
                    if warnings:
                        record["warnings"] = warnings
                    if t.knn_every and (epoch + 1) % t.knn_every == 0:
                        knn = self.online_knn()
                        if knn is not None:
                            record["knn_top1"] = knn
                            tqdm.write(
                                f"epoch {epoch + 1}: online {self.cfg.eval.knn_k}-NN "
                                f"top-1 {100 * knn:.2f}%"
                            )
                    self._log(record)
                if (epoch_done and (epoch + 1) % t.checkpoint_every == 0) or (
                    self.step >= self.last_step
                ):
                    self.save()
        except KeyboardInterrupt:
            if bool(finite):
                self.save()
                tqdm.write(
                    f"interrupted: checkpoint saved at step {self.step}; "
                    f"continue with `selfsup pretrain --resume {self.run_dir}`"
                )
            raise
        meta = build.encoder_meta(self.cfg, self.in_channels, self.method.encoder)
        save_encoder(self.run_dir, self.method.encoder, meta)
        wall = time.perf_counter() - start
        self._log({"kind": "end", "step": self.step, "wall_time_s": wall})
        return TrainResult(
            self.run_dir, self.step, self.step // self.steps_per_epoch, final_loss, knn, wall
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
        }

    def _train_epoch(self, epoch: int, start_in_epoch: int, finite: Tensor) -> tuple[float, Tensor]:
        t, o = self.cfg.train, self.cfg.optim
        method, optimizer = self.method, self.optimizer
        method.train()
        steps_here = min(self.steps_per_epoch, self.last_step - epoch * self.steps_per_epoch)
        bar = tqdm(
            total=steps_here,
            initial=start_in_epoch,
            desc=f"epoch {epoch + 1}/{t.epochs}",
            disable=None if t.progress else True,  # None: off when not a terminal
            dynamic_ncols=True,
            leave=False,
        )
        loss_value = float("nan")
        window_start, window_images = time.perf_counter(), 0
        memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        params = [p for p in method.parameters() if p.requires_grad]
        for images, _ in self.loader.iterate(epoch, start_in_epoch):
            if self.step >= self.last_step:
                break
            views = method.make_views(images, self.view_generator)
            views = [v.contiguous(memory_format=memory_format) for v in views]
            lr = float(self.lr_schedule[self.step])
            for group in optimizer.param_groups:
                group["lr"] = lr
            if self.wd_schedule is not None:
                for i in self._decay_groups:
                    optimizer.param_groups[i]["weight_decay"] = float(self.wd_schedule[self.step])
            progress = Progress(self.step, self.total_steps, epoch, self.steps_per_epoch)
            with torch.autocast(
                self.device.type,
                dtype=self.autocast_dtype or torch.float32,
                enabled=self.autocast_dtype is not None,
            ):
                out = method.training_step(views)
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out.loss).backward()
            if o.clip_grad is not None:
                self.scaler.unscale_(optimizer)
                if o.clip_grad_mode == "per_tensor":
                    clip_grad_norm_per_tensor_(params, o.clip_grad)
                else:
                    torch.nn.utils.clip_grad_norm_(params, o.clip_grad)
            method.before_optimizer_step(progress)
            self.scaler.step(optimizer)
            self.scaler.update()
            finite = finite & torch.isfinite(out.loss.detach())
            method.after_step(progress)
            self.step += 1
            window_images += images.shape[0]
            bar.update(1)

            if self.step % t.log_every == 0 or self.step == self.last_step:
                if not bool(finite):
                    bar.close()
                    raise NonFiniteLossError(
                        f"loss became NaN/inf by step {self.step}; the last good checkpoint "
                        f"({self.checkpoint_path}) is kept. Likely causes: learning rate too high "
                        "(lower optim.base_lr), temperature too low, or fp16 overflow "
                        "(use train.precision=bf16 or fp32)"
                    )
                loss_value = float(out.loss.detach())
                elapsed = time.perf_counter() - window_start
                record = {
                    "kind": "train",
                    "step": self.step,
                    "epoch": epoch + 1,
                    "loss": loss_value,
                    "lr": lr,
                    "img_per_s": window_images / max(elapsed, 1e-9),
                }
                self._last_logs = {k: float(v) for k, v in out.logs.items()}
                record.update(self._last_logs)
                self._log(record)
                bar.set_postfix(
                    loss=f"{loss_value:.4f}", lr=f"{lr:.3g}", img_s=f"{record['img_per_s']:.0f}"
                )
                window_start, window_images = time.perf_counter(), 0
            every = t.checkpoint_every_steps
            if every and self.step % every == 0 and bool(finite):
                self.save()
        bar.close()
        if math.isnan(loss_value):
            loss_value = float(out.loss.detach())
        return loss_value, finite


def _index_batches(
    dataset: ImageDataset, indices: Tensor, batch_size: int, device: torch.device
) -> Any:
    for chunk in indices.split(batch_size):
        images, labels = dataset.get_batch(chunk)
        yield images.to(device, non_blocking=True), labels
