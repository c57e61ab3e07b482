r"""SimCLR: a simple framework for contrastive learning (Chen et al., 2020).

For a batch of N images, two views each: ``h = f(x)`` (backbone), ``z = g(h)`` (projector), and the
NT-Xent loss over the 2N projections, each anchor against its positive and 2N-2 negatives:

.. math::

    \ell_{i,j} = -\log \frac{\exp(\mathrm{sim}(z_i, z_j)/\tau)}
                            {\sum_{k \ne i} \exp(\mathrm{sim}(z_i, z_k)/\tau)},
    \qquad L = \frac{1}{2N} \sum_{(i,j)\,\text{positive}} \ell_{i,j}

with cosine similarity ``sim``. The loss is computed on ``z``; downstream uses ``h``.

Multi-crop (Caron et al. 2020 apply it to SimCLR; ``views.local_crops``, off by default): the
loss above on every unordered pair of views with at least one global view, averaged
(:func:`~selfsup.views.crop_pairs`, ``symmetric=True``); the negatives of a pair are the other
images' views of that pair. With 2 views it is the loss above.

Differences from the reference:
    * The loss is the paper's mean over the 2N anchors. The official code sums the two
      directions' means, twice this value; under LARS, which rescales the step of every weight
      matrix by its trust ratio but not that of biases and BatchNorm parameters (excluded from
      the ratio), the doubled loss doubles their effective learning rate. ``loss_scale="sum"``
      (``simclr.loss_scale=sum``) reproduces the official scale.
    * Both views go through the backbone as one concatenated batch, as the official code does,
      so BatchNorm statistics are over 2N images (local crops: one more batch of their own).
    * Views are computed on the training device from uint8 batches (same distributions).
    * Small-image defaults (colour strength 0.5, no blur, tau 0.5) are presets, not changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import check_recipe, check_views
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn import NTXentLoss, simclr_projector
from selfsup.views import MultiViewTransform, crop_pairs, forward_by_size, simclr_view

if TYPE_CHECKING:
    from selfsup.config import Config

# The official code's loss is the sum of the two directions' means: 2x the mean over 2N anchors.
LOSS_SCALES = {"mean": 1.0, "sum": 2.0}


@register_method(
    "simclr",
    views=lambda cfg: [simclr_view(cfg.views.size)] * 2,
    multicrop=MultiCrop(count=0, scale=(0.05, 0.14)),  # SwAV's multi-crop SimCLR: 0.05-0.14
)
class SimCLR(Method):
    """SimCLR = backbone + projection head + NT-Xent; two views per image.

    Args:
        backbone: the encoder :math:`f` (``encoder`` for evaluation).
        projector: :math:`g`, features ``[B, F]`` -> ``[B, D]`` (:func:`simclr_projector`).
        view_recipe: two views per image (:func:`selfsup.views.simclr_view`, twice), then any
            local crops.
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
        check_recipe(view_recipe, "SimCLR", "selfsup.views.simclr_view(size) twice")
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
        check_views(views, "SimCLR")
        h = forward_by_size(self.backbone, views)  # [N, feature_dim] per view
        z = self.projector(torch.cat(h))  # [V N, proj_out_dim]
        per_view = z.chunk(len(views))
        pairs = crop_pairs(len(views), symmetric=True)  # [(0, 1)] without local crops
        loss = torch.stack([self.criterion(per_view[i], per_view[j]) for i, j in pairs]).mean()
        if self.loss_scale == "sum":
            loss = loss * LOSS_SCALES["sum"]
        z_detached = z.detach()
        logs = {"embedding_std": embedding_std(z_detached)}
        return StepOutput(loss, logs, z_detached, features=h[0].detach())
