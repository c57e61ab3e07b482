"""Self-supervised objectives as small, typed, stand-alone modules.

Each loss is a function (``nt_xent_loss``) plus an ``nn.Module`` wrapper holding its
hyperparameters (``NTXentLoss``), so it drops into any training loop. Losses that compare
across devices take an explicit ``gather_distributed`` switch and are identical to the
single-process loss on the global batch when it is on.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.nn.distributed import (
    all_reduce_mean,
    gather_no_grad,
    gather_with_grad,
    rank,
    world_size,
)

__all__ = [
    "DINOLoss",
    "NTXentLoss",
    "byol_loss",
    "dino_cross_entropy",
    "dino_loss",
    "dino_teacher_probs",
    "infonce_queue_loss",
    "moco_v3_loss",
    "nt_xent_loss",
]


def _full_precision(*tensors: Tensor) -> contextlib.AbstractContextManager[None]:
    """Context that switches autocast off on the tensors' device type (if it has autocast)."""
    device_type = tensors[0].device.type
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature}; "
            "SimCLR uses 0.5 on CIFAR-sized data and 0.1 on ImageNet"
        )


def _check_views(z_a: Tensor, z_b: Tensor) -> None:
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            "expected two projections of the same shape [N, D], got "
            f"{tuple(z_a.shape)} and {tuple(z_b.shape)}; flatten the projector output "
            "and pass one tensor per view"
        )
    if not (z_a.is_floating_point() and z_b.is_floating_point()):
        raise ValueError(
            f"projections must be floating point, got {z_a.dtype} and {z_b.dtype}; "
            "pass the projector output, not labels or indices"
        )


def nt_xent_loss(
    z_a: Tensor, z_b: Tensor, temperature: float = 0.5, gather_distributed: bool = False
) -> Tensor:
    r"""SimCLR's normalised temperature-scaled cross-entropy (NT-Xent). See :class:`NTXentLoss`.

    Args:
        z_a: projections of the first view, ``[n, D]``.
        z_b: projections of the second view, ``[n, D]``; row ``i`` is the positive of
            ``z_a[i]``.
        temperature: :math:`\tau > 0`.
        gather_distributed: score the local anchors against the views of all processes.

    Returns:
        Scalar loss (float32, or float64 for float64 inputs).
    """
    _check_temperature(temperature)
    _check_views(z_a, z_b)
    n = z_a.shape[0]
    world = world_size() if gather_distributed else 1
    if world * n < 2:
        raise ValueError(
            f"SimCLR needs batch size >= 2 (got {world * n} pair(s) in total): with one pair "
            "there are no negatives; increase the batch size"
        )
    with _full_precision(z_a):
        dtype = torch.promote_types(z_a.dtype, torch.float32)  # fp16/bf16 -> fp32, keep fp64
        z = F.normalize(torch.cat([z_a, z_b], dim=0).to(dtype), dim=1)  # [2n, D], rows unit
        keys = gather_with_grad(z) if world > 1 else z  # [2N, D], rank r holds rows r*2n...
        offset = 2 * n * rank() if world > 1 else 0  # where this process's views sit in keys

        logits = z @ keys.T / temperature  # [2n, 2N]: cosine similarity / tau
        anchor = torch.arange(2 * n, device=z.device)  # [2n]
        key = torch.arange(keys.shape[0], device=z.device)  # [2N]
        is_self = key[None, :] == (anchor + offset)[:, None]  # [2n, 2N], one True per row
        logits = logits.masked_fill(is_self, float("-inf"))  # exp(-inf) = 0: self left out
        positive = offset + (anchor + n) % (2 * n)  # [2n]: a_i <-> b_i
        return F.cross_entropy(logits, positive)


class NTXentLoss(nn.Module):
    r"""SimCLR's normalised temperature-scaled cross-entropy (NT-Xent, Chen et al. 2020).

    The :math:`2N` projections of both views are L2-normalised, :math:`u = z / \lVert z
    \rVert`, and every view is an anchor whose positive is the other view of its image and
    whose :math:`2N - 2` negatives are all remaining views:

    .. math::

        \ell_i = -\log \frac{\exp(u_i^\top u_{p(i)} / \tau)}
                            {\sum_{k \ne i} \exp(u_i^\top u_k / \tau)},
        \qquad
        \mathcal{L} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i ,

    i.e. a cross-entropy over the other :math:`2N - 1` views (the anchor itself is masked out
    with :math:`-\infty`), averaged over both directions, so the loss is symmetric in
    ``(z_a, z_b)``. Collapsed embeddings (all equal) give exactly :math:`\log(2N - 1)`.

    The similarities and the cross-entropy run in float32 even under autocast: with
    :math:`\tau = 0.1`, logits reach 10 and half-precision ``exp`` loses the small negatives.

    With ``gather_distributed=True`` every process scores its local :math:`2n` anchors
    against the :math:`2N = 2nW` views gathered *with gradient* from all :math:`W` processes
    (the official SimCLR recipe: negatives from every device). Each process returns the mean
    over its own anchors; since all processes hold equally many anchors, the DDP-averaged
    gradient equals the gradient of the single-process loss on the concatenated batch.
    All processes must pass the same batch size.

    Args:
        temperature: :math:`\tau > 0`; 0.5 for CIFAR-sized data, 0.1 for ImageNet (SimCLR).
        gather_distributed: gather negatives across processes (no effect when not
            distributed).

    Example:
        >>> loss_fn = NTXentLoss(temperature=0.5)
        >>> z = torch.ones(4, 8)  # collapsed: every view identical
        >>> round(loss_fn(z, z).item(), 4) == round(math.log(2 * 4 - 1), 4)
        True
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """``[N, D]`` projections of view a and view b -> scalar loss."""
        return nt_xent_loss(z_a, z_b, self.temperature, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


def _check_tau(temperature: float, hint: str) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}; {hint}")


def _check_pair(a: Tensor, b: Tensor, names: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"expected {names} of the same shape [N, D], got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; pass one row per image, matched row by row"
        )
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(
            f"{names} must be floating point, got {a.dtype} and {b.dtype}; pass the head "
            "outputs, not labels or indices"
        )


def infonce_queue_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    r"""MoCo v1/v2's InfoNCE against a queue of negative keys (He et al. 2020).

    With :math:`u = q / \lVert q \rVert`, :math:`v = k / \lVert k \rVert` and the queued keys
    :math:`n_j` (unit rows):

    .. math::

        \ell_i = -\log \frac{\exp(u_i^\top v_i / \tau)}
                            {\exp(u_i^\top v_i / \tau) + \sum_{j=1}^{K} \exp(u_i^\top n_j / \tau)},
        \qquad \mathcal{L} = \frac1N \sum_i \ell_i ,

    i.e. a cross-entropy over logits ``[N, 1 + K]`` whose label is 0 (the positive first).
    One direction only, as in MoCo v2 (not symmetrised). The keys are targets: ``k`` and the
    queue receive no gradient (the queue is a constant; ``k`` is detached here). The math runs
    in float32 (float64 for float64 inputs) even under autocast.

    Args:
        q: queries ``[N, D]`` (the trained encoder's projections).
        k: positive keys ``[N, D]`` (the momentum encoder's projections of the other view).
        queue: negative keys ``[K, D]``, already L2-normalised (``MemoryQueue.keys``).
        temperature: :math:`\tau > 0`; 0.07 MoCo v1, 0.2 MoCo v2.

    Returns:
        Scalar loss.

    Example:
        >>> q = torch.eye(3)[:1]  # one query, equal to its key and orthogonal to the queue
        >>> value = infonce_queue_loss(q, q, torch.eye(3)[1:], temperature=1.0)
        >>> round(value.item(), 6) == round(math.log(1 + 2 * math.exp(-1)), 6)
        True
    """
    _check_tau(temperature, "MoCo uses 0.07 (v1) or 0.2 (v2)")
    _check_pair(q, k, "queries q and keys k")
    if queue.ndim != 2 or queue.shape[1] != q.shape[1] or not queue.is_floating_point():
        raise ValueError(
            f"queue must be floating point of shape [K, {q.shape[1]}] (one key per row, same "
            f"dimension as q), got {tuple(queue.shape)} {queue.dtype}; pass MemoryQueue.keys"
        )
    with _full_precision(q):
        dtype = torch.promote_types(q.dtype, torch.float32)
        u = F.normalize(q.to(dtype), dim=1)  # [N, D]
        v = F.normalize(k.detach().to(dtype), dim=1)  # [N, D], target: no gradient
        negatives = queue.detach().to(dtype)  # [K, D], unit rows
        positive = (u * v).sum(dim=1, keepdim=True)  # [N, 1]
        logits = torch.cat([positive, u @ negatives.T], dim=1) / temperature  # [N, 1 + K]
        labels = torch.zeros(u.shape[0], dtype=torch.long, device=u.device)  # [N]
        return F.cross_entropy(logits, labels)


def moco_v3_loss(
    q: Tensor, k: Tensor, temperature: float = 0.2, gather_distributed: bool = False
) -> Tensor:
    r"""MoCo v3's contrastive loss :math:`\mathrm{ctr}(q, k)` (Chen, Xie, He 2021).

    Queries are scored against all keys of the (global) batch; the positive of query
    :math:`i` is key :math:`i`, the other keys are its negatives (no queue):

    .. math::

        \mathrm{ctr}(q, k) = 2\tau \cdot \frac1N \sum_i -\log
            \frac{\exp(u_i^\top v_i / \tau)}{\sum_j \exp(u_i^\top v_j / \tau)} ,

    with :math:`u, v` the L2-normalised ``q, k``. The factor :math:`2\tau` is the official
    code's (it makes the loss scale insensitive to :math:`\tau`). The method sums both
    directions, ``ctr(q1, k2) + ctr(q2, k1)``. Keys are targets: they are detached and, with
    ``gather_distributed=True``, gathered from every process *without* gradient, giving logits
    ``[N, N W]`` whose positives sit on the diagonal shifted by ``rank * N``. Float32 math.

    Args:
        q: queries ``[N, D]`` (predictor outputs of the base encoder).
        k: keys ``[N, D]`` (projector outputs of the momentum encoder, other view).
        temperature: :math:`\tau > 0`; 1.0 for ResNet and 0.2 for ViT in the official code.
        gather_distributed: negatives from every process (no effect when not distributed).

    Returns:
        Scalar loss.

    Example:
        >>> z = torch.eye(4)  # q = k, keys mutually orthogonal
        >>> value = moco_v3_loss(z, z, temperature=0.5)
        >>> round(value.item(), 6) == round(2 * 0.5 * math.log(1 + 3 * math.exp(-2)), 6)
        True
    """
    _check_tau(temperature, "MoCo v3 uses 1.0 for ResNet and 0.2 for ViT")
    _check_pair(q, k, "queries q and keys k")
    with _full_precision(q):
        dtype = torch.promote_types(q.dtype, torch.float32)
        u = F.normalize(q.to(dtype), dim=1)  # [N, D]
        v = F.normalize(k.detach().to(dtype), dim=1)  # [N, D]
        gathered = gather_distributed and world_size() > 1
        keys = gather_no_grad(v) if gathered else v  # [N W, D], rank r holds rows r*N...
        offset = u.shape[0] * rank() if gathered else 0
        logits = u @ keys.T / temperature  # [N, N W]
        labels = offset + torch.arange(u.shape[0], device=u.device)  # [N]
        return F.cross_entropy(logits, labels) * (2 * temperature)


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    r"""BYOL's regression loss: :math:`2 - 2 \cos(p, \mathrm{sg}(z))`, mean over the batch.

    .. math::

        \mathcal{L} = \frac1N \sum_i \Bigl\lVert \frac{p_i}{\lVert p_i \rVert}
                       - \frac{z_i}{\lVert z_i \rVert} \Bigr\rVert_2^2
                     = \frac1N \sum_i \bigl(2 - 2 \cos(p_i, z_i)\bigr),

    in :math:`[0, 4]`: 0 when the prediction points along the target, 4 when opposite.
    ``z`` (the target network's projection) is detached here: stop-gradient is part of the
    loss, not something the caller can forget. BYOL symmetrises by swapping the views and
    adding the two losses. Float32 math.

    Args:
        p: online predictions ``[N, D]``.
        z: target projections ``[N, D]`` of the other view.

    Returns:
        Scalar loss.

    Example:
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> byol_loss(p, 3 * p).item(), byol_loss(p, -p).item()
        (0.0, 4.0)
    """
    _check_pair(p, z, "predictions p and target projections z")
    with _full_precision(p):
        dtype = torch.promote_types(p.dtype, torch.float32)
        u = F.normalize(p.to(dtype), dim=1)  # [N, D]
        v = F.normalize(z.detach().to(dtype), dim=1)  # [N, D], stop-gradient
        return (2 - 2 * (u * v).sum(dim=1)).mean()


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
