"""Self-supervised objectives as small, typed, stand-alone modules.

Each loss is a function (``nt_xent_loss``) plus an ``nn.Module`` wrapper holding its
hyperparameters (``NTXentLoss``), so it drops into any training loop. Losses that compare
across devices take an explicit ``gather_distributed`` switch and are identical to the
single-process loss on the global batch when it is on.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.nn.distributed import gather_with_grad, rank, world_size

__all__ = ["NTXentLoss", "nt_xent_loss"]


def _full_precision(*tensors: Tensor) -> contextlib.AbstractContextManager[None]:
    """Context that switches autocast off on the tensors' device type (if it has autocast)."""
    device_type = tensors[0].device.type
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature}; "
            "SimCLR uses 0.5 on CIFAR-sized data and 0.1 on ImageNet"
        )


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
    _check_temperature(temperature)
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
        >>> loss_fn = NTXentLoss(temperature=0.5)
        >>> z = torch.ones(4, 8)  # collapsed: every view identical
        >>> round(loss_fn(z, z).item(), 4) == round(math.log(2 * 4 - 1), 4)
        True
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """``[N, D]`` projections of view a and view b -> scalar loss."""
        return nt_xent_loss(z_a, z_b, self.temperature, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"
