r"""SwAV's swapped prediction: predict the code of one crop from the scores of another."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.nn.losses.common import _check_tau, _full_precision

__all__ = ["swapped_prediction_loss"]


def swapped_prediction_loss(
    scores: Sequence[Tensor],
    codes: Sequence[Tensor],
    pairs: Sequence[tuple[int, int]],
    temperature: float = 0.1,
) -> Tensor:
    r"""SwAV's loss: the cross-entropy of each code with the prediction from another crop.

    For a pair :math:`(t, v)` of a crop :math:`t` with a code :math:`q_t` and another crop
    :math:`v` with prototype scores :math:`s_v = z_v^\top C`:

    .. math::

        \ell(q_t, s_v) = -\frac1B \sum_b \sum_k q_{t,bk} \log
            \frac{\exp(s_{v,bk} / \tau)}{\sum_{k'} \exp(s_{v,bk'} / \tau)}, \qquad
        \mathcal{L} = \frac{1}{|\mathcal P|} \sum_{(t, v) \in \mathcal P} \ell(q_t, s_v).

    With the pairs of every code crop :math:`t` (the 2 global crops) with every other crop
    :math:`v \ne t`, this is the official mean over :math:`v` for each :math:`t`, then over
    :math:`t`. The codes are targets: they are detached here. Float32 math.

    Args:
        scores: per crop, ``[B, K]`` scores against the (normalised) prototypes, with gradient.
        codes: per code crop (``codes[t]`` for the first crops), ``[B, K]`` rows summing to 1
            (:func:`~selfsup.nn.sinkhorn.sinkhorn_knopp`).
        pairs: ``(t, v)`` index pairs: the code of crop ``t`` predicted from crop ``v``.
        temperature: :math:`\tau > 0` (0.1).

    Returns:
        Scalar loss.

    Example:
        >>> import math
        >>> flat = [torch.zeros(2, 4), torch.zeros(2, 4)]  # uniform predictions over K = 4
        >>> codes = [torch.eye(4)[:2], torch.eye(4)[2:]]  # hard codes
        >>> loss = swapped_prediction_loss(flat, codes, [(0, 1), (1, 0)])
        >>> round(loss.item(), 6) == round(math.log(4), 6)
        True
    """
    _check_tau(temperature, "SwAV uses 0.1")
    if not pairs:
        raise ValueError("pairs is empty; SwAV needs at least one (code crop, other crop) pair")
    for t, v in pairs:
        if not (0 <= t < len(codes) and 0 <= v < len(scores) and t != v):
            raise ValueError(
                f"pair ({t}, {v}) is not a code crop t < {len(codes)} with another crop "
                f"v < {len(scores)}, v != t; build the pairs with views.multicrop.crop_pairs"
            )
    shapes = {tuple(x.shape) for x in (*scores, *codes)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(
            f"every crop's scores and codes must share one shape [B, K], got {sorted(shapes)}"
        )
    with _full_precision(scores[0]):
        dtype = torch.promote_types(scores[0].dtype, torch.float32)
        log_p = {v: F.log_softmax(scores[v].to(dtype) / temperature, dim=1) for _, v in pairs}
        losses = [-(codes[t].detach().to(dtype) * log_p[v]).sum(1).mean() for t, v in pairs]
        return torch.stack(losses).mean()
