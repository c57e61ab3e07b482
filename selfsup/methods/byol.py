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
from selfsup.methods._checks import check_momentum, check_schedule
from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.registry import register_method
from selfsup.nn.ema import EMATarget
from selfsup.nn.heads import mlp
from selfsup.nn.losses import byol_loss
from selfsup.views import MultiViewTransform, byol_views

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


@register_method("byol", views=lambda cfg: byol_views(cfg.views.size))
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
        if view_recipe.num_views != 2:
            raise ValueError(
                f"BYOL uses exactly 2 views, the recipe makes {view_recipe.num_views}; "
                "build it from selfsup.views.byol_views(size)"
            )
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
        x1, x2 = views  # [N, C, H, W] each
        # Each view is its own forward pass, as in the official code: BatchNorm statistics
        # are per view, in the online and in the target network.
        h1 = self.backbone(x1)  # [N, feature_dim]
        z1 = self.projector(h1)  # [N, D]
        z2 = self.projector(self.backbone(x2))  # [N, D]
        p1, p2 = self.predictor(z1), self.predictor(z2)  # [N, D]
        with torch.no_grad():  # stop-gradient: the target only provides regression targets
            t1 = self.target(x1)  # [N, D]
            t2 = self.target(x2)  # [N, D]
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        z = torch.cat([z1, z2]).detach()  # [2N, D]
        logs = {
            "embedding_std": embedding_std(z),
            "target_momentum": self.target.momentum.detach().clone(),
        }
        return StepOutput(loss, logs, z, features=h1.detach())

    def after_step(self, progress: Progress) -> None:
        r"""EMA of the online backbone and projector into the target: :math:`\xi \leftarrow
        \tau \xi + (1 - \tau) \theta` (parameters only; the target keeps its BN statistics)."""
        self.target.update(progress.step, progress.total_steps)
