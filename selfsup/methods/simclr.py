r"""SimCLR: a simple framework for contrastive learning (Chen et al., 2020).

For a batch of N images, two views each: ``h = f(x)`` (backbone), ``z = g(h)`` (projector), and the
NT-Xent loss over the 2N projections, each anchor against its positive and 2N-2 negatives:

.. math::

    \ell_{i,j} = -\log \frac{\exp(\mathrm{sim}(z_i, z_j)/\tau)}
                            {\sum_{k \ne i} \exp(\mathrm{sim}(z_i, z_k)/\tau)},
    \qquad L = \frac{1}{2N} \sum_{(i,j)\,\text{positive}} \ell_{i,j}

with cosine similarity ``sim``. The loss is computed on ``z``; downstream uses ``h``.

Differences from the reference:
    * The loss is the paper's mean over the 2N anchors. The official code sums the two
      directions' means, twice this value; under LARS, which rescales the step of every weight
      matrix by its trust ratio but not that of biases and BatchNorm parameters (excluded from
      the ratio), the doubled loss doubles their effective learning rate. ``loss_scale="sum"``
      (``simclr.loss_scale=sum``) reproduces the official scale.
    * Both views go through the backbone as one concatenated batch, as the official code does,
      so BatchNorm statistics are over 2N images.
    * Views are computed on the training device from uint8 batches (same distributions).
    * Small-image defaults (colour strength 0.5, no blur, tau 0.5) are presets, not changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import register_method
from selfsup.nn import NTXentLoss, simclr_projector
from selfsup.views import MultiViewTransform, simclr_view

if TYPE_CHECKING:
    from selfsup.config import Config

# The official code's loss is the sum of the two directions' means: 2x the mean over 2N anchors.
LOSS_SCALES = {"mean": 1.0, "sum": 2.0}


@register_method("simclr", views=lambda cfg: [simclr_view(cfg.views.size)] * 2)
class SimCLR(Method):
    """SimCLR = backbone + projection head + NT-Xent; two views per image.

    Args:
        backbone: the encoder :math:`f` (``encoder`` for evaluation).
        projector: :math:`g`, features ``[B, F]`` -> ``[B, D]`` (:func:`simclr_projector`).
        view_recipe: two views per image (:func:`selfsup.views.simclr_view`, twice).
        temperature: :math:`\tau > 0`; 0.5 for small images, 0.1 on ImageNet.
        gather_distributed: negatives from every process, gathered with gradient.
        loss_scale: ``"mean"`` the paper's loss; ``"sum"`` the official code's (2x).
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        view_recipe: MultiViewTransform,
        temperature: float = 0.5,
        gather_distributed: bool = True,
        loss_scale: Literal["mean", "sum"] = "mean",
    ) -> None:
        super().__init__(backbone, view_recipe)
        if view_recipe.num_views != 2:
            raise ValueError(
                f"SimCLR uses exactly 2 views, the recipe makes {view_recipe.num_views}"
            )
        if loss_scale not in LOSS_SCALES:
            raise ValueError(
                f"loss_scale must be 'mean' (paper) or 'sum' (official code), got {loss_scale!r}"
            )
        self.projector = projector
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)
        self.loss_scale = loss_scale

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> SimCLR:
        s = cfg.simclr
        projector = simclr_projector(
            feature_dim(backbone), s.projector, s.proj_hidden_dim, s.proj_out_dim
        )
        return cls(
            backbone, projector, view_recipe, s.temperature, s.gather_distributed, s.loss_scale
        )

    def training_step(self, views: list[Tensor]) -> StepOutput:
        x1, x2 = views  # [N, C, H, W] each
        h = self.backbone(torch.cat([x1, x2]))  # [2N, feature_dim]
        z = self.projector(h)  # [2N, proj_out_dim]
        z1, z2 = z.chunk(2)
        loss = self.criterion(z1, z2)
        if self.loss_scale == "sum":
            loss = loss * LOSS_SCALES["sum"]
        z_detached = z.detach()
        logs = {"embedding_std": embedding_std(z_detached)}
        return StepOutput(loss, logs, z_detached, features=h[: x1.shape[0]].detach())
