r"""The quantised ab colour space of Colorization (Zhang, Isola & Efros 2016) and its encodings.

* :func:`gamut_bins`: the ``Q`` ab bins. ab is cut into square cells of side ``grid`` (10)
  centred on multiples of ``grid``; a cell is in gamut when the ab of some 8-bit sRGB colour
  falls in it. With our sRGB -> Lab conversion (:mod:`selfsup.views.ops.lab`) this gives
  **Q = 261** bins at ``grid = 10``, not the paper's 313: 313 exceeds every count we get from
  the sRGB gamut (261 cells reached; 268 with cells ``[10 i, 10 i + 10)`` instead of centred
  ones; 268 cells touching the convex hull of the gamut's ab projection), so the paper's set
  holds cells no sRGB colour falls into. Such a bin is never a hard target; the 261 here are
  exactly the reachable ones. The cells are found from the 6 faces of the RGB cube (every
  colour with a channel at 0 or 255); the tests check that the whole cube adds none.
* :func:`soft_encode`: a colour's target distribution ``Z``: the ``k = 5`` nearest bins,
  weighted by a Gaussian of their distance (``sigma = 5``), normalised to sum 1.
* :func:`smooth_prior` and :func:`rebalancing_weights`: the class-rebalancing weights

  .. math::

      w \propto \left((1 - \lambda)\, \tilde p + \frac{\lambda}{Q}\right)^{-1}, \qquad
      \mathbb{E}_{\tilde p}[w] = \sum_q \tilde p_q w_q = 1,

  with :math:`\tilde p` the empirical bin distribution smoothed by a Gaussian kernel
  (``sigma = 5``) and ``lambda = 0.5``.
* :func:`annealed_mean`: the picture's ab from predicted logits,
  :math:`\sum_q \mathrm{softmax}(\log z / T)_q\, c_q` with ``T = 0.38`` (``T = 1``: the mean,
  ``T -> 0``: the mode); for ``z = softmax(logits)`` that is ``softmax(logits / T)``.

Every function works on ab values in Lab units, as rows ``[N, 2]``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from selfsup.views.ops.lab import rgb_to_lab

__all__ = [
    "ab_histogram",
    "annealed_mean",
    "gamut_bins",
    "nearest_bins",
    "rebalancing_weights",
    "smooth_prior",
    "soft_encode",
]


def _cube_faces() -> Tensor:
    """Every 8-bit sRGB colour with a channel at 0 or 1: ``[6 * 256^2, 3]`` float64."""
    v = torch.arange(256, dtype=torch.float64) / 255.0
    a, b = (t.reshape(-1) for t in torch.meshgrid(v, v, indexing="ij"))
    faces = []
    for fixed in (0.0, 1.0):
        f = torch.full_like(a, fixed)
        faces += [torch.stack(c, dim=1) for c in ((f, a, b), (a, f, b), (a, b, f))]
    return torch.cat(faces)


def cells_of_colours(rgb: Tensor, grid: float) -> Tensor:
    """Distinct ab cells ``[M, 2]`` (int64 ``round(ab / grid)``) of sRGB colours ``[N, 3]``."""
    lab = rgb_to_lab(rgb.T.reshape(3, -1, 1))  # [3, N, 1]
    ab = lab[1:].reshape(2, -1).T  # [N, 2]
    return torch.round(ab / grid).to(torch.int64).unique(dim=0)


@functools.lru_cache(maxsize=8)
def _gamut_bins(grid: float) -> Tensor:
    cells = cells_of_colours(_cube_faces(), grid)  # [Q, 2], sorted by a then b
    return (cells.to(torch.float64) * grid).to(torch.float32)


def gamut_bins(grid: float = 10.0) -> Tensor:
    """Centres ``[Q, 2]`` (float32, ab units) of the in-gamut cells of side ``grid``, sorted by
    a, then b (261 bins at ``grid = 10``; see the module docstring for the paper's 313).

    Example:
        >>> bins = gamut_bins(10.0)
        >>> bins.shape, bins[:2].tolist()
        (torch.Size([261, 2]), [[-90.0, 80.0], [-80.0, 40.0]])
    """
    if not (math.isfinite(grid) and grid > 0):
        raise ValueError(
            f"grid must be a finite size > 0 in ab units, got {grid}; the paper uses 10"
        )
    return _gamut_bins(float(grid)).clone()


def _squared_distances(ab: Tensor, bins: Tensor) -> Tensor:
    """``ab [N, 2]``, ``bins [Q, 2]`` -> ``[N, Q]`` in float32, element-wise (no matmul, so
    autocast cannot lower its precision)."""
    a, b = ab.float(), bins.float()
    return (a[:, None, 0] - b[None, :, 0]).pow(2) + (a[:, None, 1] - b[None, :, 1]).pow(2)


_CHUNK = 65536  # rows per distance block: [chunk, Q] floats at a time


def nearest_bins(ab: Tensor, bins: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest bins of each ab row: ``(distances [N, k], indices [N, k])``, nearest
    first (Euclidean distance in ab units; computed in blocks of rows to bound memory)."""
    if not 1 <= k <= bins.shape[0]:
        raise ValueError(f"k must be in [1, {bins.shape[0]}] bins, got {k}; the paper uses 5")
    found = [
        _squared_distances(ab[start : start + _CHUNK], bins).topk(k, dim=1, largest=False)
        for start in range(0, ab.shape[0], _CHUNK)
    ]
    d2 = torch.cat([f.values for f in found])  # [N, k]
    return d2.clamp_min(0).sqrt(), torch.cat([f.indices for f in found])


def soft_encode(ab: Tensor, bins: Tensor, k: int = 5, sigma: float = 5.0) -> tuple[Tensor, Tensor]:
    """Soft-encoded targets, sparse: ``(indices [N, k], weights [N, k])`` with weights
    ``exp(-d^2 / (2 sigma^2))`` over the ``k`` nearest bins, normalised to sum 1 per row.
    ``indices[:, 0]`` is the nearest bin (the argmax of the target ``Z``).

    Example:
        >>> bins = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
        >>> index, weight = soft_encode(torch.tensor([[0.0, 0.0]]), bins, k=2, sigma=5.0)
        >>> index.tolist(), [round(w, 4) for w in weight[0].tolist()]  # e^0 : e^-2
        ([[0, 1]], [0.8808, 0.1192])
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be > 0 (ab units), got {sigma}; the paper uses 5")
    distance, index = nearest_bins(ab, bins, k)  # [N, k] each
    weight = torch.softmax(-distance.pow(2) / (2 * sigma**2), dim=1)  # normalised Gaussian
    return index, weight


def ab_histogram(ab: Tensor, bins: Tensor) -> Tensor:
    """Counts ``[Q]`` (int64) of the nearest bin of every ab row ``[N, 2]`` (hard assignment).

    Example:
        >>> bins = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
        >>> ab_histogram(torch.tensor([[1.0, 0.0], [9.0, 3.0], [30.0, 0.0]]), bins)
        tensor([1, 2])
    """
    nearest = nearest_bins(ab.to(bins.device), bins, 1)[1][:, 0]  # [N]
    return torch.bincount(nearest, minlength=bins.shape[0])


def smooth_prior(p: Tensor, bins: Tensor, sigma: float = 5.0) -> Tensor:
    r"""The empirical distribution ``p [Q]`` smoothed over ab: :math:`\tilde p \propto K p`,
    :math:`K_{qk} = \exp(-\lVert c_q - c_k \rVert^2 / 2 \sigma^2)`, normalised to sum 1.

    Example:
        >>> bins = torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
        >>> p = smooth_prior(torch.tensor([1.0, 0.0, 0.0]), bins, sigma=5.0)  # 1 : e^-2 : e^-8
        >>> [round(v, 4) for v in p.tolist()]
        [0.8805, 0.1192, 0.0003]
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be > 0 (ab units), got {sigma}; the paper uses 5")
    if p.ndim != 1 or p.shape[0] != bins.shape[0] or not bool((p >= 0).all()) or p.sum() <= 0:
        raise ValueError(
            f"p must hold {bins.shape[0]} non-negative values with a positive sum (one per bin), "
            f"got shape {tuple(p.shape)}; pass the bin counts or frequencies"
        )
    kernel = torch.exp(-_squared_distances(bins, bins).double() / (2 * sigma**2))  # [Q, Q]
    smoothed = kernel @ (p.double() / p.double().sum())
    return (smoothed / smoothed.sum()).to(torch.float32)


def rebalancing_weights(p_smoothed: Tensor, mix: float = 0.5) -> Tensor:
    r"""Class-rebalancing weights ``[Q]``: :math:`w \propto ((1 - \lambda) \tilde p +
    \lambda / Q)^{-1}`, scaled so that :math:`\sum_q \tilde p_q w_q = 1`. ``mix`` is
    :math:`\lambda \in [0, 1]`: 1 gives every bin weight 1 (no rebalancing), 0 the inverse
    frequency (rare colours weigh most); the paper uses 0.5.

    Example:
        >>> w = rebalancing_weights(torch.tensor([0.75, 0.25]), mix=0.5)
        >>> [round(v, 4) for v in w.tolist()]  # 1/0.625 : 1/0.375, expectation 1
        [0.8571, 1.4286]
    """
    if not (math.isfinite(mix) and 0.0 <= mix <= 1.0):
        raise ValueError(f"mix (lambda) must be in [0, 1], got {mix}; the paper uses 0.5")
    p = p_smoothed.double()
    if mix == 0.0 and bool((p <= 0).any()):
        raise ValueError(
            "lambda = 0 weighs each bin by 1 / p, infinite for a bin of probability 0; use a "
            "lambda > 0 (the paper's 0.5)"
        )
    weight = 1.0 / ((1.0 - mix) * p + mix / p.shape[0])
    return (weight / (p * weight).sum()).to(torch.float32)


def annealed_mean(logits: Tensor, bins: Tensor, temperature: float = 0.38, dim: int = 1) -> Tensor:
    r"""ab from logits over the bins (``Q`` along ``dim``): :math:`\sum_q f_T(z)_q c_q`,
    :math:`f_T(z) = \mathrm{softmax}(\log z / T)` with ``z = softmax(logits)``, i.e.
    ``softmax(logits / T)``. The ``Q`` axis becomes the 2 ab channels, in float32.

    Example:
        >>> bins = torch.tensor([[0.0, 0.0], [10.0, 20.0]])
        >>> annealed_mean(torch.tensor([[0.0, 0.0]]), bins, temperature=1.0)  # the mean
        tensor([[ 5., 10.]])
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be > 0, got {temperature}; 1 is the mean, towards 0 the mode "
            "(the paper uses 0.38)"
        )
    probs = torch.softmax(logits.float() / temperature, dim=dim).movedim(dim, -1)  # [..., Q]
    # element-wise sums over Q, a and b apart ([..., Q] at a time): a matmul would run in bf16
    # under autocast
    centres = bins.float()
    ab = torch.stack([(probs * centres[:, i]).sum(dim=-1) for i in range(2)], dim=-1)
    return ab.movedim(-1, dim)  # [..., 2] -> 2 along dim
