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
    "all_reduce_mean",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "rank",
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
