r"""Colorization's classification loss: cross-entropy to soft-encoded ab targets, each location
weighted by the rebalancing weight of its target's most likely bin (Zhang et al. 2016, Eq. 2)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rebalanced_soft_cross_entropy"]


def rebalanced_soft_cross_entropy(
    logits: Tensor, index: Tensor, weight: Tensor, class_weights: Tensor
) -> Tensor:
    r""":math:`-\frac{1}{N} \sum_n v_n \sum_q Z_{nq} \log \mathrm{softmax}(\text{logits}_n)_q`,
    :math:`v_n = w_{\arg\max_q Z_{nq}}`, with the target ``Z`` given sparsely.

    Args:
        logits: ``[N, Q]`` scores over the ab bins, one row per location.
        index: ``[N, k]`` int64 bins holding the target's mass, the most likely first
            (:func:`selfsup.nn.ab_quantization.soft_encode`).
        weight: ``[N, k]`` the target's mass on those bins (rows sum to 1).
        class_weights: ``[Q]`` rebalancing weight of every bin (all ones: no rebalancing).

    Example:
        >>> logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
        >>> index, weight = torch.tensor([[0, 1]]), torch.tensor([[0.75, 0.25]])
        >>> loss = rebalanced_soft_cross_entropy(logits, index, weight, torch.tensor([2.0, 1, 1]))
        >>> round(loss.item(), 4)  # 2 * -(0.75 ln 0.5 + 0.25 ln 0.25)
        1.7329
    """
    log_probs = torch.log_softmax(logits.float(), dim=1)  # [N, Q]
    cross_entropy = -(weight * log_probs.gather(1, index)).sum(dim=1)  # [N]
    return (class_weights[index[:, 0]] * cross_entropy).mean()
