"""Regression losses without negatives: BYOL's (prediction vs. the EMA target's projection) and
SimSiam's (prediction vs. the other view's projection, same network)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.nn.losses.common import _check_pair, _full_precision

__all__ = ["byol_loss", "simsiam_loss"]


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    r"""BYOL's regression loss: :math:`2 - 2 \cos(p, \mathrm{sg}(z))`, mean over the batch.

    .. math::

        \mathcal{L} = \frac1N \sum_i \Bigl\lVert \frac{p_i}{\lVert p_i \rVert}
                       - \frac{z_i}{\lVert z_i \rVert} \Bigr\rVert_2^2
                     = \frac1N \sum_i \bigl(2 - 2 \cos(p_i, z_i)\bigr),

    in :math:`[0, 4]`: 0 when the prediction points along the target, 4 when opposite.
    ``z`` (the target network's projection) is detached here: stop-gradient is part of the
    loss, not something the caller can forget. BYOL symmetrises by swapping the views and
    adding the two losses. Float32 math.

    Args:
        p: online predictions ``[N, D]``.
        z: target projections ``[N, D]`` of the other view.

    Returns:
        Scalar loss.

    Example:
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> byol_loss(p, 3 * p).item(), byol_loss(p, -p).item()
        (0.0, 4.0)
    """
    _check_pair(p, z, "predictions p and target projections z")
    with _full_precision(p):
        dtype = torch.promote_types(p.dtype, torch.float32)
        u = F.normalize(p.to(dtype), dim=1)  # [N, D]
        v = F.normalize(z.detach().to(dtype), dim=1)  # [N, D], stop-gradient
        return (2 - 2 * (u * v).sum(dim=1)).mean()


def simsiam_loss(p: Tensor, z: Tensor, stop_gradient: bool = True) -> Tensor:
    r"""SimSiam's negative cosine similarity :math:`D(p, \mathrm{sg}(z))`, mean over the batch.

    .. math::

        D(p, z) = -\frac1N \sum_i \frac{p_i}{\lVert p_i \rVert_2} \cdot
                                    \frac{z_i}{\lVert z_i \rVert_2},

    in :math:`[-1, 1]`: -1 when every prediction points along its target, 1 when opposite.
    ``z`` (the projection of the other view) is detached when ``stop_gradient`` (the paper's
    :math:`\mathrm{sg}`); ``stop_gradient=False`` is the paper's ablation, which collapses.
    SimSiam symmetrises: :math:`\tfrac12 D(p_1, z_2) + \tfrac12 D(p_2, z_1)`. Float32 math.
    It equals :func:`byol_loss` :math:`/ 2 - 1` (BYOL's loss is :math:`2 + 2D`).

    Args:
        p: predictions ``[N, D]`` of one view.
        z: projections ``[N, D]`` of the other view.
        stop_gradient: no gradient through ``z`` (the method); False only for the ablation.

    Returns:
        Scalar loss.

    Example:
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> simsiam_loss(p, 3 * p).item(), simsiam_loss(p, -p).item()
        (-1.0, 1.0)
    """
    _check_pair(p, z, "predictions p and projections z")
    with _full_precision(p):
        dtype = torch.promote_types(p.dtype, torch.float32)
        target = z.detach() if stop_gradient else z
        return -F.cosine_similarity(p.to(dtype), target.to(dtype), dim=1).mean()
