r"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, 2022).

Two views go through the same backbone and expander (projector); three terms on the embeddings
:math:`Z, Z' \in \mathbb{R}^{N \times D}` of the (global) batch:

.. math::

    s(Z, Z') = \frac{1}{N D} \sum_b \lVert z_b - z'_b \rVert_2^2, \qquad
    v(Z) = \frac1D \sum_j \max\bigl(0, 1 - \sqrt{\mathrm{Var}(z_{:,j}) + \epsilon}\bigr),

.. math::

    c(Z) = \frac1D \sum_{i \ne j} \mathrm{Cov}(Z)_{ij}^2, \qquad
    \mathcal{L} = \lambda\, s(Z, Z') + \mu\, \tfrac12 \bigl(v(Z) + v(Z')\bigr)
        + \nu \bigl(c(Z) + c(Z')\bigr),

with :math:`\lambda = \mu = 25`, :math:`\nu = 1`, :math:`\epsilon = 10^{-4}`. The invariance
pulls the views together; the variance hinge keeps every dimension's standard deviation at 1
or above over the batch (collapse costs :math:`\mu (1 - \sqrt\epsilon)`); the covariance term
decorrelates the dimensions. Each branch is regularised on its own: no negatives, no momentum
network, no stop-gradient, no BatchNorm on the embeddings.

Multi-crop (``views.local_crops``, off by default): the loss of every unordered pair with a
global view (:func:`~selfsup.views.crop_pairs`, ``symmetric=True``), averaged; with 2 views,
the loss above.

Paper defaults (``VICRegConfig.standalone``): expander 8192-8192-8192, LARS 0.2 x B/256 (biases
and BN parameters outside weight decay and the trust ratio), weight decay 1e-6, 10 warm-up
epochs, cosine to 1/1000 of the peak, batch 2048, 1000 epochs.

Differences from the reference:
    * The terms are the official code's, which scale two of the paper's equations: the
      invariance is the mean over the :math:`N D` entries (the paper's :math:`s` sums over
      :math:`D`), and the variance term is the *mean* of the two branches (the paper sums
      them: :math:`\mu` here is the paper's :math:`2\mu`). The published 25/25/1 are the code's.
    * Variance and covariance are over the global batch (gathered with gradient), the
      invariance over this process's rows, as in the official code; float32 under mixed
      precision.
    * Local crops (``views.local_crops``, off by default) extend the paper, which trains on 2
      views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import check_recipe, check_views
from selfsup.methods.barlow import barlow_projector
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn.losses import VICRegLoss
from selfsup.views import MultiViewTransform, byol_views, crop_pairs, forward_by_size

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["VICReg"]


@register_method(
    "vicreg",
    views=lambda cfg: byol_views(cfg.views.size),
    multicrop=MultiCrop(count=0, scale=(0.05, 0.14)),  # off by default; SwAV's local scale
)
class VICReg(Method):
    r"""VICReg = backbone + expander + the variance-invariance-covariance loss.

    Args:
        backbone: the encoder (``encoder`` for evaluation).
        projector: the expander, features ``[B, F]`` -> embeddings ``[B, D]``
            (:func:`~selfsup.methods.barlow.barlow_projector`: the same 3 x 8192 layout).
        view_recipe: two views per image (BYOL's asymmetric pair, as in the official code),
            then any local crops.
        invariance_weight: :math:`\lambda` (25).
        variance_weight: :math:`\mu` (25).
        covariance_weight: :math:`\nu` (1).
        eps: :math:`\epsilon` of the std (1e-4).
        gather_distributed: variance and covariance over every process (the global batch).

    Logs the unweighted ``invariance``, ``variance`` (0 when every dimension has std >= 1,
    ~1 when collapsed) and ``covariance``, and ``embedding_std``.

    Example:
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform(byol_views(8), mean=[0.5], std=[0.25])
        >>> method = VICReg(backbone, barlow_projector(32, 32, 16), recipe)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.shape, sorted(out.logs)
        (torch.Size([]), ['covariance', 'embedding_std', 'invariance', 'variance'])
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        view_recipe: MultiViewTransform,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone, view_recipe)
        check_recipe(view_recipe, "VICReg", "selfsup.views.byol_views(size)")
        self.projector = projector
        self.criterion = VICRegLoss(
            invariance_weight, variance_weight, covariance_weight, eps, gather_distributed
        )

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> VICReg:
        v = cfg.vicreg
        return cls(
            backbone,
            barlow_projector(
                feature_dim(backbone), v.proj_hidden_dim, v.proj_out_dim, v.proj_num_layers
            ),
            view_recipe,
            invariance_weight=v.invariance_weight,
            variance_weight=v.variance_weight,
            covariance_weight=v.covariance_weight,
            eps=v.eps,
            gather_distributed=v.gather_distributed,
        )

    def training_step(self, views: list[Tensor]) -> StepOutput:
        check_views(views, "VICReg")
        # (h [N, F], z [N, D]) per view. Each global view is its own pass, as in the official
        # code (BatchNorm statistics per view); local crops share one.
        out = forward_by_size(self._encode, views, separate=2)
        pairs = crop_pairs(len(views), symmetric=True)  # [(0, 1)] at 2 views
        terms = [self.criterion.terms(out[i][1], out[j][1]) for i, j in pairs]
        invariance, variance, covariance = (torch.stack(t).mean() for t in zip(*terms))
        loss = self.criterion.combine(invariance, variance, covariance)  # mean over the pairs
        z = torch.cat([z_v for _, z_v in out]).detach()  # [V N, D]
        logs = {
            "invariance": invariance.detach(),
            "variance": variance.detach(),
            "covariance": covariance.detach(),
            "embedding_std": embedding_std(z),
        }
        return StepOutput(loss, logs, z, features=out[0][0].detach())

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)  # [B, feature_dim]
        return h, self.projector(h)  # [B, F], [B, D]
