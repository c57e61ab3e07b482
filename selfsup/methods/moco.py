r"""MoCo v2: momentum contrast (He et al. 2020; Chen, Fan, Girshick & He 2020).

 A query encoder :math:`f_q` (backbone + projector) is trained by
back-propagation; the key encoder :math:`f_k` is an exponential moving average of its
*parameters*, and a queue holds the :math:`K` most recent keys as negatives. For a query
:math:`q = f_q(x_q)` and its positive key :math:`k_+ = f_k(x_k)` (another view of the same
image), both L2-normalised, and the queue :math:`\{k_j\}_{j=1}^K`:

.. math::

    L_q = -\log \frac{\exp(q \cdot k_+ / T)}
                     {\exp(q \cdot k_+ / T) + \sum_{j=1}^{K} \exp(q \cdot k_j / T)},
    \qquad \theta_k \leftarrow m\, \theta_k + (1 - m)\, \theta_q .

The logits are ``[q.k+, q.queue] / T`` with label 0 (one direction, not symmetric); the keys
are computed without gradient and enqueued *after* the logits of the step. MoCo v1 is the
preset with a linear projector (``mlp(feature_dim, feature_dim, 128, num_layers=1,
batch_norm=False)``) and :math:`T = 0.07`; v2 is the 2048-ReLU-128 MLP and :math:`T = 0.2`.

Multi-crop (``views.local_crops``, off by default): every local crop is one more query of the
same key (the key comes from the second global view only), the loss averaged over the queries.

BatchNorm in the key encoder would let a query and its positive key communicate through the
batch statistics. The official code shuffles the key batch across GPUs (*shuffle-BN*); on one
process the official single-GPU demo normalises sub-batches separately (*split-BN*) and shuffles
the key batch. Both happen here: ``shuffle_batch -> key encoder -> unshuffle_batch``, with
every ``BatchNorm2d`` of the query and key encoders a ``SplitBatchNorm2d`` on one process.

Differences from the reference:
    * The EMA update runs in ``after_step`` (after the optimiser step) rather than at the start
      of the next forward pass. The key encoders that compute the keys are the same: the
      official first update is a no-op (the copies are equal) and ours after the last step is
      never used.
    * MoCo v2's keys of a step are kept in a non-persistent attribute and enqueued in
      ``after_step``, after ``backward``: the queue is never modified while autograd still
      needs it, and it is not cloned for the logits (the official code clones it, 32 MB per
      step at K = 65536). ``after_step`` must therefore follow ``backward`` (the trainer does
      so); the keys of a ``training_step`` that is not followed by ``after_step`` are dropped.
    * The queue is a ring buffer ``[K, D]``: its size need not be a multiple of the global
      batch (the official code asserts that it is).
    * On one process, split-BN with shuffle replaces shuffle-BN (the official single-GPU
      demo's substitute). Whether the run is distributed is decided when the method is built.
    * MoCo v2's hidden width defaults to 2048 as in the paper; the official head's hidden
      width is the backbone's feature dimension (2048 for ResNet-50): pass
      ``hidden_dim=feature_dim`` to match it on other backbones.
    * MoCo v2's official SGD decays every parameter, biases and BatchNorm included; its presets
      set ``optim.decay_norm_and_bias=true`` to match (other methods exclude them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import (
    check_momentum,
    check_recipe,
    check_temperature,
    check_views,
    positive_int,
)
from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn.batchnorm import convert_to_split_batchnorm
from selfsup.nn.distributed import gather_no_grad, shuffle_batch, unshuffle_batch
from selfsup.nn.ema import EMATarget
from selfsup.nn.heads import mlp
from selfsup.nn.losses import infonce_queue_loss
from selfsup.nn.queue import MemoryQueue
from selfsup.views import MultiViewTransform, forward_by_size, moco_v2_view

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["MoCo", "moco_v2_projector"]


def moco_v2_projector(
    feature_dim: int, hidden_dim: int = 2048, out_dim: int = 128
) -> nn.Sequential:
    """MoCo v2 head: ``Linear(feature_dim, hidden) - ReLU - Linear(hidden, out)``, no BatchNorm.

    Encoder features ``[B, feature_dim]`` -> projections ``[B, out_dim]``; both Linear layers
    have a bias, as in the official code (``--mlp``).

    Example:
        >>> head = moco_v2_projector(512, 64, 16)
        >>> [type(m).__name__ for m in head], head(torch.randn(3, 512)).shape
        (['Linear', 'ReLU', 'Linear'], torch.Size([3, 16]))
    """
    return mlp(feature_dim, hidden_dim, out_dim, num_layers=2, batch_norm=False)


@register_method(
    "moco",
    views=lambda cfg: [moco_v2_view(cfg.views.size)] * 2,
    multicrop=MultiCrop(count=0, scale=(0.05, 0.14)),
)
class MoCo(Method):
    r"""MoCo v2: query encoder + EMA key encoder + queue of negatives, InfoNCE on one direction.

    View 1 is the query view, view 2 the key view. The key encoder (``target``) is
    ``make_target(backbone -> projector)``, updated with constant momentum ``m`` in
    ``after_step``, which then enqueues the step's (globally gathered) keys.

    Args:
        backbone: the query backbone (``encoder`` for evaluation).
        projector: features ``[B, F]`` -> projections ``[B, proj_out_dim]``
            (:func:`moco_v2_projector`).
        view_recipe: two views per image (:func:`selfsup.views.moco_v2_view`, twice).
        temperature: :math:`T > 0`; 0.2 for v2, 0.07 for v1.
        queue_size: number of negative keys :math:`K` (65536 on ImageNet); at least the global
            batch size.
        momentum: key encoder momentum :math:`m \in [0, 1]` (0.999).
        split_bn: normalise BatchNorm2d over this many sub-batches of each process's batch, in
            the query and key encoders (one process: 8, the official number of GPUs; W
            processes: 8 / W gives the official 8 BatchNorm groups); 0 or 1 for plain
            BatchNorm. The per-process batch must be a multiple of it. The key batch is
            shuffled across every process first (shuffle-BN).
        proj_out_dim: the projector's output dimension (the queue's key dimension).

    Logs ``embedding_std`` of the query projections (~``1/sqrt(D)`` when healthy, 0 when
    collapsed). Expect the loss to rise towards :math:`\ln(K + 1)` while the queue fills (the
    keys of a young encoder are all alike, and ``embedding_std`` dips with them) and to fall
    only after that.

    Example:
        >>> from selfsup.views import ViewSpec
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform([ViewSpec(size=8, blur_p=0.0)] * 2, [0.5], [0.25])
        >>> method = MoCo(backbone, moco_v2_projector(32, 64, 16), recipe, queue_size=32,
        ...               proj_out_dim=16)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.backward()
        >>> method.after_step(Progress(step=0, total_steps=10, epoch=0, steps_per_epoch=10))
        >>> int(method.queue.ptr)  # the 4 keys of the step are in the queue
        4
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        view_recipe: MultiViewTransform,
        temperature: float = 0.2,
        queue_size: int = 65536,
        momentum: float = 0.999,
        split_bn: int = 8,
        *,
        proj_out_dim: int,
    ) -> None:
        super().__init__(backbone, view_recipe)
        check_recipe(view_recipe, "MoCo", "selfsup.views.moco_v2_view(size), twice")
        check_temperature(temperature, "MoCo v2 uses 0.2, MoCo v1 0.07")
        positive_int(
            queue_size, "queue_size", "MoCo uses 65536; it must be at least the global batch"
        )
        check_momentum(momentum, "momentum", "MoCo uses 0.999")
        if isinstance(split_bn, bool) or not isinstance(split_bn, int) or split_bn < 0:
            raise ValueError(
                f"split_bn must be an integer >= 0, got {split_bn!r}; use 8 (the official "
                "number of GPUs) on one process, or 0 for plain BatchNorm"
            )
        positive_int(
            proj_out_dim, "proj_out_dim", "pass the projector's output dimension (128 in MoCo v2)"
        )
        self.projector = projector
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        # Split-BN: each process's batch as several BatchNorm groups, as on that many GPUs.
        self.split_bn = split_bn if split_bn > 1 else 0
        if self.split_bn:
            self.backbone = convert_to_split_batchnorm(self.backbone, self.split_bn)
            self.projector = convert_to_split_batchnorm(self.projector, self.split_bn)
        # The key encoder f_k: no gradient, constant momentum, moved by after_step.
        self.target = EMATarget(nn.Sequential(self.backbone, self.projector), momentum, "constant")
        self.queue = MemoryQueue(proj_out_dim, queue_size)  # keys [K, D] + ptr, checkpointed
        # Keys of the latest training_step, enqueued by after_step (never checkpointed: the
        # trainer saves after after_step, when it is None).
        self._pending_keys: Tensor | None = None

    @classmethod
    def from_config(cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform) -> MoCo:
        m = cfg.moco
        return cls(
            backbone,
            moco_v2_projector(feature_dim(backbone), m.proj_hidden_dim, m.proj_out_dim),
            view_recipe,
            temperature=m.temperature,
            queue_size=m.queue_size,
            momentum=m.momentum,
            split_bn=m.split_bn,
            proj_out_dim=m.proj_out_dim,
        )

    def training_step(self, views: list[Tensor]) -> StepOutput:
        check_views(views, "MoCo")
        x_k = views[1]  # [N, C, H, W]: the key view; the others are queries
        queries = [views[0], *views[2:]]
        h = forward_by_size(self.backbone, queries)  # [N, feature_dim] per query view
        q = self.projector(torch.cat(h))  # [Q N, D]
        with torch.no_grad():  # no gradient to keys
            x_shuffled, unshuffle = shuffle_batch(x_k)  # shuffle-BN / split-BN on a random mix
            k = unshuffle_batch(self.target(x_shuffled), unshuffle)  # [N, D], rows of x_k
            k = F.normalize(k.float(), dim=1)
        losses = [
            infonce_queue_loss(q_v, k, self.queue.keys, self.temperature)
            for q_v in q.chunk(len(queries))
        ]
        loss = torch.stack(losses).mean()
        self._pending_keys = gather_no_grad(k)  # [W N, D], enqueued after the step
        q_detached = q.detach()
        logs = {"embedding_std": embedding_std(q_detached)}
        return StepOutput(loss, logs, q_detached, features=h[0].detach())

    def after_step(self, progress: Progress) -> None:
        r"""Key encoder EMA :math:`\theta_k \leftarrow m\theta_k + (1 - m)\theta_q` (parameters
        only; it keeps its BN statistics), then enqueue the keys of the step just taken."""
        self.target.update(progress.step, progress.total_steps)
        if self._pending_keys is not None:
            self.queue.enqueue(self._pending_keys)
            self._pending_keys = None

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, momentum={self.momentum}, split_bn={self.split_bn}"
