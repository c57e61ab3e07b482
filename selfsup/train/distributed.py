"""Multi-process training on ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc_per_node N -m selfsup pretrain ...`` starts N processes that each run the
same command; :func:`init_distributed` joins them into one process group (gloo on the CPU, nccl
on GPUs, one process per GPU) from the environment torchrun sets. Then:

* the global ``train.batch_size`` is split: rank ``r`` trains on rows ``[r b, (r+1) b)`` of every
  global batch, ``b = batch_size / world_size`` (:class:`~selfsup.data.EpochLoader`);
* every rank draws its own views and masks: its view generator and global RNGs are seeded with
  :func:`rank_seed` (rank 0 keeps the run's seed, so one process is unchanged);
* the method's forward runs inside ``DistributedDataParallel``, which averages the gradients;
  losses that need the global batch gather across processes themselves
  (:mod:`selfsup.nn.distributed`);
* rank 0 alone writes the run directory; every rank builds each checkpoint (it holds every
  rank's RNG states) and resumes from rank 0's copy of it.

Decisions that must be the same on every rank (stop on Ctrl-C or NaN, skip a step, which epoch
is best) are agreed with a collective, never taken from one rank's local view.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from selfsup.methods.base import Method, StepOutput
from selfsup.nn.distributed import (
    all_reduce_max,
    all_reduce_mean,
    is_distributed,
    rank,
    world_size,
)

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = [
    "DistributedContext",
    "TrainingStepModule",
    "agree_any",
    "all_gather_objects",
    "average_batchnorm_statistics",
    "broadcast_object",
    "check_distributed_config",
    "check_replicas_identical",
    "current_context",
    "init_distributed",
    "launched_by_torchrun",
    "mean_over_processes",
    "rank_seed",
    "restart_count",
    "run_on_main",
    "wrap_data_parallel",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` (it sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def restart_count() -> int:
    """How many times torchrun has restarted this worker group (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def current_context() -> DistributedContext:
    """The context of the default process group, or the single-process one."""
    if not is_distributed():
        return DistributedContext()
    local = int(os.environ.get("LOCAL_RANK", rank()))
    return DistributedContext(rank(), world_size(), local, str(dist.get_backend()))


def init_distributed(
    device: str = "auto", backend: str = "auto", timeout_s: float = 1800.0
) -> DistributedContext:
    """Join the process group torchrun describes (``env://``); a no-op outside torchrun, with
    one process, or when a group already exists.

    ``backend`` ``auto`` is nccl when this process trains on a GPU, gloo otherwise. On a GPU
    the process uses ``cuda:LOCAL_RANK``. nccl without GPUs is refused before anything starts.
    """
    if dist.is_available() and dist.is_initialized():
        return current_context()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistributedContext()
    local_rank = int(os.environ["LOCAL_RANK"])
    gpu = (torch.cuda.is_available() and device in ("auto", "cuda")) or device.startswith("cuda")
    if backend == "auto":
        backend = "nccl" if gpu else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError(
            "train.dist_backend=nccl needs GPUs, but CUDA is not available in this process; use "
            "train.dist_backend=gloo (or auto) to train on CPUs"
        )
    if gpu:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                "start one process per GPU (torchrun --nproc_per_node <number of GPUs>)"
            )
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(seconds=timeout_s)
    store, rank_id, world = next(dist.rendezvous("env://", timeout=timeout))
    # Keys of this attempt only: after an elastic restart, torch 2.14's agent store still holds
    # the gloo addresses the dead attempt published, and the new workers would dial those
    # ("connectFullMesh failed ... Connection refused"); 3 restarts in 4 failed without this.
    store = dist.PrefixStore(f"selfsup/attempt_{restart_count()}", store)
    dist.init_process_group(backend, store=store, rank=rank_id, world_size=world, timeout=timeout)
    return current_context()


def process_device(device: str, ctx: DistributedContext) -> str:
    """The device name this rank trains on: ``cuda:LOCAL_RANK`` for a distributed GPU run
    (one process per GPU, whatever the backend); the named device otherwise."""
    if ctx.active and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ctx.local_rank}"
    return device


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random streams (views, masks, puzzles): ``seed`` itself for
    rank 0, so a single-process run draws what it always drew; for the others an independent
    stream derived from ``(seed, rank)`` with NumPy's ``SeedSequence``."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] % 2**63)


def check_distributed_config(cfg: Config, world_size: int) -> None:
    """Refuse, before training, what cannot work with ``world_size`` processes."""
    if world_size <= 1:
        return
    batch = cfg.train.batch_size
    if batch % world_size != 0:
        lower = batch - batch % world_size
        raise ValueError(
            f"train.batch_size={batch} (the global batch) is not divisible by the {world_size} "
            f"processes; use a multiple of {world_size}, e.g. train.batch_size={lower or world_size}"
        )
    per_process = batch // world_size
    split = cfg.moco.split_bn if cfg.method == "moco" else 0
    if split > 1 and cfg.train.sync_batchnorm:
        raise ValueError(
            "moco.split_bn and train.sync_batchnorm both set: split-BN normalises sub-batches on "
            "purpose, SyncBatchNorm the whole global batch; set moco.split_bn=0 or "
            "train.sync_batchnorm=false"
        )
    if split > 1 and (per_process % split != 0 or per_process // split < 2):
        raise ValueError(
            f"moco.split_bn={split} sub-batches do not fit the per-process batch of {per_process} "
            f"(train.batch_size={batch} / {world_size} processes): each sub-batch needs >= 2 "
            "images and the per-process batch must divide evenly; lower moco.split_bn (0 for "
            "per-process BatchNorm with shuffle-BN) or raise train.batch_size"
        )


class TrainingStepModule(nn.Module):
    """The method's ``training_step`` as a ``forward``, so DistributedDataParallel can wrap it
    (DDP hooks the forward of the module it wraps). ``step_fn`` may be a compiled version."""

    def __init__(self, method: Method, step_fn: Callable[[list[Tensor]], StepOutput]) -> None:
        super().__init__()
        self.method = method
        self.step_fn = step_fn

    def forward(self, views: list[Tensor]) -> StepOutput:
        return self.step_fn(views)


def wrap_data_parallel(
    method: Method, step_fn: Callable[[list[Tensor]], StepOutput], device: torch.device
) -> DistributedDataParallel:
    """``DistributedDataParallel`` around the method's training step: one gradient all-reduce
    (averaged over ranks) overlapped with the backward. Buffers are not broadcast each step:
    the methods keep theirs identical by construction (gathered MoCo keys, all-reduced DINO
    center) and :func:`check_replicas_identical` checks it at every checkpoint."""
    return DistributedDataParallel(
        TrainingStepModule(method, step_fn),
        device_ids=[device.index or 0] if device.type == "cuda" else None,
        forward_sync_buffers=False,
        gradient_as_bucket_view=True,
    )


def all_gather_objects(obj: T) -> list[T]:
    """``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` when not distributed."""
    ctx = current_context()
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled between the processes of this job only)."""
    if not current_context().active:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def run_on_main(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, its result (or its exception, raised again) on every rank: file
    work that one process must do while the others wait for its outcome."""
    if not current_context().active:
        return fn()
    outcome: tuple[Any, BaseException | None] = (None, None)
    if current_context().is_main:
        try:
            outcome = (fn(), None)
        except Exception as err:  # every rank raises it below, so none waits forever
            outcome = (None, err)
    result, error = broadcast_object(outcome)
    if error is not None:
        raise error
    return result


def agree_any(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a Ctrl-C seen by one)."""
    if world_size() == 1:
        return flag
    return bool(all_reduce_max(torch.tensor([float(flag)], device=device)).item() > 0)


_BN_STATS = ("running_mean", "running_var")


@torch.no_grad()
def average_batchnorm_statistics(module: nn.Module) -> None:
    """Replace every BatchNorm's running mean and variance by their mean over the ranks.

    Without SyncBatchNorm each rank's running statistics follow its own sub-batches; they never
    enter training (batch statistics are used there), but evaluation and export use rank 0's.
    Averaged at every checkpoint and at the end, they describe the global data, and the
    checkpoint is every rank's state, so a resumed run continues exactly.
    """
    if world_size() == 1:
        return
    stats = [
        buffer
        for layer in module.modules()
        if isinstance(layer, nn.modules.batchnorm._NormBase) and layer.track_running_stats
        for buffer in (getattr(layer, name) for name in _BN_STATS)
        if buffer is not None
    ]
    if not stats:
        return
    dtype = functools.reduce(torch.promote_types, (b.dtype for b in stats))
    means = all_reduce_mean(torch.cat([b.flatten().to(dtype) for b in stats]))  # one all-reduce
    for buffer, mean in zip(stats, means.split([b.numel() for b in stats]), strict=True):
        buffer.copy_(mean.view_as(buffer))


@torch.no_grad()
def check_replicas_identical(module: nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Raise when a parameter or buffer (EMA target, queue, center...) differs between ranks.

    Compares a float64 fingerprint per tensor (sum and weighted sum) gathered from every rank;
    BatchNorm running statistics are averaged first (:func:`average_batchnorm_statistics`).
    Names starting with one of ``skip`` are per-process by design (SwAV's queues).
    """
    ctx = current_context()
    if not ctx.active:
        return
    names, prints = [], []
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if skip and name.startswith(skip):
            continue
        t = tensor.detach().double().flatten()
        weights = torch.arange(1, t.numel() + 1, dtype=torch.float64, device=t.device)
        names.append(name)
        prints.append(torch.stack([t.sum(), (t * weights.reciprocal()).sum()]))
    local = torch.stack(prints) if prints else torch.zeros(0, 2, dtype=torch.float64)
    gathered = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, local.contiguous())
    for other in gathered[1:]:
        differs = ~torch.isclose(gathered[0], other, rtol=0.0, atol=0.0).all(dim=1)
        if differs.any():
            bad = [names[i] for i in differs.nonzero().flatten().tolist()][:5]
            raise RuntimeError(
                f"the model replicas differ between ranks ({', '.join(bad)}): a method's state "
                "is not kept identical across processes; report this with the config"
            )


def mean_over_processes(loss: Tensor, logs: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss and the method's logs averaged over the processes, in one all-reduce."""
    wide = torch.float64 if loss.dtype == torch.float64 else torch.float32  # (MPS: no float64)
    values = torch.stack([loss.to(wide), *(v.detach().to(wide) for v in logs.values())])
    values = all_reduce_mean(values)
    means = {k: m.to(v.dtype) for (k, v), m in zip(logs.items(), values[1:], strict=True)}
    return values[0].to(loss.dtype), means
