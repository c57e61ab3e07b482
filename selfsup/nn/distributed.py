"""Thin, single-process-safe wrappers around ``torch.distributed``.

Every function works unchanged in a plain single-process script: when no process group is
initialised (or the world has one process) the gathers and reductions are identities, so
losses and methods never branch on "am I distributed?" themselves.

All collectives run on the default process group and require every process to pass a tensor
of the same shape (``all_gather`` does not pad).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_max",
    "all_reduce_mean",
    "all_reduce_sum",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "shuffle_batch",
    "unshuffle_batch",
    "world_size",
]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands every process the summed gradient of its slice.

    Backward: the gradient of the gathered tensor differs per process (each computed its own
    loss), so it is summed over processes (all-reduce) and each keeps the rows of its own input.
    All-reduce works on every backend (reduce-scatter does not: gloo lacks it); the tensors
    are small (batch x projection dim), so the extra traffic is negligible.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)  # [W * n, ...]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()  # [W * n, ...]; collectives write in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]  # [n, ...]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all processes along dim 0, keeping the autograd graph.

    ``[n, ...]`` on each of W processes -> ``[W * n, ...]``, ordered by rank. In the backward
    pass the gradient of the gathered tensor is summed over processes and each process receives
    the slice that belongs to its own ``x`` (the semantics of
    ``torch.distributed.nn.functional.all_gather``, which torch 2.14 deprecates). This is what
    SimCLR needs: negatives from other devices send gradient to the device that produced them.
    Every process must call backward through it. Identity when not distributed.
    """
    if world_size() == 1:
        return x
    out: Tensor = _GatherWithGrad.apply(x)
    return out


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all processes along dim 0 without gradient.

    ``[n, ...]`` -> ``[W * n, ...]``, ordered by rank; the result is detached (e.g. MoCo keys
    for the queue). Returns ``x.detach()`` when not distributed.
    """
    if world_size() == 1:
        return x.detach()
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)  # [W * n, ...]


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over all processes, returned as a new detached tensor (input untouched).

    Used for statistics every process must agree on (DINO's center, logged metrics).
    Returns ``x.detach()`` when not distributed.
    """
    if not x.is_floating_point():
        raise ValueError(
            f"all_reduce_mean needs a floating-point tensor, got dtype {x.dtype}; "
            "convert it first, e.g. x.float()"
        )
    if world_size() == 1:
        return x.detach()
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.div_(world_size())


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over all processes, returned as a new detached tensor (input untouched).

    Used for sums that span the global batch (Sinkhorn-Knopp's row sums in SwAV). Returns
    ``x.detach()`` when not distributed.
    """
    if world_size() == 1:
        return x.detach()
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


@torch.no_grad()
def all_reduce_max(x: Tensor) -> Tensor:
    """Element-wise maximum of ``x`` over all processes, as a new detached tensor.

    Returns ``x.detach()`` when not distributed.
    """
    if world_size() == 1:
        return x.detach()
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def _gather(x: Tensor) -> Tensor:
    """All-gather along dim 0, with gradient when ``x`` needs one (and grad mode is on)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return gather_with_grad(x)
    return gather_no_grad(x)


def shuffle_batch(x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Randomly permute the samples of the (global) batch: MoCo's shuffle-BN.

    BatchNorm statistics of a key batch normalised together with the query batch leak which
    sample is the positive; MoCo shuffles the keys so every device normalises a random mix of
    samples. Distributed: the batches of all W processes are gathered (``[W n, ...]``), one
    random permutation drawn on rank 0 is broadcast, and each process gets its slice of the
    shuffled global batch. Single process: a local random permutation.

    Gradient flows back through the shuffle when ``x`` requires grad (across processes with
    :func:`gather_with_grad`); MoCo uses it under ``torch.no_grad`` for the key encoder.

    Args:
        x: this process's batch ``[n, ...]``; every process must pass the same shape.
        generator: draws the permutation (on its own device); the global RNG of ``x``'s device
            when ``None``. Distributed, only rank 0's draw is used (every rank still draws, so
            identically seeded generators stay in step).

    Returns:
        ``(shuffled, unshuffle_index)``: ``shuffled`` ``[n, ...]`` is this process's slice of
        the permuted global batch; ``unshuffle_index`` ``[W n]`` (int64, same on every
        process) is what :func:`unshuffle_batch` needs to restore the original order.

    Example:
        >>> x = torch.arange(6.0)
        >>> shuffled, index = shuffle_batch(x, torch.Generator().manual_seed(0))
        >>> torch.equal(unshuffle_batch(shuffled, index), x)
        True
    """
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(
            f"shuffle_batch needs a batch [n, ...] with n >= 1, got shape {tuple(x.shape)}; "
            "pass the stacked samples (e.g. the key view images [n, C, H, W])"
        )
    world = world_size()
    total = world * x.shape[0]
    device = generator.device if generator is not None else x.device
    perm = torch.randperm(total, generator=generator, device=device).to(x.device)  # [W n]
    if world > 1:
        dist.broadcast(perm, src=0)  # every process uses rank 0's permutation
        gathered = _gather(x)  # [W n, ...]
        mine = perm.view(world, -1)[rank()]  # [n]: global rows this process receives
        shuffled = gathered[mine]
    else:
        shuffled = x[perm]
    return shuffled, torch.argsort(perm)


def unshuffle_batch(x: Tensor, unshuffle_index: Tensor) -> Tensor:
    """Undo :func:`shuffle_batch`: the rows of the original batch of this process, in order.

    ``x`` ``[n, ...]`` is (a function of) this process's shuffled slice, row by row; the
    result ``[n, ...]`` has row ``i`` equal to the output for this process's original sample
    ``i``. Distributed, the slices are gathered again and each process takes its own rows.

    Args:
        x: per-sample outputs in shuffled order, ``[n, ...]``.
        unshuffle_index: the second output of :func:`shuffle_batch`, ``[W n]``.
    """
    world = world_size()
    if unshuffle_index.ndim != 1 or unshuffle_index.shape[0] != world * x.shape[0]:
        raise ValueError(
            f"unshuffle_index has shape {tuple(unshuffle_index.shape)} but the batch has "
            f"{x.shape[0]} rows on each of {world} process(es); pass the index returned by "
            "shuffle_batch for this same batch"
        )
    index = unshuffle_index.to(x.device)
    if world == 1:
        return x[index]
    gathered = _gather(x)  # [W n, ...] in shuffled order
    mine = index.view(world, -1)[rank()]  # [n]: where this process's originals sit
    return gathered[mine]
