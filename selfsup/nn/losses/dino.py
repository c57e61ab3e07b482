"""DINO's self-distillation: centred, sharpened teacher targets, the cross-entropy over crop
pairs, and :class:`DINOLoss` holding the center."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.nn.distributed import all_reduce_mean
from selfsup.nn.losses.common import _check_tau, _full_precision

__all__ = ["DINOLoss", "dino_cross_entropy", "dino_loss", "dino_teacher_probs"]


def _check_dino(
    student: Tensor, teacher: Tensor, center: Tensor | None, num_crops: int, num_global: int
) -> None:
    if student.ndim != 2 or teacher.ndim != 2 or student.shape[1] != teacher.shape[1]:
        raise ValueError(
            f"expected student [V*B, K] and teacher [G*B, K] logits with the same K, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}; stack the crops along dim 0"
        )
    if not 1 <= num_global <= num_crops or num_crops < 2:
        raise ValueError(
            f"need 1 <= num_global <= num_crops and num_crops >= 2, got num_global="
            f"{num_global}, num_crops={num_crops}; DINO uses 2 global + N local crops"
        )
    if student.shape[0] % num_crops or teacher.shape[0] % num_global:
        raise ValueError(
            f"student rows {student.shape[0]} must be num_crops={num_crops} x B and teacher "
            f"rows {teacher.shape[0]} num_global={num_global} x B"
        )
    if student.shape[0] // num_crops != teacher.shape[0] // num_global:
        raise ValueError(
            f"student has {student.shape[0] // num_crops} images per crop, teacher "
            f"{teacher.shape[0] // num_global}; both must see the same batch"
        )
    if center is not None and (
        center.shape[-1] != teacher.shape[1] or center.numel() != teacher.shape[1]
    ):
        raise ValueError(
            f"center must hold K={teacher.shape[1]} values ([1, K]), got {tuple(center.shape)}"
        )


def dino_teacher_probs(teacher: Tensor, center: Tensor, temperature: float | Tensor) -> Tensor:
    r"""Centered, sharpened teacher targets :math:`\mathrm{softmax}((t - c) / \tau_t)`, detached.

    Float32; ``teacher`` ``[M, K]`` logits, ``center`` ``[1, K]``. ``temperature`` may be a 0-d
    tensor on the device (a per-step schedule value that is never read back to the host).

    Example:
        >>> dino_teacher_probs(torch.zeros(2, 4), torch.zeros(1, 4), 0.04)[0].tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    if not isinstance(temperature, Tensor):
        _check_tau(temperature, "DINO uses a teacher temperature of 0.04-0.07")
    with _full_precision(teacher):
        t = teacher.detach().float() - center.float()
        return F.softmax(t / temperature, dim=-1)


def dino_loss(
    student: Tensor,
    teacher: Tensor,
    center: Tensor,
    num_crops: int,
    num_global: int = 2,
    student_temperature: float = 0.1,
    teacher_temperature: float | Tensor = 0.04,
) -> Tensor:
    r"""DINO's self-distillation loss over all (teacher global crop, other student crop) pairs.

    With teacher targets :math:`P_t^{(i)} = \mathrm{softmax}((g_t(x_i) - c) / \tau_t)` for the
    global crops :math:`i < G` (detached) and student log-probabilities
    :math:`\log P_s^{(v)} = \mathrm{log\,softmax}(g_s(x_v) / \tau_s)` for every crop :math:`v`:

    .. math::

        \mathcal{L} = \frac{1}{G (V - 1)} \sum_{i=1}^{G} \sum_{v \ne i}
            \frac1B \sum_b \Bigl( -\sum_k P_t^{(i)}[b, k] \log P_s^{(v)}[b, k] \Bigr),

    where crop :math:`i < G` of the student is the same image as global crop :math:`i` of the
    teacher (so a crop is never its own target). Computed without a loop over pairs:
    :math:`\sum_i \sum_v = (\sum_i P_t^{(i)}) \cdot (\sum_v \log P_s^{(v)})` minus the
    :math:`G` matching pairs. Float32 math, as the official code under autocast.

    Args:
        student: ``[V*B, K]`` logits of all crops, crop-major (rows ``v*B : (v+1)*B`` are crop
            ``v``), the :math:`G` global crops first.
        teacher: ``[G*B, K]`` logits of the teacher on the global crops, crop-major.
        center: ``[1, K]`` running mean of the teacher logits (:class:`DINOLoss` keeps it).
        num_crops: :math:`V`, crops the student saw (2 global + N local).
        num_global: :math:`G`, crops the teacher saw (2).
        student_temperature: :math:`\tau_s` (0.1).
        teacher_temperature: :math:`\tau_t` (0.04, warm-up to 0.07 in the paper); below
            :math:`\tau_s` it sharpens the targets.

    Example:
        >>> s, t = torch.zeros(6, 5), torch.zeros(4, 5)  # 3 crops, 2 global, B = 2, K = 5
        >>> round(dino_loss(s, t, torch.zeros(1, 5), num_crops=3).item(), 4)  # ln 5: uniform
        1.6094
    """
    _check_dino(student, teacher, center, num_crops, num_global)
    targets = dino_teacher_probs(teacher, center, teacher_temperature)  # [G*B, K]
    return dino_cross_entropy(student, targets, num_crops, num_global, student_temperature)


def dino_cross_entropy(
    student: Tensor,
    targets: Tensor,
    num_crops: int,
    num_global: int = 2,
    student_temperature: float = 0.1,
) -> Tensor:
    r"""The pair-averaged cross-entropy of :func:`dino_loss`, given the teacher targets.

    ``targets`` ``[G*B, K]`` are :func:`dino_teacher_probs` (probabilities, no gradient), so a
    caller that also logs their entropy computes the softmax once. ``dino_loss(s, t, c, ...)
    == dino_cross_entropy(s, dino_teacher_probs(t, c, tau_t), ...)``.

    Example:
        >>> targets = torch.full((4, 5), 0.2)  # uniform targets, 2 global crops, B = 2
        >>> round(dino_cross_entropy(torch.zeros(6, 5), targets, num_crops=3).item(), 4)
        1.6094
    """
    _check_dino(student, targets, None, num_crops, num_global)
    _check_tau(student_temperature, "DINO uses a student temperature of 0.1")
    batch = targets.shape[0] // num_global
    targets = targets.detach().float().view(num_global, batch, -1)  # [G, B, K]
    with _full_precision(student):
        log_p = F.log_softmax(student.float() / student_temperature, dim=-1)
        log_p = log_p.view(num_crops, batch, -1)  # [V, B, K]
        all_pairs = -(targets.sum(0) * log_p.sum(0)).sum(-1).mean()  # every (i, v)
        same_crop = -(targets * log_p[:num_global]).sum(-1).mean(-1).sum()  # the pairs v == i
        return (all_pairs - same_crop) / (num_global * (num_crops - 1))


class DINOLoss(nn.Module):
    r""":func:`dino_loss` with the teacher center :math:`c` as state.

    After each loss the center moves towards the batch mean of the teacher logits
    (all-reduced over processes, so every process holds the same center):

    .. math::

        c \leftarrow m\, c + (1 - m)\, \frac{1}{G B} \sum_{b} g_t(x_b), \qquad m = 0.9 .

    Centering keeps one prototype from dominating (which sharpening alone would cause);
    sharpening keeps the targets from going uniform (which centering alone would cause).
    ``center_momentum=1`` never moves the center from zero: DINO without centering, the
    collapse ablation.

    Args:
        out_dim: :math:`K`, the head's output dimension.
        student_temperature: :math:`\tau_s`.
        center_momentum: :math:`m \in [0, 1]`.

    Example:
        >>> loss_fn = DINOLoss(out_dim=4, center_momentum=0.9)
        >>> teacher = torch.ones(4, 4)
        >>> _ = loss_fn(torch.randn(6, 4), teacher, num_crops=3, teacher_temperature=0.04)
        >>> loss_fn.center  # 0.9 * 0 + 0.1 * mean(teacher)
        tensor([[0.1000, 0.1000, 0.1000, 0.1000]])
    """

    center: Tensor

    def __init__(
        self, out_dim: int, student_temperature: float = 0.1, center_momentum: float = 0.9
    ) -> None:
        super().__init__()
        _check_tau(student_temperature, "DINO uses a student temperature of 0.1")
        if not (math.isfinite(center_momentum) and 0.0 <= center_momentum <= 1.0):
            raise ValueError(
                f"center_momentum must be in [0, 1], got {center_momentum}; DINO uses 0.9 "
                "(1 disables centering)"
            )
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self,
        student: Tensor,
        teacher: Tensor,
        num_crops: int,
        teacher_temperature: float | Tensor,
        num_global: int = 2,
    ) -> Tensor:
        loss = dino_loss(
            student,
            teacher,
            self.center,
            num_crops,
            num_global,
            self.student_temperature,
            teacher_temperature,
        )
        self.update_center(teacher)
        return loss

    @torch.no_grad()
    def update_center(self, teacher: Tensor) -> None:
        r""":math:`c \leftarrow m c + (1 - m)\,\mathrm{mean}(t)`, the mean over all processes."""
        batch_mean = all_reduce_mean(teacher.detach().float().mean(dim=0, keepdim=True))
        self.center.mul_(self.center_momentum).add_(batch_mean, alpha=1 - self.center_momentum)

    def extra_repr(self) -> str:
        return (
            f"out_dim={self.center.shape[1]}, student_temperature={self.student_temperature}, "
            f"center_momentum={self.center_momentum}"
        )
