r"""Barlow Twins: self-supervised learning via redundancy reduction (Zbontar et al., 2021).

Two views :math:`y^A, y^B` of each image go through the same backbone and projector; each
embedding dimension is standardised over the (global) batch and the cross-correlation of the
two views is driven to the identity:

.. math::

    z^A = g(f(y^A)), \quad z^B = g(f(y^B)), \qquad
    C_{ij} = \frac{\sum_b \hat z^A_{b,i} \hat z^B_{b,j}}{N}, \qquad
    \mathcal{L} = \sum_i (1 - C_{ii})^2 + \lambda \sum_i \sum_{j \ne i} C_{ij}^2,

with :math:`\hat z` the embeddings standardised per dimension over the batch
(``BatchNorm1d(affine=False)``) and :math:`\lambda = 0.0051`. The diagonal makes the views
agree, the off-diagonal decorrelates the dimensions: a constant (collapsed) dimension has
:math:`C_{ii} = 0` and costs 1, so collapse is never a minimum. No negatives, no momentum
network, no stop-gradient, no predictor.

Multi-crop (``views.local_crops``, off by default): the loss of every unordered pair with a
global view (:func:`~selfsup.views.crop_pairs`, ``symmetric=True``), averaged; with 2 views,
the loss above.

Paper defaults (``BarlowConfig.standalone``): projector 8192-8192-8192, LARS, learning rate
0.2 x B/256 for the weights and 0.0048 x B/256 for biases and BatchNorm parameters (which LARS
leaves out of weight decay and its trust ratio), weight decay 1.5e-6, 10 warm-up epochs, cosine
to 1/1000 of the peak, batch 2048, 1000 epochs.

The scaling note: the paper's research code multiplied the loss by 1/32 ≈ 0.024 (for
:math:`D = 8192`; the authors later gave 196/D as its rule for other widths). Under LARS the
scale of the loss does not change the weights' steps (the trust ratio divides it out) but
scales those of biases and BN parameters: the released code drops the loss scale and gives them
the learning rate 0.2 x 0.024 = 0.0048 instead, which ``optim.norm_and_bias_lr_scale = 0.024``
reproduces. With another projector width :math:`D`, ``optim.norm_and_bias_lr_scale = 196 / D``
matches the research code's scale. :math:`\lambda` was tuned for :math:`D = 8192` only.

Differences from the reference:
    * The cross-correlation is computed from embeddings gathered with gradient across
      processes, so every process holds the global :math:`C` and the averaged gradient is that
      of the global loss; the official code sums per-process :math:`C` with an all-reduce
      outside autograd and standardises with SyncBatchNorm. The values are the same.
    * The loss is computed in float32 under mixed precision (the official code under autocast).
    * Local crops (``views.local_crops``, off by default) extend the paper, which trains on 2
      views.
    * The official ``--weight-decay`` default is 1e-6; the paper states 1.5e-6, used here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import check_recipe, check_views
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn.heads import mlp
from selfsup.nn.losses import BarlowTwinsLoss
from selfsup.views import MultiViewTransform, byol_views, crop_pairs, forward_by_size

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["BarlowTwins", "barlow_projector"]


def barlow_projector(
    feature_dim: int, hidden_dim: int = 8192, out_dim: int = 8192, num_layers: int = 3
) -> nn.Sequential:
    """Barlow Twins / VICReg projector: ``[Linear - BN - ReLU] x (num_layers - 1) - Linear``,
    no biases (BN follows the hidden layers; the official last Linear has none).

    Encoder features ``[B, feature_dim]`` -> embeddings ``[B, out_dim]`` (8192-8192-8192 in
    both papers).

    Example:
        >>> head = barlow_projector(512, 64, 32)
        >>> [type(m).__name__ for m in head][-3:], head[-1].bias
        (['BatchNorm1d', 'ReLU', 'Linear'], None)
    """
    return mlp(feature_dim, hidden_dim, out_dim, num_layers=num_layers, bias=False)


@register_method(
    "barlow",
    views=lambda cfg: byol_views(cfg.views.size),
    multicrop=MultiCrop(count=0, scale=(0.05, 0.14)),  # off by default; SwAV's local scale
)
class BarlowTwins(Method):
    r"""Barlow Twins = backbone + projector + the cross-correlation loss.

    Args:
        backbone: the encoder (``encoder`` for evaluation).
        projector: features ``[B, F]`` -> embeddings ``[B, D]`` (:func:`barlow_projector`).
        view_recipe: two views per image (the paper's are BYOL's asymmetric pair,
            :func:`selfsup.views.byol_views`), then any local crops.
        off_diagonal_weight: :math:`\lambda \ge 0` (0.0051 for :math:`D = 8192`).
        gather_distributed: batch statistics over every process (the global batch).

    Logs ``on_diagonal`` (:math:`\sum_i (1 - C_{ii})^2`, from :math:`D` at the start towards
    0), ``off_diagonal`` (:math:`\sum_{i \ne j} C_{ij}^2`) and ``embedding_std``.

    Example:
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform(byol_views(8), mean=[0.5], std=[0.25])
        >>> method = BarlowTwins(backbone, barlow_projector(32, 32, 16), recipe)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.shape, sorted(out.logs)
        (torch.Size([]), ['embedding_std', 'off_diagonal', 'on_diagonal'])
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        view_recipe: MultiViewTransform,
        off_diagonal_weight: float = 0.0051,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone, view_recipe)
        check_recipe(view_recipe, "Barlow Twins", "selfsup.views.byol_views(size)")
        self.projector = projector
        self.criterion = BarlowTwinsLoss(off_diagonal_weight, gather_distributed)

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> BarlowTwins:
        b = cfg.barlow
        projector = barlow_projector(
            feature_dim(backbone), b.proj_hidden_dim, b.proj_out_dim, b.proj_num_layers
        )
        return cls(backbone, projector, view_recipe, b.off_diagonal_weight, b.gather_distributed)

    def training_step(self, views: list[Tensor]) -> StepOutput:
        check_views(views, "Barlow Twins")
        # (h [N, F], z [N, D]) per view. Each global view is its own pass, as in the official
        # code (BatchNorm statistics per view); local crops share one.
        out = forward_by_size(self._encode, views, separate=2)
        pairs = crop_pairs(len(views), symmetric=True)  # [(0, 1)] at 2 views
        terms = [self.criterion.terms(out[i][1], out[j][1]) for i, j in pairs]
        on_diagonal = torch.stack([on for on, _ in terms]).mean()
        off_diagonal = torch.stack([off for _, off in terms]).mean()
        loss = self.criterion.combine(on_diagonal, off_diagonal)  # the mean over the pairs
        z = torch.cat([z_v for _, z_v in out]).detach()  # [V N, D]
        logs = {
            "on_diagonal": on_diagonal.detach(),
            "off_diagonal": off_diagonal.detach(),
            "embedding_std": embedding_std(z),
        }
        return StepOutput(loss, logs, z, features=out[0][0].detach())

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)  # [B, feature_dim]
        return h, self.projector(h)  # [B, F], [B, D]
