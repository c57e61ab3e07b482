"""Contrastive losses: SimCLR's NT-Xent, MoCo v1/v2's InfoNCE with a queue, MoCo v3's ctr.

Each scores a query against its positive and a set of negatives (the other views of the batch,
a queue of past keys, or the other keys of the batch) with a cross-entropy over cosine
similarities divided by a temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.nn.distributed import gather_no_grad, gather_with_grad, rank, world_size
from selfsup.nn.losses.common import _check_pair, _check_tau, _full_precision

__all__ = ["NTXentLoss", "infonce_queue_loss", "moco_v3_loss", "nt_xent_loss"]


_SIMCLR_TAU = "SimCLR uses 0.5 on CIFAR-sized data and 0.1 on ImageNet"


def _check_views(z_a: Tensor, z_b: Tensor) -> None:
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            "expected two projections of the same shape [N, D], got "
            f"{tuple(z_a.shape)} and {tuple(z_b.shape)}; flatten the projector output "
            "and pass one tensor per view"
        )
    if not (z_a.is_floating_point() and z_b.is_floating_point()):
        raise ValueError(
            f"projections must be floating point, got {z_a.dtype} and {z_b.dtype}; "
            "pass the projector output, not labels or indices"
        )


def nt_xent_loss(
    z_a: Tensor, z_b: Tensor, temperature: float = 0.5, gather_distributed: bool = False
) -> Tensor:
    r"""SimCLR's normalised temperature-scaled cross-entropy (NT-Xent). See :class:`NTXentLoss`.

    Args:
        z_a: projections of the first view, ``[n, D]``.
        z_b: projections of the second view, ``[n, D]``; row ``i`` is the positive of
            ``z_a[i]``.
        temperature: :math:`\tau > 0`.
        gather_distributed: score the local anchors against the views of all processes.

    Returns:
        Scalar loss (float32, or float64 for float64 inputs).
    """
    _check_tau(temperature, _SIMCLR_TAU)
    _check_views(z_a, z_b)
    n = z_a.shape[0]
    world = world_size() if gather_distributed else 1
    if world * n < 2:
        raise ValueError(
            f"SimCLR needs batch size >= 2 (got {world * n} pair(s) in total): with one pair "
            "there are no negatives; increase the batch size"
        )
    with _full_precision(z_a):
        dtype = torch.promote_types(z_a.dtype, torch.float32)  # fp16/bf16 -> fp32, keep fp64
        z = F.normalize(torch.cat([z_a, z_b], dim=0).to(dtype), dim=1)  # [2n, D], rows unit
        keys = gather_with_grad(z) if world > 1 else z  # [2N, D], rank r holds rows r*2n...
        offset = 2 * n * rank() if world > 1 else 0  # where this process's views sit in keys

        logits = z @ keys.T / temperature  # [2n, 2N]: cosine similarity / tau
        anchor = torch.arange(2 * n, device=z.device)  # [2n]
        key = torch.arange(keys.shape[0], device=z.device)  # [2N]
        is_self = key[None, :] == (anchor + offset)[:, None]  # [2n, 2N], one True per row
        logits = logits.masked_fill(is_self, float("-inf"))  # exp(-inf) = 0: self left out
        positive = offset + (anchor + n) % (2 * n)  # [2n]: a_i <-> b_i
        return F.cross_entropy(logits, positive)


class NTXentLoss(nn.Module):
    r"""SimCLR's normalised temperature-scaled cross-entropy (NT-Xent, Chen et al. 2020).

    The :math:`2N` projections of both views are L2-normalised, :math:`u = z / \lVert z
    \rVert`, and every view is an anchor whose positive is the other view of its image and
    whose :math:`2N - 2` negatives are all remaining views:

    .. math::

        \ell_i = -\log \frac{\exp(u_i^\top u_{p(i)} / \tau)}
                            {\sum_{k \ne i} \exp(u_i^\top u_k / \tau)},
        \qquad
        \mathcal{L} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i ,

    i.e. a cross-entropy over the other :math:`2N - 1` views (the anchor itself is masked out
    with :math:`-\infty`), averaged over both directions, so the loss is symmetric in
    ``(z_a, z_b)``. Collapsed embeddings (all equal) give exactly :math:`\log(2N - 1)`.

    The similarities and the cross-entropy run in float32 even under autocast: with
    :math:`\tau = 0.1`, logits reach 10 and half-precision ``exp`` loses the small negatives.

    With ``gather_distributed=True`` every process scores its local :math:`2n` anchors
    against the :math:`2N = 2nW` views gathered *with gradient* from all :math:`W` processes
    (the official SimCLR recipe: negatives from every device). Each process returns the mean
    over its own anchors; since all processes hold equally many anchors, the DDP-averaged
    gradient equals the gradient of the single-process loss on the concatenated batch.
    All processes must pass the same batch size.

    Args:
        temperature: :math:`\tau > 0`; 0.5 for CIFAR-sized data, 0.1 for ImageNet (SimCLR).
        gather_distributed: gather negatives across processes (no effect when not
            distributed).

    Example:
        >>> import math
        >>> loss_fn = NTXentLoss(temperature=0.5)
        >>> z = torch.ones(4, 8)  # collapsed: every view identical
        >>> round(loss_fn(z, z).item(), 4) == round(math.log(2 * 4 - 1), 4)
        True
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        _check_tau(temperature, _SIMCLR_TAU)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """``[N, D]`` projections of view a and view b -> scalar loss."""
        return nt_xent_loss(z_a, z_b, self.temperature, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


def infonce_queue_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    r"""MoCo v1/v2's InfoNCE against a queue of negative keys (He et al. 2020).

    With :math:`u = q / \lVert q \rVert`, :math:`v = k / \lVert k \rVert` and the queued keys
    :math:`n_j` (unit rows):

    .. math::

        \ell_i = -\log \frac{\exp(u_i^\top v_i / \tau)}
                            {\exp(u_i^\top v_i / \tau) + \sum_{j=1}^{K} \exp(u_i^\top n_j / \tau)},
        \qquad \mathcal{L} = \frac1N \sum_i \ell_i ,

    i.e. a cross-entropy over logits ``[N, 1 + K]`` whose label is 0 (the positive first).
    One direction only, as in MoCo v2 (not symmetrised). The keys are targets: ``k`` and the
    queue receive no gradient (the queue is a constant; ``k`` is detached here). The math runs
    in float32 (float64 for float64 inputs) even under autocast.

    Args:
        q: queries ``[N, D]`` (the trained encoder's projections).
        k: positive keys ``[N, D]`` (the momentum encoder's projections of the other view).
        queue: negative keys ``[K, D]``, already L2-normalised (``MemoryQueue.keys``).
        temperature: :math:`\tau > 0`; 0.07 MoCo v1, 0.2 MoCo v2.

    Returns:
        Scalar loss.

    Example:
        >>> import math
        >>> q = torch.eye(3)[:1]  # one query, equal to its key and orthogonal to the queue
        >>> value = infonce_queue_loss(q, q, torch.eye(3)[1:], temperature=1.0)
        >>> round(value.item(), 6) == round(math.log(1 + 2 * math.exp(-1)), 6)
        True
    """
    _check_tau(temperature, "MoCo uses 0.07 (v1) or 0.2 (v2)")
    _check_pair(q, k, "queries q and keys k")
    if queue.ndim != 2 or queue.shape[1] != q.shape[1] or not queue.is_floating_point():
        raise ValueError(
            f"queue must be floating point of shape [K, {q.shape[1]}] (one key per row, same "
            f"dimension as q), got {tuple(queue.shape)} {queue.dtype}; pass MemoryQueue.keys"
        )
    with _full_precision(q):
        dtype = torch.promote_types(q.dtype, torch.float32)
        u = F.normalize(q.to(dtype), dim=1)  # [N, D]
        v = F.normalize(k.detach().to(dtype), dim=1)  # [N, D], target: no gradient
        negatives = queue.detach().to(dtype)  # [K, D], unit rows
        positive = (u * v).sum(dim=1, keepdim=True)  # [N, 1]
        logits = torch.cat([positive, u @ negatives.T], dim=1) / temperature  # [N, 1 + K]
        labels = torch.zeros(u.shape[0], dtype=torch.long, device=u.device)  # [N]
        return F.cross_entropy(logits, labels)


def moco_v3_loss(
    q: Tensor, k: Tensor, temperature: float = 0.2, gather_distributed: bool = False
) -> Tensor:
    r"""MoCo v3's contrastive loss :math:`\mathrm{ctr}(q, k)` (Chen, Xie, He 2021).

    Queries are scored against all keys of the (global) batch; the positive of query
    :math:`i` is key :math:`i`, the other keys are its negatives (no queue):

    .. math::

        \mathrm{ctr}(q, k) = 2\tau \cdot \frac1N \sum_i -\log
            \frac{\exp(u_i^\top v_i / \tau)}{\sum_j \exp(u_i^\top v_j / \tau)} ,

    with :math:`u, v` the L2-normalised ``q, k``. The factor :math:`2\tau` is the official
    code's (it makes the loss scale insensitive to :math:`\tau`). The method sums both
    directions, ``ctr(q1, k2) + ctr(q2, k1)``. Keys are targets: they are detached and, with
    ``gather_distributed=True``, gathered from every process *without* gradient, giving logits
    ``[N, N W]`` whose positives sit on the diagonal shifted by ``rank * N``. Float32 math.

    Args:
        q: queries ``[N, D]`` (predictor outputs of the base encoder).
        k: keys ``[N, D]`` (projector outputs of the momentum encoder, other view).
        temperature: :math:`\tau > 0`; 1.0 for ResNet and 0.2 for ViT in the official code.
        gather_distributed: negatives from every process (no effect when not distributed).

    Returns:
        Scalar loss.

    Example:
        >>> import math
        >>> z = torch.eye(4)  # q = k, keys mutually orthogonal
        >>> value = moco_v3_loss(z, z, temperature=0.5)
        >>> round(value.item(), 6) == round(2 * 0.5 * math.log(1 + 3 * math.exp(-2)), 6)
        True
    """
    _check_tau(temperature, "MoCo v3 uses 1.0 for ResNet and 0.2 for ViT")
    _check_pair(q, k, "queries q and keys k")
    with _full_precision(q):
        dtype = torch.promote_types(q.dtype, torch.float32)
        u = F.normalize(q.to(dtype), dim=1)  # [N, D]
        v = F.normalize(k.detach().to(dtype), dim=1)  # [N, D]
        gathered = gather_distributed and world_size() > 1
        keys = gather_no_grad(v) if gathered else v  # [N W, D], rank r holds rows r*N...
        offset = u.shape[0] * rank() if gathered else 0
        logits = u @ keys.T / temperature  # [N, N W]
        labels = offset + torch.arange(u.shape[0], device=u.device)  # [N]
        return F.cross_entropy(logits, labels) * (2 * temperature)
