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

The teacher temperature :math:`\tau_t` warms up linearly (0.04 -> 0.07 over the first 30% of
the run in the paper's 100-epoch setting) and then stays constant; :math:`\tau_s = 0.1`.
Centering stops one prototype from dominating, sharpening stops the targets from going
uniform: without centering the teacher output collapses to one dimension (entropy -> 0,
tested). During the first epoch(s) the gradients of the head's last layer are dropped
(:meth:`DINO.before_optimizer_step`), as in the official code.

The trainer supplies the rest of the recipe: AdamW, weight decay on a cosine 0.04 -> 0.4
(``optim.final_weight_decay``), gradient clipping at 3.0 per parameter tensor
(``optim.clip_grad_mode=per_tensor``).

Differences from the reference:
    * Schedules are per step: :math:`\tau_t` rises linearly over warm-up *steps* (the code
      steps it per epoch), and the EMA after step :math:`k` uses :math:`\lambda_{k+1}`, so
      the last update is exactly 1 (see :func:`~selfsup.nn.ema.momentum_after_step`).
    * Our ViT uses fixed sin-cos position embeddings (interpolated for local crops) instead of
      learned ones.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.nn.ema import EMAUpdater, make_target, momentum_after_step
from selfsup.nn.heads import DINOHead
from selfsup.nn.losses import DINOLoss, dino_cross_entropy, dino_teacher_probs
from selfsup.views import MultiViewTransform

__all__ = ["DINO", "teacher_temperature_at"]


def teacher_temperature_at(
    step: int, total_steps: int, start: float, final: float, warmup_fraction: float
) -> float:
    r"""Teacher temperature at optimiser step ``step``: linear from ``start`` to ``final`` over
    the first ``warmup_fraction`` of the run, then ``final``.

    Example:
        >>> [round(teacher_temperature_at(k, 10, 0.04, 0.07, 0.3), 3) for k in (0, 1, 3, 9)]
        [0.04, 0.05, 0.07, 0.07]
    """
    warmup_steps = round(warmup_fraction * total_steps)
    if warmup_steps <= 0 or step >= warmup_steps:
        return final
    return start + (final - start) * step / warmup_steps


def _same_size_groups(views: list[Tensor]) -> list[tuple[int, int]]:
    """``(start, end)`` index ranges of consecutive views with the same shape."""
    groups, start = [], 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape != views[start].shape:
            groups.append((start, i))
            start = i
    return groups


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
        teacher_temperature_warmup: fraction of the run over which :math:`\tau_t` warms up
            (0.3 = the paper's 30 of 100 epochs); 0 = constant.
        center_momentum: momentum of the center (0.9); 1 turns centering off (ablation).
        momentum_base: teacher EMA momentum at step 0, cosine to 1 (0.996; 0.9995 for batch
            256 in the paper's small-batch table).
        freeze_last_layer_epochs: epochs during which the last layer's gradients are dropped
            (1 in the official code; fractions allowed).

    Logs, every logged step: ``teacher_entropy`` (mean entropy of the teacher targets, in
    nats; :math:`\ln K` = uniform collapse, ~0 = one prototype dominates), ``kl`` (mean
    :math:`KL(P_t \| P_s)` over the loss pairs = loss - entropy), ``teacher_temperature``,
    ``teacher_momentum`` and ``embedding_std`` of the student's normalised bottleneck.

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

    name = "dino"
    teacher_temperature: Tensor  # 0-d buffers: the values the next step uses / the last used
    teacher_momentum: Tensor

    def __init__(
        self,
        backbone: nn.Module,
        head: DINOHead,
        view_recipe: MultiViewTransform,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        teacher_temperature_warmup: float = 0.0,
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
        if not 0.0 <= teacher_temperature_warmup <= 1.0:
            raise ValueError(
                f"teacher_temperature_warmup is a fraction of the run in [0, 1], got "
                f"{teacher_temperature_warmup}; the paper warms up over 30% (0.3)"
            )
        if not (math.isfinite(momentum_base) and 0.0 <= momentum_base <= 1.0):
            raise ValueError(
                f"momentum_base must be in [0, 1] (0.996 in DINO), got {momentum_base}"
            )
        if not freeze_last_layer_epochs >= 0:
            raise ValueError(
                f"freeze_last_layer_epochs must be >= 0, got {freeze_last_layer_epochs}"
            )
        self.head = head
        self.num_crops = view_recipe.num_views
        self.num_global = 2
        self.loss_fn = DINOLoss(head.out_dim, student_temperature, center_momentum)
        self.final_teacher_temperature = float(teacher_temperature)
        self.warmup_teacher_temperature = float(warmup_teacher_temperature)
        self.teacher_temperature_warmup = float(teacher_temperature_warmup)
        self.momentum_base = float(momentum_base)
        self.freeze_last_layer_epochs = float(freeze_last_layer_epochs)
        student = nn.Sequential(backbone, head)  # a view of the student modules, not stored
        # teacher[0] = backbone, teacher[1] = head: no gradient, updated by after_step only.
        self.teacher = cast(nn.Sequential, make_target(student))
        self._ema = EMAUpdater(self.teacher, student, buffers="keep")  # not a module
        start = (
            warmup_teacher_temperature if teacher_temperature_warmup > 0 else teacher_temperature
        )
        self.register_buffer("teacher_temperature", torch.tensor(float(start)))
        self.register_buffer("teacher_momentum", torch.tensor(self.momentum_base))

    def _student(self, views: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Logits ``[V*B, K]`` and normalised bottleneck of the global crops ``[2B, d]``.

        One backbone pass per crop size (the globals together, the locals together), as the
        official multi-crop wrapper does: BatchNorm statistics are per resolution group.
        """
        features = [
            self.backbone(torch.cat(views[a:b])) for a, b in _same_size_groups(views)
        ]  # [n_group*B, F] each
        bottleneck = self.head.bottleneck(torch.cat(features))  # [V*B, d]
        logits = self.head.last_layer(bottleneck)  # [V*B, K]
        batch = views[0].shape[0]
        return logits, bottleneck[: self.num_global * batch]

    def training_step(self, views: list[Tensor]) -> StepOutput:
        if len(views) != self.num_crops:
            raise ValueError(f"DINO was built for {self.num_crops} crops, got {len(views)}")
        student, z = self._student(views)  # [V*B, K], [2B, d]
        with torch.no_grad():  # the teacher sees the global crops only
            teacher = self.teacher(torch.cat(views[: self.num_global]))  # [2B, K]
        tau_t = self.teacher_temperature.clone()  # a device tensor: no host sync per step
        # DINOLoss's steps written out, so the targets serve the loss and the entropy log:
        # centered + sharpened targets, the pair-averaged cross-entropy, then the center update.
        probs = dino_teacher_probs(teacher, self.loss_fn.center, tau_t)  # [2B, K]
        loss = dino_cross_entropy(
            student, probs, self.num_crops, self.num_global, self.loss_fn.student_temperature
        )
        self.loss_fn.update_center(teacher)
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
        logs = {
            "teacher_entropy": entropy,
            "kl": loss.detach() - entropy,
            "teacher_temperature": tau_t,
            "teacher_momentum": self.teacher_momentum.detach().clone(),
            "embedding_std": embedding_std(z.detach()),
        }
        return StepOutput(loss, logs, z.detach())

    def before_optimizer_step(self, progress: Progress) -> None:
        """Drop the last layer's gradients during the first ``freeze_last_layer_epochs``."""
        frozen_steps = self.freeze_last_layer_epochs * progress.steps_per_epoch
        if progress.step < frozen_steps:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def after_step(self, progress: Progress) -> None:
        r"""EMA of the student into the teacher with :math:`\lambda_{k+1}` (parameters only;
        the teacher keeps its BN statistics); set :math:`\tau_t` for the next step."""
        momentum = momentum_after_step(self.momentum_base, progress.step, progress.total_steps)
        self._ema.update(momentum)
        self.teacher_momentum.fill_(momentum)
        tau_next = teacher_temperature_at(
            min(progress.step + 1, progress.total_steps - 1),
            progress.total_steps,
            self.warmup_teacher_temperature,
            self.final_teacher_temperature,
            self.teacher_temperature_warmup,
        )
        self.teacher_temperature.fill_(tau_next)

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
            f"{self.teacher_temperature_warmup:.0%} of the run), momentum_base="
            f"{self.momentum_base}, freeze_last_layer_epochs={self.freeze_last_layer_epochs}"
        )
