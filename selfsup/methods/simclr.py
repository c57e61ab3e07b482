r"""SimCLR: a simple framework for contrastive learning (Chen et al., 2020).

For a batch of N images, two views each: ``h = f(x)`` (backbone), ``z = g(h)`` (projector), and the
NT-Xent loss over the 2N projections, each anchor against its positive and 2N-2 negatives:

.. math::

    \ell_{i,j} = -\log \frac{\exp(\mathrm{sim}(z_i, z_j)/\tau)}
                            {\sum_{k \ne i} \exp(\mathrm{sim}(z_i, z_k)/\tau)},
    \qquad L = \frac{1}{2N} \sum_{(i,j)\,\text{positive}} \ell_{i,j}

with cosine similarity ``sim``. The loss is computed on ``z``; downstream uses ``h``.

Differences from the reference:
    * Both views go through the backbone as one concatenated batch, as the official code does,
      so BatchNorm statistics are over 2N images.
    * Views are computed on the training device from uint8 batches (same distributions).
    * Small-image defaults (colour strength 0.5, no blur, tau 0.5) are presets, not changes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.nn import NTXentLoss
from selfsup.views import MultiViewTransform


class SimCLR(Method):
    """SimCLR = backbone + projection head + NT-Xent; two views per image."""

    name = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        view_recipe: MultiViewTransform,
        temperature: float = 0.5,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone, view_recipe)
        if view_recipe.num_views != 2:
            raise ValueError(
                f"SimCLR uses exactly 2 views, the recipe makes {view_recipe.num_views}"
            )
        self.projector = projector
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)

    def training_step(self, views: list[Tensor]) -> StepOutput:
        x1, x2 = views  # [N, C, H, W] each
        h = self.backbone(torch.cat([x1, x2]))  # [2N, feature_dim]
        z = self.projector(h)  # [2N, proj_out_dim]
        z1, z2 = z.chunk(2)
        loss = self.criterion(z1, z2)
        z_detached = z.detach()
        return StepOutput(loss, {"embedding_std": embedding_std(z_detached)}, z_detached)
