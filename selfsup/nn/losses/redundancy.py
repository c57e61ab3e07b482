r"""Losses on the statistics of the embeddings over the batch: Barlow Twins and VICReg.

Neither has negatives or a momentum network; both avoid collapse through per-dimension
statistics of the batch (standardised cross-correlation, variances, covariances). Those
statistics must be over the *global* batch: with ``gather_distributed=True`` the embeddings of
every process are gathered with gradient (:func:`selfsup.nn.distributed.gather_with_grad`),
every process computes the same statistics, and the DDP-averaged gradient is the gradient of
the single-process loss on the whole batch. Float32 math, also under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.nn import distributed
from selfsup.nn.losses.common import _check_pair, _full_precision

__all__ = [
    "BarlowTwinsLoss",
    "VICRegLoss",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "cross_correlation",
    "off_diagonal",
    "vicreg_loss",
    "vicreg_terms",
]

# BatchNorm1d's epsilon: the official Barlow Twins standardises with BatchNorm1d(affine=False)
BN_EPS = 1e-5


def off_diagonal(m: Tensor) -> Tensor:
    """The off-diagonal entries of a square matrix ``[D, D]``, flattened ``[D * (D - 1)]``.

    Example:
        >>> off_diagonal(torch.arange(9.0).view(3, 3)).tolist()
        [1.0, 2.0, 3.0, 5.0, 6.0, 7.0]
    """
    d = m.shape[0]
    if m.ndim != 2 or m.shape[1] != d:
        raise ValueError(f"off_diagonal needs a square matrix [D, D], got {tuple(m.shape)}")
    return m.flatten()[1:].view(d - 1, d + 1)[:, :-1].flatten()


def _global_batch(z: Tensor, gather_distributed: bool) -> Tensor:
    """``[n, D]`` -> ``[N, D]``: every process's rows (with gradient) or this process's."""
    return distributed.gather_with_grad(z) if gather_distributed else z


def _check_batch(n: int, method: str) -> None:
    if n < 2:
        raise ValueError(
            f"{method} needs at least 2 images in the (global) batch to compute per-dimension "
            f"statistics, got {n}; increase the batch size"
        )


def _float(z: Tensor) -> Tensor:
    return z.to(torch.promote_types(z.dtype, torch.float32))  # fp16/bf16 -> fp32, keep fp64


def cross_correlation(z_a: Tensor, z_b: Tensor, gather_distributed: bool = False) -> Tensor:
    r"""Barlow Twins' cross-correlation matrix of two batches of embeddings, ``[D, D]``.

    Each dimension is standardised over the (global) batch of :math:`N` rows, as
    ``BatchNorm1d(affine=False)`` in training mode does (biased variance,
    :math:`\epsilon = 10^{-5}`), then :math:`C = \hat z_a^\top \hat z_b / N`:

    .. math::

        C_{ij} = \frac1N \sum_n \hat z^a_{n,i} \hat z^b_{n,j} \in [-1, 1]
        \quad \text{(up to } \epsilon\text{)}.

    Example:
        >>> z = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
        >>> cross_correlation(z, z).round(decimals=4).tolist()
        [[1.0, -1.0], [-1.0, 1.0]]
    """
    _check_pair(z_a, z_b, "embeddings z_a and z_b")
    with _full_precision(z_a):
        a = _global_batch(_float(z_a), gather_distributed)  # [N, D]
        b = _global_batch(_float(z_b), gather_distributed)  # [N, D]
        n = a.shape[0]
        _check_batch(n, "Barlow Twins")
        a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + BN_EPS)  # [N, D]
        b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + BN_EPS)  # [N, D]
        return a.T @ b / n  # [D, D]


def barlow_twins_terms(
    z_a: Tensor, z_b: Tensor, gather_distributed: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Barlow Twins' two sums ``(invariance, redundancy)``: :math:`\sum_i (1 - C_{ii})^2` and
    :math:`\sum_{i \ne j} C_{ij}^2` of the cross-correlation :math:`C` (:func:`cross_correlation`)."""
    with _full_precision(z_a):
        c = cross_correlation(z_a, z_b, gather_distributed)  # [D, D]
        return (torch.diagonal(c) - 1).pow(2).sum(), off_diagonal(c).pow(2).sum()


def _check_lambda(value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"off_diagonal_weight must be a finite number >= 0, got {value}; Barlow Twins uses "
            "0.0051"
        )


def barlow_twins_loss(
    z_a: Tensor, z_b: Tensor, off_diagonal_weight: float = 0.0051, gather_distributed: bool = False
) -> Tensor:
    r"""Barlow Twins' loss :math:`\sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} C_{ij}^2`
    (Zbontar et al. 2021); see :class:`BarlowTwinsLoss`."""
    _check_lambda(off_diagonal_weight)
    invariance, redundancy = barlow_twins_terms(z_a, z_b, gather_distributed)
    return invariance + off_diagonal_weight * redundancy


class BarlowTwinsLoss(nn.Module):
    r"""Barlow Twins: the cross-correlation of the two views' embeddings towards the identity.

    With :math:`C` the cross-correlation of the standardised embeddings over the batch
    (:func:`cross_correlation`):

    .. math::

        \mathcal{L} = \underbrace{\sum_i (1 - C_{ii})^2}_{\text{invariance}}
            + \lambda \underbrace{\sum_i \sum_{j \ne i} C_{ij}^2}_{\text{redundancy reduction}}

    The diagonal pulls each dimension of the two views together; the off-diagonal term
    decorrelates the dimensions, so they cannot all carry the same (collapsed) signal. Perfectly
    correlated, decorrelated dimensions (:math:`C = I`) give 0; a collapsed dimension (constant
    over the batch) has :math:`C_{ii} = 0` and costs 1.

    :math:`\lambda = 0.0051` is the paper's value for :math:`D = 8192`. The invariance sum has
    :math:`D` terms and the redundancy sum :math:`D(D - 1)`, so the balance moves with
    :math:`D`; the authors had no tuned values for smaller projectors.

    Args:
        off_diagonal_weight: :math:`\lambda \ge 0`, the weight of the off-diagonal terms.
        gather_distributed: statistics over the global batch (gathered with gradient).

    Example:
        >>> z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
        >>> round(BarlowTwinsLoss()(z, z).item(), 6)  # identical views, decorrelated dimensions
        0.0
    """

    def __init__(
        self, off_diagonal_weight: float = 0.0051, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        _check_lambda(off_diagonal_weight)
        self.off_diagonal_weight = off_diagonal_weight
        self.gather_distributed = gather_distributed

    def terms(self, z_a: Tensor, z_b: Tensor) -> tuple[Tensor, Tensor]:
        """The unweighted ``(invariance, redundancy)`` sums of ``[n, D]`` embeddings."""
        return barlow_twins_terms(z_a, z_b, self.gather_distributed)

    def combine(self, invariance: Tensor, redundancy: Tensor) -> Tensor:
        r""":math:`\text{invariance} + \lambda\, \text{redundancy}`."""
        return invariance + self.off_diagonal_weight * redundancy

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """``[n, D]`` embeddings of view a and view b -> scalar loss."""
        return self.combine(*self.terms(z_a, z_b))

    def extra_repr(self) -> str:
        return (
            f"off_diagonal_weight={self.off_diagonal_weight}, "
            f"gather_distributed={self.gather_distributed}"
        )


def _variance_term(z: Tensor, eps: float) -> Tensor:
    """Mean hinge on the std of each dimension, :math:`\\mathrm{mean}_j \\max(0, 1 - s_j)`."""
    std = torch.sqrt(z.var(0) + eps)  # [D], unbiased variance (N - 1)
    return F.relu(1 - std).mean()


def _covariance_term(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances divided by the dimension."""
    n, d = z.shape
    centred = z - z.mean(0)  # [N, D]
    cov = centred.T @ centred / (n - 1)  # [D, D]
    return off_diagonal(cov).pow(2).sum() / d


def vicreg_terms(
    z_a: Tensor, z_b: Tensor, eps: float = 1e-4, gather_distributed: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    r"""VICReg's three terms ``(invariance, variance, covariance)``, unweighted.

    * invariance :math:`s = \frac{1}{nD} \sum_i \lVert z^a_i - z^b_i \rVert_2^2` (mean squared
      error over this process's rows; its mean over processes is the global one),
    * variance :math:`v = \tfrac12 \bigl(\mathrm{mean}_j \max(0, 1 - \sqrt{\mathrm{Var}(z^a_{:,j})
      + \epsilon}) + \text{the same for } z^b\bigr)`, over the global batch,
    * covariance :math:`c = \frac1D \sum_{i \ne j} \mathrm{Cov}(z^a)_{ij}^2 + \frac1D \sum_{i
      \ne j} \mathrm{Cov}(z^b)_{ij}^2`, over the global batch,

    with unbiased (:math:`N - 1`) variances and covariances, as the official code computes them.
    """
    _check_pair(z_a, z_b, "embeddings z_a and z_b")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps}; VICReg uses 1e-4")
    with _full_precision(z_a):
        a, b = _float(z_a), _float(z_b)  # [n, D]
        invariance = F.mse_loss(a, b)
        a = _global_batch(a, gather_distributed)  # [N, D]
        b = _global_batch(b, gather_distributed)  # [N, D]
        _check_batch(a.shape[0], "VICReg")
        variance = (_variance_term(a, eps) + _variance_term(b, eps)) / 2
        covariance = _covariance_term(a) + _covariance_term(b)
        return invariance, variance, covariance


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = False,
) -> Tensor:
    r"""VICReg's loss :math:`\lambda s + \mu v + \nu c` (see :class:`VICRegLoss`)."""
    s, v, c = vicreg_terms(z_a, z_b, eps, gather_distributed)
    return invariance_weight * s + variance_weight * v + covariance_weight * c


class VICRegLoss(nn.Module):
    r"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce, LeCun 2022).

    .. math::

        \mathcal{L} = \lambda\, s(Z^a, Z^b) + \mu\, v(Z^a, Z^b) + \nu\, c(Z^a, Z^b)

    with the terms of :func:`vicreg_terms` and :math:`\lambda = \mu = 25`, :math:`\nu = 1`.
    The invariance pulls the two views together; the variance hinge keeps every dimension's
    standard deviation at 1 or more over the batch (a collapsed dimension costs :math:`\mu`
    per branch, averaged); the covariance term decorrelates the dimensions.

    Args:
        invariance_weight: :math:`\lambda` (25).
        variance_weight: :math:`\mu` (25).
        covariance_weight: :math:`\nu` (1).
        eps: :math:`\epsilon` inside the square root of the variance (1e-4).
        gather_distributed: variance and covariance over the global batch.

    Example:
        >>> z = torch.zeros(4, 8)  # collapsed: every dimension constant
        >>> round(VICRegLoss()(z, z).item(), 4)  # only the variance hinge: 25 * (1 - 0.01)
        24.75
    """

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("invariance_weight", invariance_weight),
            ("variance_weight", variance_weight),
            ("covariance_weight", covariance_weight),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"{name} must be a finite number >= 0, got {value}; VICReg uses 25, 25, 1"
                )
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps}; VICReg uses 1e-4")
        self.invariance_weight = invariance_weight
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight
        self.eps = eps
        self.gather_distributed = gather_distributed

    def terms(self, z_a: Tensor, z_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The unweighted ``(invariance, variance, covariance)`` of ``[n, D]`` embeddings."""
        return vicreg_terms(z_a, z_b, self.eps, self.gather_distributed)

    def combine(self, invariance: Tensor, variance: Tensor, covariance: Tensor) -> Tensor:
        """The weighted sum of the three terms."""
        return (
            self.invariance_weight * invariance
            + self.variance_weight * variance
            + self.covariance_weight * covariance
        )

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """``[n, D]`` embeddings of view a and view b -> scalar loss."""
        return self.combine(*self.terms(z_a, z_b))

    def extra_repr(self) -> str:
        return (
            f"weights=({self.invariance_weight}, {self.variance_weight}, "
            f"{self.covariance_weight}), eps={self.eps}, "
            f"gather_distributed={self.gather_distributed}"
        )
