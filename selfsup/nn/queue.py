r"""MoCo's queue of negative keys (He et al. 2020), kept as checkpointed buffers.

The queue is a ring buffer of the :math:`K` most recent keys: each step the new keys replace
the oldest ones, so the negatives of a query are the keys of the last :math:`K / B` batches,
produced by a slowly moving key encoder. Keys and the write pointer are registered buffers:
``state_dict()`` holds the whole queue and a resumed run continues with the same negatives
(a queue restarted from noise on resume is a classic silent bug).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MemoryQueue"]


class MemoryQueue(nn.Module):
    r"""First-in-first-out queue of ``size`` L2-normalised ``dim``-dimensional keys.

    Buffers:
        ``keys`` ``[size, dim]`` float32, every row of unit norm; initialised with random
        normal rows, normalised (MoCo's initialisation: random directions on the sphere).
        ``ptr`` int64 scalar: the row the next key is written to (the oldest key).

    Every write is device-side: row indices :math:`(p + i) \bmod K` and the new pointer
    :math:`(p + B) \bmod K` are computed from the ``ptr`` tensor, never read back to the host.

    In MoCo the keys of *all* processes are enqueued (gather them first, e.g. with
    :func:`selfsup.nn.gather_no_grad`), after the logits of the step are computed, so that a
    key is never its own query's negative.

    Args:
        dim: key dimension (the projector output, 128 in MoCo v2).
        size: number of keys :math:`K` (65536 in MoCo); at least the global batch size.

    Example:
        >>> queue = MemoryQueue(dim=4, size=6)
        >>> queue.enqueue(torch.ones(4, 4))
        >>> int(queue.ptr), queue.keys[:4].tolist() == [[0.5] * 4] * 4
        (4, True)
        >>> queue.enqueue(3 * torch.ones(4, 4))  # wraps: rows 4, 5 then 0, 1
        >>> int(queue.ptr)
        2
    """

    keys: Tensor
    ptr: Tensor

    def __init__(self, dim: int, size: int = 65536) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"MemoryQueue {name} must be a positive integer, got {value!r}; dim is the "
                    "projection dimension (128 in MoCo v2) and size the number of negatives "
                    "(65536 in MoCo, at least the global batch size)"
                )
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))  # [K, D]
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next row to write

    @property
    def size(self) -> int:
        """Number of keys :math:`K` the queue holds."""
        return self.keys.shape[0]

    @property
    def dim(self) -> int:
        """Dimension of each key."""
        return self.keys.shape[1]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` ``[B, dim]`` (L2-normalised here) over the ``B`` oldest keys.

        The ring wraps around when :math:`K` is not a multiple of :math:`B`: the first part of
        the batch fills the end of the buffer and the rest continues at row 0, so every key is
        stored exactly once and the order stays first-in-first-out.

        Raises:
            ValueError: ``keys`` is not ``[B, dim]`` floating point, or ``B > size`` (the
                batch would overwrite its own keys).
        """
        if keys.ndim != 2 or keys.shape[1] != self.dim or not keys.is_floating_point():
            raise ValueError(
                f"expected floating-point keys of shape [B, {self.dim}], got "
                f"{tuple(keys.shape)} {keys.dtype}; pass the key projections of one step "
                "(flattened, gathered from all processes)"
            )
        batch = keys.shape[0]
        if batch > self.size:
            raise ValueError(
                f"cannot enqueue {batch} keys into a queue of size {self.size}: the batch would "
                f"overwrite its own keys; set the queue size >= the global batch size ({batch})"
            )
        k = F.normalize(keys.detach().float(), dim=1).to(self.keys.dtype)  # [B, D]
        rows = (self.ptr + torch.arange(batch, device=self.ptr.device)) % self.size  # [B]
        self.keys.index_copy_(0, rows, k)
        self.ptr.copy_((self.ptr + batch) % self.size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}"
