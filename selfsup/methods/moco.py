r"""MoCo: momentum contrast (He et al. 2020; v2: Chen et al. 2020; v3: Chen, Xie & He 2021).

**MoCo v2** (:class:`MoCo`). A query encoder :math:`f_q` (backbone + projector) is trained by
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

BatchNorm in the key encoder would let a query and its positive key communicate through the
batch statistics. The official code shuffles the key batch across GPUs (*shuffle-BN*); on one
process the official single-GPU demo normalises sub-batches separately (*split-BN*) and shuffles
the key batch. Both happen here: ``shuffle_batch -> key encoder -> unshuffle_batch``, with
every ``BatchNorm2d`` of the query and key encoders a ``SplitBatchNorm2d`` on one process.

**MoCo v3** (:class:`MoCoV3`). No queue: the keys are the momentum encoder's outputs for the
other view in the (global) batch. With :math:`q = h(g(f(x)))` (backbone, projector, predictor)
and :math:`k = g_m(f_m(x))` (momentum backbone and projector),

.. math::

    \mathrm{ctr}(q, k) = 2T \cdot \frac1N \sum_{i} -\log
        \frac{\exp(q_i \cdot k_i / T)}{\sum_{j} \exp(q_i \cdot k_j / T)},
    \qquad L = \mathrm{ctr}(q_1, k_2) + \mathrm{ctr}(q_2, k_1),

over L2-normalised vectors, with the momentum rising from :math:`m_0` to 1 on a half cosine.

Differences from the reference:
    * The EMA update runs in ``after_step`` (after the optimiser step) rather than at the start
      of the next forward pass. The key encoders that compute the keys are the same: the
      official first update is a no-op (the copies are equal) and ours after the last step is
      never used. MoCo v3's update after step ``k`` (0-based) uses :math:`m_{k+1}`, which is
      the official momentum of the forward pass it precedes, so the last update uses exactly 1.
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
    * MoCo v3's heads default to the ViT layout of the official code (3-layer projector);
      its ResNet layout is a 2-layer projector (``num_layers=2``). The predictor ends without
      BatchNorm as for ResNet (ViT: ``last_batch_norm=True``). The temperature defaults to 0.2
      (official ViT recipe); the official ResNet-50 recipe uses 1.0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.nn.batchnorm import convert_to_split_batchnorm
from selfsup.nn.distributed import gather_no_grad, is_distributed, shuffle_batch, unshuffle_batch
from selfsup.nn.ema import EMAUpdater, make_target, momentum_after_step
from selfsup.nn.heads import mlp
from selfsup.nn.losses import infonce_queue_loss, moco_v3_loss
from selfsup.nn.queue import MemoryQueue
from selfsup.views import MultiViewTransform

__all__ = ["MoCo", "MoCoV3", "moco_v2_projector", "moco_v3_predictor", "moco_v3_projector"]


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


def moco_v3_projector(
    feature_dim: int, hidden_dim: int = 4096, out_dim: int = 256, num_layers: int = 3
) -> nn.Sequential:
    """MoCo v3 projector: ``[Linear - BN - ReLU] * (num_layers - 1) - Linear - BN(no affine)``.

    Encoder features ``[B, feature_dim]`` -> projections ``[B, out_dim]``. No Linear layer has
    a bias (BatchNorm follows each). ``num_layers`` is 3 in the official ViT recipe and 2 in the
    official ResNet recipe.

    Example:
        >>> head = moco_v3_projector(512, 64, 16)
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


def _check_recipe(view_recipe: MultiViewTransform, method: str, views_fn: str) -> None:
    if view_recipe.num_views != 2:
        raise ValueError(
            f"{method} uses exactly 2 views, the recipe makes {view_recipe.num_views}; "
            f"build it from {views_fn}"
        )


def _check_views(views: list[Tensor], method: str) -> None:
    if len(views) != 2:
        raise ValueError(
            f"{method} uses exactly 2 views, got {len(views)}; pass the output of "
            "method.make_views(images)"
        )


def _check_temperature(temperature: float, typical: str) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}; {typical}")


def _check_momentum(momentum: float, name: str, typical: str) -> None:
    if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
        raise ValueError(
            f"{name} must be in [0, 1], got {momentum}; 1 freezes the key encoder, {typical}"
        )


def _positive_int(value: int, name: str, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; {hint}")


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
        split_bn: on one process, normalise BatchNorm2d over this many sub-batches in the query
            and key encoders (8, the official number of GPUs); 0 or 1 for plain BatchNorm.
            The per-step batch must be a multiple of it. Ignored when distributed (shuffle-BN
            across processes does the job).
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

    name = "moco"

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
        _check_recipe(view_recipe, "MoCo", "selfsup.views.moco_v2_view(size), twice")
        _check_temperature(temperature, "MoCo v2 uses 0.2, MoCo v1 0.07")
        _positive_int(
            queue_size, "queue_size", "MoCo uses 65536; it must be at least the global batch"
        )
        _check_momentum(momentum, "momentum", "MoCo uses 0.999")
        if isinstance(split_bn, bool) or not isinstance(split_bn, int) or split_bn < 0:
            raise ValueError(
                f"split_bn must be an integer >= 0, got {split_bn!r}; use 8 (the official "
                "number of GPUs) on one process, or 0 for plain BatchNorm"
            )
        _positive_int(
            proj_out_dim, "proj_out_dim", "pass the projector's output dimension (128 in MoCo v2)"
        )
        self.projector = projector
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        # Split-BN is the single-process substitute for shuffle-BN across GPUs.
        self.split_bn = split_bn if split_bn > 1 and not is_distributed() else 0
        if self.split_bn:
            self.backbone = convert_to_split_batchnorm(self.backbone, self.split_bn)
            self.projector = convert_to_split_batchnorm(self.projector, self.split_bn)
        online = nn.Sequential(self.backbone, self.projector)  # a view, not stored
        self.target = make_target(online)  # the key encoder f_k, no gradient
        self._ema = EMAUpdater(self.target, online, buffers="keep")  # not a module
        self.queue = MemoryQueue(proj_out_dim, queue_size)  # keys [K, D] + ptr, checkpointed
        # Keys of the latest training_step, enqueued by after_step (never checkpointed: the
        # trainer saves after after_step, when it is None).
        self._pending_keys: Tensor | None = None

    def training_step(self, views: list[Tensor]) -> StepOutput:
        _check_views(views, "MoCo")
        x_q, x_k = views  # [N, C, H, W] each: query view, key view
        q = self.projector(self.backbone(x_q))  # [N, D]
        with torch.no_grad():  # no gradient to keys
            x_shuffled, unshuffle = shuffle_batch(x_k)  # shuffle-BN / split-BN on a random mix
            k = unshuffle_batch(self.target(x_shuffled), unshuffle)  # [N, D], rows of x_k
            k = F.normalize(k.float(), dim=1)
        loss = infonce_queue_loss(q, k, self.queue.keys, self.temperature)
        self._pending_keys = gather_no_grad(k)  # [W N, D], enqueued after the step
        q_detached = q.detach()
        return StepOutput(loss, {"embedding_std": embedding_std(q_detached)}, q_detached)

    def after_step(self, progress: Progress) -> None:
        r"""Key encoder EMA :math:`\theta_k \leftarrow m\theta_k + (1 - m)\theta_q` (parameters
        only; it keeps its BN statistics), then enqueue the keys of the step just taken."""
        del progress  # constant momentum
        self._ema.update(self.momentum)
        if self._pending_keys is not None:
            self.queue.enqueue(self._pending_keys)
            self._pending_keys = None

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, momentum={self.momentum}, split_bn={self.split_bn}"


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
        temperature: :math:`T > 0`; 0.2 (official ViT recipe), 1.0 (official ResNet recipe).
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

    name = "mocov3"
    target_momentum: Tensor  # registered buffer, 0-d

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        view_recipe: MultiViewTransform,
        temperature: float = 0.2,
        momentum_base: float = 0.99,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone, view_recipe)
        _check_recipe(view_recipe, "MoCo v3", "selfsup.views.byol_views(size)")
        _check_temperature(temperature, "MoCo v3 uses 0.2 (ViT) or 1.0 (ResNet)")
        _check_momentum(momentum_base, "momentum_base", "MoCo v3 starts at 0.99")
        self.projector = projector
        self.predictor = predictor
        self.temperature = float(temperature)
        self.momentum_base = float(momentum_base)
        self.gather_distributed = gather_distributed
        online = nn.Sequential(backbone, projector)  # a view of the online modules, not stored
        self.target = make_target(online)  # momentum backbone -> projector, no gradient
        self._ema = EMAUpdater(self.target, online, buffers="keep")  # not a module
        self.register_buffer("target_momentum", torch.tensor(self.momentum_base))

    def momentum_at(self, progress: Progress) -> float:
        r""":math:`m_{k+1}` for the EMA update after step :math:`k` = ``progress.step``."""
        return momentum_after_step(self.momentum_base, progress.step, progress.total_steps)

    def training_step(self, views: list[Tensor]) -> StepOutput:
        _check_views(views, "MoCo v3")
        x1, x2 = views  # [N, C, H, W] each
        q1 = self.predictor(self.projector(self.backbone(x1)))  # [N, D]
        q2 = self.predictor(self.projector(self.backbone(x2)))  # [N, D]
        with torch.no_grad():  # keys: momentum encoder, no gradient
            k1 = self.target(x1)  # [N, D]
            k2 = self.target(x2)  # [N, D]
        t, gather = self.temperature, self.gather_distributed
        loss = moco_v3_loss(q1, k2, t, gather) + moco_v3_loss(q2, k1, t, gather)
        q = torch.cat([q1, q2]).detach()  # [2N, D]
        logs = {
            "embedding_std": embedding_std(q),
            "target_momentum": self.target_momentum.detach().clone(),
        }
        return StepOutput(loss, logs, q)

    def after_step(self, progress: Progress) -> None:
        r"""EMA of backbone and projector into the target with the cosine momentum
        :math:`m_{k+1}` (parameters only; the target keeps its BN statistics)."""
        momentum = self.momentum_at(progress)
        self._ema.update(momentum)
        self.target_momentum.fill_(momentum)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, momentum_base={self.momentum_base}, "
            f"gather_distributed={self.gather_distributed}"
        )
