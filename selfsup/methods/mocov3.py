r"""MoCo v3: an empirical study of training self-supervised ViTs (Chen, Xie & He 2021).

No queue: the keys are the momentum encoder's outputs for the
other view in the (global) batch. With :math:`q = h(g(f(x)))` (backbone, projector, predictor)
and :math:`k = g_m(f_m(x))` (momentum backbone and projector),

.. math::

    \mathrm{ctr}(q, k) = 2T \cdot \frac1N \sum_{i} -\log
        \frac{\exp(q_i \cdot k_i / T)}{\sum_{j} \exp(q_i \cdot k_j / T)},
    \qquad L = \mathrm{ctr}(q_1, k_2) + \mathrm{ctr}(q_2, k_1),

over L2-normalised vectors, with the momentum rising from :math:`m_0` to 1 on a half cosine.
Multi-crop (``views.local_crops``, off by default): keys from the 2 global views only, every
other view's query against each of them, :math:`L = \frac{2}{|P|} \sum_{(t, v) \in P}
\mathrm{ctr}(q_v, k_t)` over the pairs :math:`P` of :func:`~selfsup.views.crop_pairs` (with 2
views, the loss above).

Differences from the reference:
    * The EMA update runs in ``after_step`` (after the optimiser step) rather than at the start
      of the next forward pass; the update after step ``k`` (0-based) uses :math:`m_{k+1}`,
      which is the official momentum of the forward pass it precedes, so the last update uses
      exactly 1.
    * MoCo v3's defaults follow the official ResNet recipe: a 2-layer projector, a predictor
      without a final BatchNorm, temperature 1.0. Its ViT recipe (``configs/mocov3_vit_*.yaml``)
      is a 3-layer projector, ``last_batch_norm=True``, temperature 0.2 and the frozen random
      patch projection (``backbone.freeze_patch_embed``, the official ``--stop-grad-conv1``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import check_momentum, check_recipe, check_temperature, check_views
from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn.ema import EMATarget
from selfsup.nn.heads import mlp
from selfsup.nn.losses import moco_v3_loss
from selfsup.views import (
    MultiViewTransform,
    ViewSpec,
    byol_local_view,
    byol_views,
    crop_pairs,
    forward_by_size,
)

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["MoCoV3", "moco_v3_predictor", "moco_v3_projector"]


def moco_v3_projector(
    feature_dim: int, hidden_dim: int = 4096, out_dim: int = 256, num_layers: int = 2
) -> nn.Sequential:
    """MoCo v3 projector: ``[Linear - BN - ReLU] * (num_layers - 1) - Linear - BN(no affine)``.

    Encoder features ``[B, feature_dim]`` -> projections ``[B, out_dim]``. No Linear layer has
    a bias (BatchNorm follows each). ``num_layers`` is 3 in the official ViT recipe and 2 in the
    official ResNet recipe.

    Example:
        >>> head = moco_v3_projector(512, 64, 16, num_layers=3)
        >>> [type(m).__name__ for m in head]  # doctest: +NORMALIZE_WHITESPACE
        ['Linear', 'BatchNorm1d', 'ReLU', 'Linear', 'BatchNorm1d', 'ReLU', 'Linear',
         'BatchNorm1d']
        >>> head[-1].affine, head(torch.randn(4, 512)).shape
        (False, torch.Size([4, 16]))
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


def moco_v3_predictor(
    dim: int = 256, hidden_dim: int = 4096, last_batch_norm: bool = False
) -> nn.Sequential:
    """MoCo v3 predictor: ``Linear(dim, hidden) - BN - ReLU - Linear(hidden, dim)``, no biases.

    Projections ``[B, dim]`` -> queries ``[B, dim]``. ``last_batch_norm`` appends a
    BatchNorm without affine parameters, as the official ViT recipe does (not ResNet's).

    Example:
        >>> head = moco_v3_predictor(16, 64)
        >>> [type(m).__name__ for m in head], head[-1].bias
        (['Linear', 'BatchNorm1d', 'ReLU', 'Linear'], None)
    """
    return mlp(
        dim,
        hidden_dim,
        dim,
        num_layers=2,
        batch_norm=True,
        last_batch_norm=last_batch_norm,
        last_batch_norm_affine=False,
        bias=False,
    )


def _local_view(cfg: Config, size: int, scale: tuple[float, float]) -> ViewSpec:
    return byol_local_view(size, scale)


@register_method(
    "mocov3",
    views=lambda cfg: byol_views(cfg.views.size),
    multicrop=MultiCrop(count=0, scale=(0.05, 0.14), local_view=_local_view),
)
class MoCoV3(Method):
    r"""MoCo v3: backbone + projector + predictor, momentum backbone + projector, no queue.

    Both views go through both networks in separate forward passes (BatchNorm statistics per
    view, as in the official code); the loss is symmetric,
    ``moco_v3_loss(q1, k2) + moco_v3_loss(q2, k1)``, with the keys gathered from all processes.

    Args:
        backbone: the online backbone (``encoder`` for evaluation).
        projector: features ``[B, F]`` -> ``[B, D]`` (:func:`moco_v3_projector`).
        predictor: ``[B, D]`` -> ``[B, D]`` (:func:`moco_v3_predictor`).
        view_recipe: two views per image (BYOL's asymmetric pair,
            :func:`selfsup.views.byol_views`).
        temperature: :math:`T > 0`; 1.0 (official ResNet recipe, the default), 0.2 (official
            ViT recipe).
        momentum_base: momentum :math:`m_0 \in [0, 1]` at the first step, rising to 1 on a
            half cosine (0.99; 0.996 for 1000 epochs).
        gather_distributed: contrast the local queries with the keys of all processes.

    Logs ``embedding_std`` of the queries :math:`q` and ``target_momentum`` (the momentum of
    the latest EMA update, ``momentum_base`` before the first).

    Example:
        >>> from selfsup.views import ViewSpec
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform([ViewSpec(size=8, blur_p=0.0)] * 2, [0.5], [0.25])
        >>> method = MoCoV3(backbone, moco_v3_projector(32, 64, 16), moco_v3_predictor(16, 64),
        ...                 recipe)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.shape, out.embeddings.shape
        (torch.Size([]), torch.Size([8, 16]))
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        view_recipe: MultiViewTransform,
        temperature: float = 1.0,
        momentum_base: float = 0.99,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone, view_recipe)
        check_recipe(view_recipe, "MoCo v3", "selfsup.views.byol_views(size)")
        check_temperature(temperature, "MoCo v3 uses 0.2 (ViT) or 1.0 (ResNet)")
        check_momentum(momentum_base, "momentum_base", "MoCo v3 starts at 0.99")
        self.projector = projector
        self.predictor = predictor
        self.temperature = float(temperature)
        self.momentum_base = float(momentum_base)
        self.gather_distributed = gather_distributed
        # Momentum backbone -> projector: no gradient, cosine momentum, moved by after_step.
        self.target = EMATarget(nn.Sequential(backbone, projector), momentum_base, "cosine")

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> MoCoV3:
        v3 = cfg.mocov3
        dim = feature_dim(backbone)
        return cls(
            backbone,
            moco_v3_projector(dim, v3.proj_hidden_dim, v3.proj_out_dim, v3.proj_num_layers),
            moco_v3_predictor(v3.proj_out_dim, v3.pred_hidden_dim, v3.pred_last_batch_norm),
            view_recipe,
            temperature=v3.temperature,
            momentum_base=v3.momentum_base,
            gather_distributed=v3.gather_distributed,
        )

    def training_step(self, views: list[Tensor]) -> StepOutput:
        check_views(views, "MoCo v3")
        # One pass per global view (BatchNorm statistics per view, as the official code), the
        # local crops together: (features [N, F], queries [N, D]) per view.
        online = forward_by_size(self._online, views, separate=2)
        with torch.no_grad():  # keys: momentum encoder on the global views, no gradient
            keys = [self.target(x) for x in views[:2]]  # [N, D] each
        t, gather = self.temperature, self.gather_distributed
        pairs = crop_pairs(len(views))  # [(0, 1), (1, 0)] without local crops
        losses = [moco_v3_loss(online[v][1], keys[k], t, gather) for k, v in pairs]
        loss = 2 * torch.stack(losses).mean()
        q = torch.cat([query for _, query in online]).detach()  # [V N, D]
        h1 = online[0][0]
        logs = {
            "embedding_std": embedding_std(q),
            "target_momentum": self.target.momentum.detach().clone(),
        }
        return StepOutput(loss, logs, q, features=h1.detach())

    def _online(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)  # [B, feature_dim]
        return h, self.predictor(self.projector(h))  # [B, F], [B, D]

    def after_step(self, progress: Progress) -> None:
        r"""EMA of backbone and projector into the target with the cosine momentum
        :math:`m_{k+1}` (parameters only; the target keeps its BN statistics)."""
        self.target.update(progress.step, progress.total_steps)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, momentum_base={self.momentum_base}, "
            f"gather_distributed={self.gather_distributed}"
        )
