r"""BYOL: Bootstrap Your Own Latent (Grill et al., 2020).

Two views :math:`v, v'` of each image. The *online* network (backbone :math:`f_\theta`,
projector :math:`g_\theta`, predictor :math:`q_\theta`) predicts the *target* network's
projection of the other view; the target (:math:`f_\xi, g_\xi`) receives no gradient and
follows the online parameters by an exponential moving average:

.. math::

    z = g_\theta(f_\theta(v)), \quad p = q_\theta(z), \quad
    z'_\xi = g_\xi(f_\xi(v')), \qquad
    \ell(p, z'_\xi) = 2 - 2\, \frac{\langle p, z'_\xi \rangle}
                                  {\lVert p \rVert_2\, \lVert z'_\xi \rVert_2}

.. math::

    L = \ell(p_1, \mathrm{sg}(z'_{\xi,2})) + \ell(p_2, \mathrm{sg}(z'_{\xi,1}))
    \quad \text{(batch means)}, \qquad
    \xi \leftarrow \tau_k\, \xi + (1 - \tau_k)\, \theta,
    \quad \tau_k = 1 - (1 - \tau_{base})\, \frac{\cos(\pi k / K) + 1}{2}.

Multi-crop (``views.local_crops``, off by default): the target sees the 2 global views only;
every other view's prediction regresses each of them,
:math:`L = \frac{2}{|P|} \sum_{(t, v) \in P} \ell(p_v, \mathrm{sg}(z'_{\xi,t}))` over the pairs
:math:`P` of :func:`~selfsup.views.crop_pairs` (with 2 views, the loss above).

Only parameters are averaged; the target keeps its own BatchNorm running statistics, computed
from the batches it sees. Collapse (a constant output) is avoided by the predictor, the
stop-gradient and the slow target together: with ``predictor=nn.Identity()`` and
:math:`\tau = 0` the projections go constant (tested).

Differences from the reference:
    * The momentum after the optimiser step with 0-based index ``k`` is :math:`\tau_{k+1}`
      (``k + 1`` steps done), so the last update uses exactly :math:`\tau_K = 1`; the official
      code uses :math:`\tau_k` and stops one step short of 1. The two schedules differ by
      one step out of :math:`K`.
    * Hidden Linear layers of the projector and predictor have no bias: the BatchNorm after
      them subtracts the batch mean, which cancels a bias (the official heads keep one). The
      last Linear has no bias either, as in the official heads.
    * Colour jitter uses torchvision's brightness/contrast/saturation/hue formulas (blend
      with black, the mean grey, the grey image; a hue rotation in HSV); the official code
      uses its own TensorFlow formulas, with brightness as an additive shift and contrast
      around each image's per-channel mean. The parameter ranges and probabilities are the
      paper's.
    * Weights are initialised with PyTorch's defaults, not the official truncated normal.
    * The official code's online linear classifier is not part of the method; evaluation
      runs on the exported encoder (k-NN, linear probe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import check_momentum, check_recipe, check_schedule, check_views
from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn.ema import EMATarget
from selfsup.nn.heads import mlp
from selfsup.nn.losses import byol_loss
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

__all__ = ["BYOL", "byol_predictor", "byol_projector"]


def byol_projector(feature_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> nn.Sequential:
    """BYOL projector :math:`g`: ``Linear(feature_dim, hidden) - BN - ReLU - Linear(hidden, out)``,
    the last Linear without bias (official heads).

    Encoder features ``[B, feature_dim]`` -> projections ``[B, out_dim]`` (4096 and 256 in the
    paper).

    Example:
        >>> byol_projector(512, 64, 16)(torch.randn(4, 512)).shape
        torch.Size([4, 16])
    """
    return mlp(feature_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True, bias=False)


def byol_predictor(dim: int = 256, hidden_dim: int = 4096) -> nn.Sequential:
    """BYOL predictor :math:`q`: ``Linear(dim, hidden) - BN - ReLU - Linear(hidden, dim)``.

    Same layout as the projector, from the projection dimension back to itself.

    Example:
        >>> head = byol_predictor(16, 64)
        >>> [type(m).__name__ for m in head], head[-1].bias
        (['Linear', 'BatchNorm1d', 'ReLU', 'Linear'], None)
    """
    return mlp(dim, hidden_dim, dim, num_layers=2, batch_norm=True, bias=False)


def _local_view(cfg: Config, size: int, scale: tuple[float, float]) -> ViewSpec:
    return byol_local_view(size, scale)


@register_method(
    "byol",
    views=lambda cfg: byol_views(cfg.views.size),
    multicrop=MultiCrop(count=0, scale=(0.05, 0.14), local_view=_local_view),
)
class BYOL(Method):
    r"""BYOL = online backbone + projector + predictor, EMA target backbone + projector.

    Args:
        backbone: the online encoder :math:`f_\theta` (``encoder`` for evaluation).
        projector: :math:`g_\theta`, features ``[B, F]`` -> projections ``[B, D]``.
        predictor: :math:`q_\theta`, ``[B, D]`` -> ``[B, D]``; ``nn.Identity()`` for the
            no-predictor ablation.
        view_recipe: two views per image (:func:`selfsup.views.byol_views`).
        momentum_base: :math:`\tau_{base} \in [0, 1]`; 0.996 for 1000 epochs, 0.99 for 300
            (paper). 1 freezes the target, 0 copies the online network every step.
        momentum_schedule: ``"cosine"`` raises :math:`\tau` from ``momentum_base`` to 1 over
            the run (paper); ``"constant"`` keeps ``momentum_base``.

    Logs ``embedding_std`` (of the online projections; ~``1/sqrt(D)`` when healthy, 0 when
    collapsed) and ``target_momentum`` (the momentum of the latest EMA update,
    ``momentum_base`` before the first).

    Example:
        >>> from selfsup.views import byol_views
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform(byol_views(8), mean=[0.5], std=[0.25])
        >>> method = BYOL(backbone, byol_projector(32, 64, 16), byol_predictor(16, 64), recipe)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.shape, out.embeddings.shape
        (torch.Size([]), torch.Size([8, 16]))
        >>> method.after_step(Progress(step=0, total_steps=10, epoch=0, steps_per_epoch=10))
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        view_recipe: MultiViewTransform,
        momentum_base: float = 0.99,
        momentum_schedule: Literal["cosine", "constant"] = "cosine",
    ) -> None:
        super().__init__(backbone, view_recipe)
        check_recipe(view_recipe, "BYOL", "selfsup.views.byol_views(size)")
        check_momentum(momentum_base, "momentum_base", "BYOL uses 0.996 (1000 epochs) or 0.99")
        check_schedule(momentum_schedule)
        self.projector = projector
        self.predictor = predictor
        # target.module[0] = f_xi, target.module[1] = g_xi: no gradient, moved by after_step.
        self.target = EMATarget(
            nn.Sequential(backbone, projector), momentum_base, momentum_schedule
        )

    @classmethod
    def from_config(cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform) -> BYOL:
        y = cfg.byol
        predictor = (
            byol_predictor(y.proj_out_dim, y.pred_hidden_dim) if y.predictor else nn.Identity()
        )
        return cls(
            backbone,
            byol_projector(feature_dim(backbone), y.proj_hidden_dim, y.proj_out_dim),
            predictor,
            view_recipe,
            momentum_base=y.momentum_base,
            momentum_schedule=y.momentum_schedule,
        )

    def training_step(self, views: list[Tensor]) -> StepOutput:
        check_views(views, "BYOL")
        # Each global view is its own forward pass, as in the official code: BatchNorm
        # statistics are per view, in the online and in the target network (local crops: one
        # pass together). (h [N, F], z [N, D], p [N, D]) per view.
        online = forward_by_size(self._online, views, separate=2)
        with torch.no_grad():  # stop-gradient: the target only provides regression targets
            targets = [self.target(x) for x in views[:2]]  # [N, D] each
        pairs = crop_pairs(len(views))  # [(0, 1), (1, 0)] without local crops
        loss = 2 * torch.stack([byol_loss(online[v][2], targets[t]) for t, v in pairs]).mean()
        z = torch.cat([z_v for _, z_v, _ in online]).detach()  # [V N, D]
        h1 = online[0][0]
        logs = {
            "embedding_std": embedding_std(z),
            "target_momentum": self.target.momentum.detach().clone(),
        }
        return StepOutput(loss, logs, z, features=h1.detach())

    def _online(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.backbone(x)  # [B, feature_dim]
        z = self.projector(h)  # [B, D]
        return h, z, self.predictor(z)  # [B, F], [B, D], [B, D]

    def after_step(self, progress: Progress) -> None:
        r"""EMA of the online backbone and projector into the target: :math:`\xi \leftarrow
        \tau \xi + (1 - \tau) \theta` (parameters only; the target keeps its BN statistics)."""
        self.target.update(progress.step, progress.total_steps)
