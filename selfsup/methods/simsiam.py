r"""SimSiam: exploring simple Siamese representation learning (Chen & He, 2021).

Two views :math:`x_1, x_2` of each image go through the same encoder :math:`f` (backbone +
projector) and predictor :math:`h`; each view's prediction regresses the other view's
projection, whose gradient is stopped:

.. math::

    z_i = f(x_i), \quad p_i = h(z_i), \qquad
    D(p, z) = -\frac{p}{\lVert p \rVert_2} \cdot \frac{z}{\lVert z \rVert_2}, \qquad
    \mathcal{L} = \tfrac12 D(p_1, \mathrm{sg}(z_2)) + \tfrac12 D(p_2, \mathrm{sg}(z_1)).

Multi-crop (``views.local_crops``, off by default): the stop-gradient projections of the 2
global views are the targets of every other view's prediction, averaged over the pairs
:math:`P` of :func:`~selfsup.views.crop_pairs`,
:math:`\mathcal{L} = \frac{1}{|P|} \sum_{(t, v) \in P} D(p_v, \mathrm{sg}(z_t))` (with 2 views,
the loss above).

No negatives, no momentum encoder, no large batch: the stop-gradient alone prevents collapse.
Without it (``stop_gradient=False``, the paper's Fig. 2 ablation) the loss heads for its
minimum -1 within a few dozen steps and the projections collapse: the projector's last
BatchNorm keeps every dimension's variance at 1, so they collapse to one direction (effective
rank ~1) rather than to a point, and ``embedding_std`` falls well below the healthy
:math:`1/\sqrt{D}` (tested on digits). The projector has BatchNorm
after every layer, the output's without affine parameters; the predictor is a bottleneck
(2048 -> 512 -> 2048) whose learning rate is kept fixed at the peak while the rest follows
the cosine schedule (``fixed_predictor_lr``, :meth:`SimSiam.param_group_options`).

Paper defaults: SGD, lr 0.05 x B/256, momentum 0.9, weight decay 1e-4 (every parameter),
cosine schedule, batch 512, 100 epochs (``SimSiamConfig.standalone``).

Differences from the reference:
    * The learning rate follows the cosine per step; the official code steps it per epoch.
    * Local crops (``views.local_crops``, off by default) extend the paper, which trains on 2
      views.
    * Hidden Linear layers and the projector's last Linear have no bias (BatchNorm follows
      each; the official last projector Linear keeps a frozen random bias, which the
      affine-free BatchNorm cancels).
    * Weights start from PyTorch's defaults (the official ResNet is torchvision's, with
      ``zero_init_residual=True``, which ``backbone.zero_init_residual`` sets in the standalone
      recipe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import check_recipe, check_views
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn.heads import mlp
from selfsup.nn.losses import simsiam_loss
from selfsup.views import MultiViewTransform, crop_pairs, forward_by_size, moco_v2_view

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["SimSiam", "simsiam_predictor", "simsiam_projector"]


def simsiam_projector(
    feature_dim: int, hidden_dim: int = 2048, out_dim: int = 2048, num_layers: int = 3
) -> nn.Sequential:
    """SimSiam projector: ``[Linear - BN - ReLU] x (num_layers - 1) - Linear - BN(no affine)``.

    Encoder features ``[B, feature_dim]`` -> projections ``[B, out_dim]`` (3 layers of 2048 on
    ImageNet; 2 layers in the paper's CIFAR variant). No Linear has a bias: BN follows each.

    Example:
        >>> head = simsiam_projector(512, 64, 32)
        >>> [type(m).__name__ for m in head][-2:], head[-1].affine
        (['Linear', 'BatchNorm1d'], False)
    """
    return mlp(
        feature_dim,
        hidden_dim,
        out_dim,
        num_layers=num_layers,
        batch_norm=True,
        last_batch_norm=True,
        last_batch_norm_affine=False,
    )


def simsiam_predictor(dim: int = 2048, hidden_dim: int = 512) -> nn.Sequential:
    """SimSiam predictor :math:`h`: ``Linear(dim, hidden) - BN - ReLU - Linear(hidden, dim)``,
    a bottleneck (2048 -> 512 -> 2048); the last Linear has a bias, as in the official code.

    Example:
        >>> head = simsiam_predictor(32, 8)
        >>> head(torch.randn(4, 32)).shape, head[-1].bias is not None
        (torch.Size([4, 32]), True)
    """
    return mlp(dim, hidden_dim, dim, num_layers=2, batch_norm=True)


@register_method(
    "simsiam",
    views=lambda cfg: [moco_v2_view(cfg.views.size)] * 2,
    multicrop=MultiCrop(count=0, scale=(0.05, 0.14)),  # off by default; SwAV's local scale
)
class SimSiam(Method):
    r"""SimSiam = backbone + projector + predictor; stop-gradient on the target projection.

    Args:
        backbone: the encoder's backbone (``encoder`` for evaluation).
        projector: features ``[B, F]`` -> projections ``[B, D]`` (:func:`simsiam_projector`).
        predictor: ``[B, D]`` -> ``[B, D]`` (:func:`simsiam_predictor`).
        view_recipe: two views per image (the paper's are MoCo v2's,
            :func:`selfsup.views.moco_v2_view`), then any local crops.
        fixed_predictor_lr: the predictor's parameters keep the peak learning rate (the
            paper's better setting, official ``--fix-pred-lr``).
        stop_gradient: stop the gradient through the target projection; False is the collapse
            ablation.

    Logs ``embedding_std`` (per-dimension std of the L2-normalised projections, the paper's
    collapse monitor: ~``1/sqrt(D)`` when healthy, 0 when collapsed).

    Example:
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform([moco_v2_view(8)] * 2, mean=[0.5], std=[0.25])
        >>> method = SimSiam(backbone, simsiam_projector(32, 32, 16), simsiam_predictor(16, 4),
        ...                  recipe)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> -1 <= out.loss.item() <= 1, method.param_group_options()
        (True, {'predictor': {'fixed_lr': True}})
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        view_recipe: MultiViewTransform,
        fixed_predictor_lr: bool = True,
        stop_gradient: bool = True,
    ) -> None:
        super().__init__(backbone, view_recipe)
        check_recipe(view_recipe, "SimSiam", "selfsup.views.moco_v2_view(size), twice")
        self.projector = projector
        self.predictor = predictor
        self.fixed_predictor_lr = fixed_predictor_lr
        self.stop_gradient = stop_gradient

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> SimSiam:
        s = cfg.simsiam
        return cls(
            backbone,
            simsiam_projector(
                feature_dim(backbone), s.proj_hidden_dim, s.proj_out_dim, s.proj_num_layers
            ),
            simsiam_predictor(s.proj_out_dim, s.pred_hidden_dim),
            view_recipe,
            fixed_predictor_lr=s.fixed_predictor_lr,
            stop_gradient=s.stop_gradient,
        )

    def param_group_options(self) -> dict[str, dict[str, Any]]:
        """The predictor at the peak learning rate when ``fixed_predictor_lr``."""
        return {"predictor": {"fixed_lr": True}} if self.fixed_predictor_lr else {}

    def training_step(self, views: list[Tensor]) -> StepOutput:
        check_views(views, "SimSiam")
        # (h [N, F], z [N, D], p [N, D]) per view. Each global view is its own pass, as in the
        # official code (BatchNorm statistics per view); local crops share one.
        out = forward_by_size(self._encode, views, separate=2)
        pairs = crop_pairs(len(views))  # (target, predicting view): [(0, 1), (1, 0)] at 2 views
        sg = self.stop_gradient
        loss = torch.stack([simsiam_loss(out[v][2], out[t][1], sg) for t, v in pairs]).mean()
        z = torch.cat([z_v for _, z_v, _ in out]).detach()  # [V N, D]
        h1 = out[0][0]
        return StepOutput(loss, {"embedding_std": embedding_std(z)}, z, features=h1.detach())

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.backbone(x)  # [B, feature_dim]
        z = self.projector(h)  # [B, D]
        return h, z, self.predictor(z)  # [B, F], [B, D], [B, D]

    def extra_repr(self) -> str:
        return f"fixed_predictor_lr={self.fixed_predictor_lr}, stop_gradient={self.stop_gradient}"
