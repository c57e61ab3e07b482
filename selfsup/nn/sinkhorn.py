r"""Sinkhorn-Knopp: soft assignments of a batch to prototypes under an equipartition constraint.

SwAV (Caron et al. 2020) turns the scores of :math:`B` samples against :math:`K` prototypes
into *codes* by solving an entropy-regularised optimal-transport problem: find the transport
plan :math:`P \in \mathbb{R}_+^{B \times K}` closest to :math:`\exp(S / \epsilon)` whose
sample marginals are uniform (:math:`P \mathbf 1_K = \mathbf 1_B / B`: every sample is
assigned in full) and whose prototype marginals are uniform (:math:`P^\top \mathbf 1_B =
\mathbf 1_K / K`: every prototype receives the same mass, so the assignment cannot collapse
onto one prototype). A few alternating rescalings of the rows and columns (Sinkhorn-Knopp)
approximate it; the codes are :math:`Q = B\,P`, one distribution over prototypes per sample.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from selfsup.nn import distributed

__all__ = ["sinkhorn_knopp"]


@torch.no_grad()
def sinkhorn_knopp(
    scores: Tensor, epsilon: float = 0.05, iterations: int = 3, gather_distributed: bool = True
) -> Tensor:
    r"""Codes ``[B, K]`` of ``scores`` ``[B, K]`` (sample-prototype similarities), no gradient.

    .. math::

        P \leftarrow \frac{\exp(S / \epsilon)}{\sum \exp(S / \epsilon)}, \qquad
        \text{repeat } T \text{ times: }
        P_{:,k} \leftarrow \frac{P_{:,k}}{K \sum_b P_{b,k}}, \quad
        P_{b,:} \leftarrow \frac{P_{b,:}}{B \sum_k P_{b,k}}, \qquad Q = B P.

    After the last iteration every sample's mass is exactly :math:`1/B` (each row of the codes
    sums to 1) and every prototype's mass is approximately :math:`1/K` (exactly in the limit
    of many iterations; 3 in SwAV, enough since only the codes' shape matters). A smaller
    :math:`\epsilon` gives sharper codes (0.05 in SwAV; much smaller under- or overflows less
    than it sharpens, since :math:`S / \epsilon` is shifted by its maximum first).

    With ``gather_distributed`` the batch is the global one: the prototype sums are all-reduced
    over processes, and :math:`B` counts every process's rows (all processes must pass the same
    number of rows). Scores under autocast are promoted to float32.

    Args:
        scores: ``[B, K]`` scores of this process's samples (SwAV: cosine similarities between
            normalised embeddings and normalised prototypes, queue rows first).
        epsilon: :math:`\epsilon > 0`, the entropic regularisation (0.05).
        iterations: :math:`T \ge 1` rescaling rounds (3).
        gather_distributed: marginals over the global batch (no effect when not distributed).

    Returns:
        ``[B, K]`` codes, non-negative, each row summing to 1.

    Example:
        >>> scores = torch.tensor([[1.0, 0.0], [0.9, 0.0], [0.0, 0.2]])
        >>> codes = sinkhorn_knopp(scores, iterations=100)
        >>> codes.sum(1).round(decimals=6).tolist()  # one distribution per sample
        [1.0, 1.0, 1.0]
        >>> codes.sum(0).round(decimals=4).tolist()  # B/K = 1.5 samples per prototype
        [1.5, 1.5]
        >>> [round(c, 2) for c in codes[1].tolist()]  # the least sure of prototype 0 gives way
        [0.59, 0.41]
    """
    if scores.ndim != 2 or not scores.is_floating_point():
        raise ValueError(
            f"scores must be a floating-point matrix [B, K] (samples x prototypes), got "
            f"{tuple(scores.shape)} {scores.dtype}"
        )
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}; SwAV uses 0.05")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}; SwAV uses 3")
    gathered = gather_distributed and distributed.world_size() > 1
    world = distributed.world_size() if gathered else 1
    s = scores.detach().to(torch.promote_types(scores.dtype, torch.float32))  # [B, K]
    top = s.max()
    if gathered:
        top = distributed.all_reduce_max(top)  # the same shift on every process
    p = torch.exp((s - top) / epsilon)  # [B, K]; the shift cancels in the normalisation
    batch, k = s.shape[0] * world, s.shape[1]
    total = p.sum()
    p = p / (distributed.all_reduce_sum(total) if gathered else total)
    for _ in range(iterations):
        prototype_mass = p.sum(0, keepdim=True)  # [1, K]
        if gathered:
            prototype_mass = distributed.all_reduce_sum(prototype_mass)
        p = p / (k * prototype_mass)  # every prototype's mass: 1/K
        p = p / (batch * p.sum(1, keepdim=True))  # every sample's mass: 1/B (local rows)
    return p * batch  # [B, K]: rows sum to 1
