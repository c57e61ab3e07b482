r"""DINO: self-distillation with no labels (Caron et al., 2021).

A *student* :math:`g_s` (backbone + :class:`~selfsup.nn.heads.DINOHead`) sees every crop of
an image, 2 global and :math:`N` local; the *teacher* :math:`g_t`, an EMA of the student,
sees the 2 global crops only. The student matches the teacher's centered, sharpened output
distribution on every *other* crop:

.. math::

    P_t^{(i)} = \mathrm{softmax}\Bigl(\frac{g_t(x_i) - c}{\tau_t}\Bigr), \quad
    P_s^{(v)} = \mathrm{softmax}\Bigl(\frac{g_s(x_v)}{\tau_s}\Bigr), \quad
    \mathcal{L} = \frac{1}{2 (V - 1)} \sum_{i \in \{1, 2\}} \sum_{v \ne i}
        H\bigl(\mathrm{sg}(P_t^{(i)}), P_s^{(v)}\bigr)

.. math::

    c \leftarrow 0.9\, c + 0.1\, \overline{g_t(x)}, \qquad
    \theta_t \leftarrow \lambda_k \theta_t + (1 - \lambda_k) \theta_s, \quad
    \lambda_k = 1 - (1 - 0.996) \frac{\cos(\pi k / K) + 1}{2}.

The teacher temperature :math:`\tau_t` warms up linearly over a fixed number of epochs (0.04
-> 0.07 over 30 epochs in the paper, also in its 300-epoch recipe) and then stays constant;
:math:`\tau_s = 0.1`. It and the EMA momentum are per-step arrays, precomputed for the run
(:meth:`DINO.configure_schedules`). The teacher is the method's :class:`~selfsup.nn.ema.EMATarget`
(``target``); it is the network evaluated and exported by default, as in the official evaluation
and every published DINO k-NN number (``eval.network=online`` picks the student). A ViT student
uses stochastic depth (``backbone.drop_path_rate``, 0.1 in the official code); the teacher never
drops paths.
Centering stops one prototype from dominating, sharpening stops the targets from going
uniform: without centering the teacher output collapses to one dimension (entropy -> 0,
tested). During the first epoch(s) the gradients of the head's last layer are dropped
(:meth:`DINO.before_optimizer_step`), as in the official code.

The trainer supplies the rest of the recipe: AdamW, weight decay on a cosine 0.04 -> 0.4
(``optim.final_weight_decay``), gradient clipping at 3.0 per parameter tensor
(``optim.clip_grad_mode=per_tensor``).

Differences from the reference:
    * Schedules are per step: :math:`\tau_t` rises linearly over the warm-up epochs' *steps*
      (the code steps it per epoch), and the EMA after step :math:`k` uses
      :math:`\lambda_{k+1}`, so the last update is exactly 1 (see
      :func:`~selfsup.nn.ema.momentum_schedule`).
    * Our ViT uses fixed sin-cos position embeddings (interpolated for local crops) instead of
      learned ones.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn.ema import EMATarget
from selfsup.nn.heads import DINOHead
from selfsup.nn.losses import DINOLoss, dino_cross_entropy, dino_teacher_probs
from selfsup.views import (
    MultiViewTransform,
    ViewSpec,
    dino_global_views,
    dino_local_view,
    forward_by_size,
)

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["DINO", "teacher_temperature_schedule"]


def teacher_temperature_schedule(
    start: float, final: float, warmup_steps: int, total_steps: int
) -> np.ndarray:
    r"""The teacher temperature of every step: linear from ``start`` to ``final`` over the first
    ``warmup_steps`` steps, then ``final`` (the paper: 0.04 -> 0.07 over 30 epochs' steps).

    Example:
        >>> teacher_temperature_schedule(0.04, 0.07, 3, 6).round(3).tolist()
        [0.04, 0.05, 0.06, 0.07, 0.07, 0.07]
    """
    steps = np.arange(total_steps, dtype=np.float64)
    if warmup_steps <= 0:
        return np.full(total_steps, float(final))
    return np.where(
        steps < warmup_steps, start + (final - start) * steps / warmup_steps, float(final)
    )


def _global_views(cfg: Config) -> list[ViewSpec]:
    scale = cfg.dino.global_crop_scale
    return dino_global_views(cfg.views.size, (scale[0], scale[1]))


def _local_view(cfg: Config, size: int, scale: tuple[float, float]) -> ViewSpec:
    return dino_local_view(size, scale)


@register_method(
    "dino",
    views=_global_views,
    multicrop=MultiCrop(count=8, scale=(0.05, 0.4), local_view=_local_view),
)
class DINO(Method):
    r"""DINO = student (backbone + DINO head), EMA teacher, centered + sharpened targets.

    Args:
        backbone: the student encoder (``encoder`` for evaluation); a ViT must accept the
            local crop size (ours interpolates its position embeddings).
        head: :class:`DINOHead`, features ``[B, F]`` -> ``[B, K]`` logits.
        view_recipe: 2 global + N local crops, globals first
            (:func:`selfsup.views.dino_views`).
        student_temperature: :math:`\tau_s` (0.1).
        teacher_temperature: :math:`\tau_t` after warm-up (0.04 code default, 0.07 paper).
        warmup_teacher_temperature: :math:`\tau_t` at step 0 (0.04).
        warmup_teacher_temperature_epochs: epochs of the linear :math:`\tau_t` warm-up (30 in
            the paper and its 300-epoch recipe; a no-op while both temperatures are equal).
        center_momentum: momentum of the center (0.9); 1 turns centering off (ablation).
        momentum_base: teacher EMA momentum at step 0, cosine to 1 (0.996; 0.9995 for batch
            256 in the paper's small-batch table).
        freeze_last_layer_epochs: epochs during which the last layer's gradients are dropped
            (1 in the official code; fractions allowed).

    Logs, every logged step: ``teacher_entropy`` (mean entropy of the teacher targets, in
    nats; :math:`\ln K` = uniform collapse, ~0 = one prototype dominates), ``kl`` (mean
    :math:`KL(P_t \| P_s)` over the loss pairs = loss - entropy), ``teacher_temperature``,
    ``target_momentum`` and ``embedding_std`` of the student's normalised bottleneck.

    Example:
        >>> from selfsup.views import dino_views
        >>> backbone = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, 16))
        >>> recipe = MultiViewTransform(dino_views(16, 8, num_local=2), mean=[0.5], std=[0.25])
        >>> head = DINOHead(16, out_dim=32, hidden_dim=32, bottleneck_dim=8)
        >>> method = DINO(backbone, head, recipe)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8))
        >>> [v.shape[-1] for v in views]
        [16, 16, 8, 8]
        >>> out = method.training_step(views)
        >>> out.loss.shape, sorted(out.logs)[:2]
        (torch.Size([]), ['embedding_std', 'kl'])
    """

    default_network = "target"  # the teacher is evaluated (official protocol)
    teacher_temperature: Tensor  # 0-d buffer: the value the next step uses

    def __init__(
        self,
        backbone: nn.Module,
        head: DINOHead,
        view_recipe: MultiViewTransform,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: float = 30.0,
        center_momentum: float = 0.9,
        momentum_base: float = 0.996,
        freeze_last_layer_epochs: float = 1.0,
    ) -> None:
        super().__init__(backbone, view_recipe)
        if view_recipe.num_views < 2:
            raise ValueError(
                f"DINO needs at least the 2 global crops, the recipe makes "
                f"{view_recipe.num_views}; build it from selfsup.views.dino_views(...)"
            )
        for name, tau in (
            ("teacher_temperature", teacher_temperature),
            ("warmup_teacher_temperature", warmup_teacher_temperature),
        ):
            if not (math.isfinite(tau) and tau > 0):
                raise ValueError(
                    f"{name} must be > 0, got {tau}; DINO uses 0.04 -> 0.07 (above 0.07 is "
                    "unstable)"
                )
        if not warmup_teacher_temperature_epochs >= 0:
            raise ValueError(
                f"warmup_teacher_temperature_epochs must be >= 0, got "
                f"{warmup_teacher_temperature_epochs}; the paper warms up over 30 epochs"
            )
        if not freeze_last_layer_epochs >= 0:
            raise ValueError(
                f"freeze_last_layer_epochs must be >= 0, got {freeze_last_layer_epochs}"
            )
        self.head = head
        self.num_crops = view_recipe.num_views
        self.num_global = 2
        self.criterion = DINOLoss(head.out_dim, student_temperature, center_momentum)
        self.final_teacher_temperature = float(teacher_temperature)
        self.warmup_teacher_temperature = float(warmup_teacher_temperature)
        self.warmup_teacher_temperature_epochs = float(warmup_teacher_temperature_epochs)
        self.freeze_last_layer_epochs = float(freeze_last_layer_epochs)
        # The teacher: target.module[0] = backbone, [1] = head; no gradient, no stochastic
        # depth, moved by after_step only.
        self.target = EMATarget(nn.Sequential(backbone, head), momentum_base, "cosine")
        start = (
            warmup_teacher_temperature
            if warmup_teacher_temperature_epochs > 0
            else teacher_temperature
        )
        self.register_buffer("teacher_temperature", torch.tensor(float(start)))
        self.teacher_temperatures: np.ndarray | None = None  # per step, from configure_schedules

    @classmethod
    def from_config(cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform) -> DINO:
        n = cfg.dino
        head = DINOHead(
            feature_dim(backbone),
            n.out_dim,
            n.hidden_dim,
            n.bottleneck_dim,
            batch_norm=n.head_batch_norm,
            norm_last_layer=n.norm_last_layer,
        )
        return cls(
            backbone,
            head,
            view_recipe,
            student_temperature=n.student_temperature,
            teacher_temperature=n.teacher_temperature,
            warmup_teacher_temperature=n.warmup_teacher_temperature,
            warmup_teacher_temperature_epochs=n.warmup_teacher_temperature_epochs,
            center_momentum=n.center_momentum,
            momentum_base=n.momentum_base,
            freeze_last_layer_epochs=n.freeze_last_layer_epochs,
        )

    def configure_schedules(self, total_steps: int, steps_per_epoch: int) -> None:
        """Precompute the teacher momentum and temperature of every step of the run."""
        super().configure_schedules(total_steps, steps_per_epoch)  # the EMA momentum
        warmup_steps = round(self.warmup_teacher_temperature_epochs * steps_per_epoch)
        self.teacher_temperatures = teacher_temperature_schedule(
            self.warmup_teacher_temperature,
            self.final_teacher_temperature,
            min(warmup_steps, total_steps),
            total_steps,
        )

    def _student(self, views: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Logits ``[V*B, K]``, normalised bottleneck of the global crops ``[2B, d]`` and the
        backbone features of the first global crop ``[B, F]``.

        One backbone pass per crop size (the globals together, the locals together), as the
        official multi-crop wrapper does: BatchNorm statistics are per resolution group.
        """
        features = forward_by_size(self.backbone, views)  # [B, F] per crop
        bottleneck = self.head.bottleneck(torch.cat(features))  # [V*B, d]
        logits = self.head.last_layer(bottleneck)  # [V*B, K]
        batch = views[0].shape[0]
        return logits, bottleneck[: self.num_global * batch], features[0][:batch]

    def training_step(self, views: list[Tensor]) -> StepOutput:
        if len(views) != self.num_crops:
            raise ValueError(f"DINO was built for {self.num_crops} crops, got {len(views)}")
        student, z, h1 = self._student(views)  # [V*B, K], [2B, d], [B, F]
        with torch.no_grad():  # the teacher sees the global crops only
            teacher = self.target(torch.cat(views[: self.num_global]))  # [2B, K]
        tau_t = self.teacher_temperature.clone()  # a device tensor: no host sync per step
        # DINOLoss's steps written out, so the targets serve the loss and the entropy log:
        # centered + sharpened targets, the pair-averaged cross-entropy, then the center update.
        probs = dino_teacher_probs(teacher, self.criterion.center, tau_t)  # [2B, K]
        loss = dino_cross_entropy(
            student, probs, self.num_crops, self.num_global, self.criterion.student_temperature
        )
        self.criterion.update_center(teacher)
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
        logs = {
            "teacher_entropy": entropy,
            "kl": loss.detach() - entropy,
            "teacher_temperature": tau_t,
            "target_momentum": self.target.momentum.detach().clone(),
            "embedding_std": embedding_std(z.detach()),
        }
        return StepOutput(loss, logs, z.detach(), features=h1.detach())

    def before_optimizer_step(self, progress: Progress) -> None:
        """Drop the last layer's gradients during the first ``freeze_last_layer_epochs``."""
        frozen_steps = self.freeze_last_layer_epochs * progress.steps_per_epoch
        if progress.step < frozen_steps:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def after_step(self, progress: Progress) -> None:
        r"""EMA of the student into the teacher with :math:`\lambda_{k+1}` (parameters only;
        the teacher keeps its BN statistics); set :math:`\tau_t` for the next step."""
        self.target.update(progress.step, progress.total_steps)
        temperatures = self.teacher_temperatures
        if temperatures is None or len(temperatures) != progress.total_steps:
            self.configure_schedules(progress.total_steps, progress.steps_per_epoch)
            temperatures = self.teacher_temperatures
        assert temperatures is not None
        self.teacher_temperature.fill_(
            float(temperatures[min(progress.step + 1, len(temperatures) - 1)])
        )

    def diagnose(self, logs: dict[str, float]) -> list[str]:
        """Warnings for DINO's two collapse modes, from the logged entropy and KL."""
        warnings = super().diagnose(logs)
        entropy, kl = logs.get("teacher_entropy"), logs.get("kl")
        if entropy is None or kl is None:
            return warnings
        uniform = math.log(self.head.out_dim)
        if kl < 0.01 * uniform and entropy > 0.9 * uniform:
            warnings.append(
                f"DINO collapse (uniform): teacher entropy {entropy:.3f} ~ ln K = {uniform:.3f} "
                "and student = teacher; lower dino.teacher_temperature (sharpening) or check "
                "the learning rate"
            )
        elif kl < 0.01 * uniform and entropy < 0.05 * uniform:
            warnings.append(
                f"DINO collapse (one dimension dominates): teacher entropy {entropy:.3f} ~ 0 "
                "and loss ~ 0; keep centering on (dino.center_momentum < 1) and check the "
                "teacher momentum"
            )
        return warnings

    def extra_repr(self) -> str:
        return (
            f"num_crops={self.num_crops}, teacher_temperature={self.final_teacher_temperature}"
            f" (warm-up from {self.warmup_teacher_temperature} over "
            f"{self.warmup_teacher_temperature_epochs:g} epochs), "
            f"freeze_last_layer_epochs={self.freeze_last_layer_epochs}"
        )
