r"""Representation and collapse metrics of a set of embeddings.

With :math:`z_i = f(x_i) / \lVert f(x_i) \rVert` the L2-normalised embeddings of N images
(``[N, D]``):

* **embedding std** (SimSiam, Chen & He 2021): the mean over dimensions of the standard
  deviation of :math:`z`, reported times :math:`\sqrt{D}` (``std_ratio``), so that 1 is what
  isotropic Gaussian embeddings give and 0 is a constant encoder.
* **RankMe** (Garrido et al. 2023): :math:`\exp(-\sum_k p_k \log p_k)` with
  :math:`p_k = \sigma_k / \sum_j \sigma_j + \epsilon` the normalised singular values of the
  (unnormalised) embedding matrix; the effective number of dimensions in use, in
  ``[1, min(N, D)]``; reported also as ``rankme_ratio = rankme / min(N, D)``.
* **alignment** (Wang & Isola 2020): :math:`\mathbb{E} \lVert z_i - z_i^+ \rVert^2` over two
  augmented views of the same image (0 = views map to the same point; the maximum is 4).
* **uniformity** (Wang & Isola 2020): :math:`\log \mathbb{E}_{i \ne j} e^{-2 \lVert z_i - z_j
  \rVert^2}` (0 = all points equal; lower = more uniform on the sphere; about -4 for
  well-spread features in high dimension).

Thresholds (``diagnose``), documented in docs/methods.md: ``std_ratio < 0.01`` is a constant
(complete) collapse; ``rankme_ratio < 0.02`` with ``std_ratio >= 0.01`` is a dimensional
collapse (the features live in a handful of directions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from selfsup.config import Config
    from selfsup.data import ImageDataset

__all__ = [
    "COLLAPSE_STD_RATIO",
    "DIMENSIONAL_RANKME_RATIO",
    "alignment",
    "collapse_metrics",
    "diagnose",
    "rankme",
    "two_view_features",
    "uniformity",
]

COLLAPSE_STD_RATIO = 0.01  # a constant encoder: ~1e-4; untrained ViT: 0.02-0.05; ResNet: ~0.1
DIMENSIONAL_RANKME_RATIO = 0.02
_UNIFORMITY_ROWS = 4096  # pairs of at most this many rows (the metric is a mean over pairs)


def std_ratio(features: Tensor) -> float:
    """Mean per-dimension std of the L2-normalised features, times sqrt(D)."""
    z = F.normalize(features.float(), dim=1)
    return float(z.std(dim=0, unbiased=False).mean() * math.sqrt(z.shape[1]))


def rankme(features: Tensor, eps: float = 1e-7) -> float:
    """RankMe: exp(entropy) of the normalised singular values of ``features [N, D]``."""
    s = torch.linalg.svdvals(features.double())
    p = s / s.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(view1: Tensor, view2: Tensor) -> float:
    """Mean squared distance of the normalised embeddings of two views of the same images."""
    z1, z2 = F.normalize(view1.float(), dim=1), F.normalize(view2.float(), dim=1)
    return float((z1 - z2).pow(2).sum(dim=1).mean())


def uniformity(features: Tensor, t: float = 2.0) -> float:
    """log of the mean Gaussian potential exp(-t |z_i - z_j|^2) over pairs i != j."""
    z = F.normalize(features[:_UNIFORMITY_ROWS].float(), dim=1)
    n = z.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least 2 embeddings")
    sq = torch.cdist(z, z).pow(2)  # [n, n]
    off = ~torch.eye(n, dtype=torch.bool)
    return float(torch.logsumexp(-t * sq[off], dim=0) - math.log(n * (n - 1)))


def collapse_metrics(features: Tensor, views: tuple[Tensor, Tensor] | None = None) -> dict:
    """``embedding_std`` (x sqrt(D)), ``rankme``, ``rankme_ratio``, ``uniformity`` of
    ``features [N, D]``, and ``alignment`` when two views' embeddings are given."""
    n, d = features.shape
    rank = rankme(features)
    out = {
        "embedding_std": std_ratio(features),
        "rankme": rank,
        "rankme_ratio": rank / min(n, d),
        "uniformity": uniformity(features),
    }
    if views is not None:
        out["alignment"] = alignment(*views)
    return out


def diagnose(metrics: dict) -> list[str]:
    """Warnings for a constant or a dimensional collapse, with the likely causes."""
    warnings = []
    std = metrics.get("embedding_std")
    ratio = metrics.get("rankme_ratio")
    if std is not None and std < COLLAPSE_STD_RATIO:
        warnings.append(
            f"complete collapse: embedding std x sqrt(D) = {std:.3f} < {COLLAPSE_STD_RATIO} (every "
            "image maps to nearly one point). Likely causes: learning rate too high, a missing "
            "predictor or stop-gradient (BYOL/SimSiam), a target momentum too low, too few "
            "negatives or a temperature far off"
        )
    elif ratio is not None and ratio < DIMENSIONAL_RANKME_RATIO:
        warnings.append(
            f"dimensional collapse: RankMe {metrics['rankme']:.1f} is {100 * ratio:.1f}% of the "
            "dimensions (< 2%). Likely causes: a projector too small or without BatchNorm, too "
            "weak augmentation, weight decay too low for a non-contrastive method"
        )
    return warnings


def two_view_features(
    encoder: nn.Module,
    dataset: ImageDataset,
    indices: Tensor,
    cfg: Config,
    device: torch.device | str,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Features of two augmented views of ``dataset[indices]`` for :func:`alignment`: the
    method's first two view recipes (MAE: its one view, drawn twice), each from a generator
    seeded with ``train.seed + 2 + k``, through the encoder in eval mode."""
    from selfsup import build
    from selfsup.data import iterate_batches
    from selfsup.eval.features import extract_features
    from selfsup.views import MultiViewTransform

    assert cfg.views.mean is not None and cfg.views.std is not None
    device = torch.device(device)
    specs = build.method_view_specs(cfg)[:2]
    specs = specs * 2 if len(specs) == 1 else specs
    views = []
    for k, spec in enumerate(specs):
        recipe = MultiViewTransform([spec], cfg.views.mean, cfg.views.std)
        generator = torch.Generator(device=device).manual_seed(cfg.train.seed + 2 + k)

        def one_view(
            images: Tensor,
            recipe: MultiViewTransform = recipe,
            generator: torch.Generator = generator,
        ) -> Tensor:
            return recipe(images, generator)[0]

        features, _ = extract_features(
            encoder,
            iterate_batches(dataset, cfg.eval.batch_size, device, indices),
            one_view,
            device,
            channels_last=cfg.train.channels_last,
            progress=progress,
        )
        views.append(features)
    return views[0], views[1]
