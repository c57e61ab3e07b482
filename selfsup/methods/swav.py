r"""SwAV: swapping assignments between views (Caron et al., 2020).

Every crop of an image is embedded and scored against :math:`K` learnable prototypes
:math:`C = [c_1, \dots, c_K]` (unit vectors); the 2 global crops are assigned *codes* by
Sinkhorn-Knopp, an equipartitioned soft clustering of the batch, and every other crop must
predict them:

.. math::

    z_v = \frac{g(f(x_v))}{\lVert g(f(x_v)) \rVert_2}, \quad s_v = z_v^\top C, \qquad
    q_t = \mathrm{SinkhornKnopp}\bigl(\mathrm{sg}(s_t)\bigr)
    \;\; (\epsilon = 0.05,\ 3 \text{ iterations}),

.. math::

    \ell(q_t, s_v) = -\sum_k q_{t,k} \log \mathrm{softmax}(s_v / \tau)_k, \qquad
    \mathcal{L} = \frac{1}{2 (V - 1)} \sum_{t \in \{1, 2\}} \sum_{v \ne t} \ell(q_t, s_v),

with :math:`\tau = 0.1`, averaged over the batch. The equipartition (every prototype receives
:math:`B / K` samples of the batch) is what prevents collapse: a constant embedding cannot be
split evenly and so cannot predict its codes. The codes come from the global crops only,
without gradient; the prototypes are normalised at the start of every step (so a resumed run
normalises exactly where the uninterrupted one does) and receive no gradient during the first
``freeze_prototypes_epochs`` (counted in steps).

For small batches (:math:`B \ll K`) an optional queue of the embeddings of past batches joins
each global crop's batch in Sinkhorn-Knopp (3840 rows at batch 256 in the official recipe):
filled from ``queue_start_epoch`` on, used once full, held in the method's buffers, so a
checkpoint carries it and a resumed run continues with it.

Defaults (``SwAVConfig``): projector 2048 -> 128, 3000 prototypes, LARS with the official
batch-256 recipe scaled linearly (0.6 x B/256, cosine to 1/1000, no warm-up, weight decay
1e-6), crops 2 x 224 (area 0.14-1) + 6 x 96 (area 0.05-0.14), SimCLR's colour distortion
and blur for every crop.

Differences from the reference:
    * LARS leaves biases and BatchNorm parameters out of weight decay and the trust ratio; the
      official LARC wrapper adapts and decays every parameter.
    * The queue is a ring buffer (the official code shifts its rows every step); Sinkhorn-Knopp
      treats the rows as a set, so the codes are the same. It is written after the optimiser
      step (``after_step``) instead of before the loss; the codes see the same rows.
    * Sinkhorn-Knopp subtracts the global maximum score before the exponential (the official
      code does not; the result is the same, without overflow).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods._checks import check_recipe, check_views, positive_int
from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.registry import MultiCrop, register_method
from selfsup.nn import distributed
from selfsup.nn.heads import mlp
from selfsup.nn.losses import swapped_prediction_loss
from selfsup.nn.queue import MemoryQueue
from selfsup.nn.sinkhorn import sinkhorn_knopp
from selfsup.views import MultiViewTransform, crop_pairs, forward_by_size, swav_view

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["SwAV", "swav_projector"]

NUM_CODE_CROPS = 2  # codes are computed for the 2 global crops (official crops_for_assign 0 1)


def swav_projector(feature_dim: int, hidden_dim: int = 2048, out_dim: int = 128) -> nn.Sequential:
    """SwAV projector: ``Linear(feature_dim, hidden) - BN - ReLU - Linear(hidden, out_dim)``.

    The hidden Linear has no bias (BN follows); the last one has one, as in the official head.
    Its output is L2-normalised by the method before the prototypes.

    Example:
        >>> swav_projector(512, 64, 16)(torch.randn(4, 512)).shape
        torch.Size([4, 16])
    """
    return mlp(feature_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)


def _forget_queue_rows(module: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict``: the host mirror of ``queue_rows`` is re-read on next use."""
    del incompatible_keys
    if isinstance(module, SwAV):
        module._queue_rows = None


@register_method(
    "swav",
    views=lambda cfg: [swav_view(cfg.views.size)] * 2,  # global crops: area 0.14-1
    multicrop=MultiCrop(count=6, scale=(0.05, 0.14)),  # the paper's 2 x 224 + 6 x 96
)
class SwAV(Method):
    r"""SwAV = backbone + projector + prototypes; Sinkhorn-Knopp codes, swapped prediction.

    Args:
        backbone: the encoder (``encoder`` for evaluation).
        projector: features ``[B, F]`` -> ``[B, D]`` (:func:`swav_projector`).
        view_recipe: the 2 global crops first, then any local crops.
        proj_out_dim: :math:`D`, the projector's output dimension.
        num_prototypes: :math:`K` (3000).
        temperature: :math:`\tau` of the predictions (0.1).
        epsilon: Sinkhorn-Knopp's entropic regularisation (0.05).
        sinkhorn_iterations: Sinkhorn-Knopp's iterations (3).
        freeze_prototypes_epochs: epochs (in steps) without prototype updates (1).
        queue_length: past embeddings per global crop added to Sinkhorn-Knopp's batch (global
            count, split evenly over processes); 0 = no queue.
        queue_start_epoch: the epoch from which the queue is filled (15).
        gather_distributed: Sinkhorn-Knopp's marginals over the global batch.

    Logs ``code_entropy`` (mean entropy of the codes in nats: :math:`\ln K` = uniform codes,
    0 = hard assignments), ``queue_in_use`` (1 once the queue joins the codes) and
    ``embedding_std`` of the normalised embeddings of the global crops.

    Example:
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        >>> recipe = MultiViewTransform([swav_view(8)] * 2, mean=[0.5], std=[0.25])
        >>> method = SwAV(backbone, swav_projector(32, 32, 16), recipe, proj_out_dim=16,
        ...               num_prototypes=10, queue_length=8, queue_start_epoch=0)
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> method.after_step(Progress(step=0, total_steps=10, epoch=0, steps_per_epoch=10))
        >>> int(method.queue_rows), out.logs["queue_in_use"].item()  # 4 of 8 rows filled
        (4, 0.0)
    """

    rank_local_state = ("queue.",)  # each process queues its own embeddings (official)
    queue_rows: Tensor  # 0-d int64 buffer: rows of each queue written so far (at most its size)

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        view_recipe: MultiViewTransform,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        freeze_prototypes_epochs: float = 1.0,
        queue_length: int = 0,
        queue_start_epoch: int = 15,
        gather_distributed: bool = True,
        *,
        proj_out_dim: int,
    ) -> None:
        super().__init__(backbone, view_recipe)
        check_recipe(view_recipe, "SwAV", "[selfsup.views.swav_view(size)] * 2 + local crops")
        positive_int(proj_out_dim, "proj_out_dim", "pass the projector's output (128 in SwAV)")
        if isinstance(num_prototypes, bool) or not isinstance(num_prototypes, int):
            raise ValueError(f"num_prototypes must be an integer, got {num_prototypes!r}")
        if num_prototypes < 2:
            raise ValueError(
                f"num_prototypes must be >= 2, got {num_prototypes}; SwAV uses 3000 on ImageNet"
            )
        for name, value, typical in (
            ("temperature", temperature, "SwAV uses 0.1"),
            ("epsilon", epsilon, "SwAV uses 0.05"),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}; {typical}")
        positive_int(sinkhorn_iterations, "sinkhorn_iterations", "SwAV uses 3")
        if not (math.isfinite(freeze_prototypes_epochs) and freeze_prototypes_epochs >= 0):
            raise ValueError(
                f"freeze_prototypes_epochs must be >= 0, got {freeze_prototypes_epochs}; SwAV "
                "freezes them for 1 epoch"
            )
        if isinstance(queue_length, bool) or not isinstance(queue_length, int) or queue_length < 0:
            raise ValueError(
                f"queue_length must be an integer >= 0 (0 = no queue), got {queue_length!r}"
            )
        if queue_start_epoch < 0:
            raise ValueError(f"queue_start_epoch must be >= 0, got {queue_start_epoch}")
        self.projector = projector
        # The prototypes C: rows are unit vectors, renormalised at the start of every step.
        self.prototypes = nn.Linear(proj_out_dim, num_prototypes, bias=False)
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iterations = sinkhorn_iterations
        self.freeze_prototypes_epochs = float(freeze_prototypes_epochs)
        self.queue_start_epoch = queue_start_epoch
        self.gather_distributed = gather_distributed
        # One queue per global crop, of this process's share of queue_length (official). Its
        # rows are only read once all are written, so their random initial values never count.
        rows = queue_length // (distributed.world_size() if gather_distributed else 1)
        self.queue_size = rows  # rows of each queue on this process
        self.queue = (
            nn.ModuleList(MemoryQueue(proj_out_dim, rows) for _ in range(NUM_CODE_CROPS))
            if rows > 0
            else None
        )
        self.register_buffer("queue_rows", torch.zeros((), dtype=torch.long))
        # Host mirror of queue_rows, so the step never reads the buffer back: filled on first
        # use, kept by after_step, forgotten when a state dict is loaded.
        self._queue_rows: int | None = None
        self.register_load_state_dict_post_hook(_forget_queue_rows)
        self._pending: Tensor | None = None  # [2, B, D] embeddings to enqueue after the step

    @classmethod
    def from_config(cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform) -> SwAV:
        s = cfg.swav
        return cls(
            backbone,
            swav_projector(feature_dim(backbone), s.proj_hidden_dim, s.proj_out_dim),
            view_recipe,
            num_prototypes=s.num_prototypes,
            temperature=s.temperature,
            epsilon=s.epsilon,
            sinkhorn_iterations=s.sinkhorn_iterations,
            freeze_prototypes_epochs=s.freeze_prototypes_epochs,
            queue_length=s.queue_length,
            queue_start_epoch=s.queue_start_epoch,
            gather_distributed=s.gather_distributed,
            proj_out_dim=s.proj_out_dim,
        )

    @property
    def queue_in_use(self) -> bool:
        """Whether the queue is full, so its rows join Sinkhorn-Knopp's batch."""
        return self.queue is not None and self._known_rows() >= self.queue_size

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Rescale every prototype to unit length (the first thing of every step)."""
        weight = self.prototypes.weight  # [K, D]
        weight.copy_(F.normalize(weight, dim=1))

    def codes(self, scores: Tensor, crop: int) -> Tensor:
        """Sinkhorn-Knopp codes ``[B, K]`` of global crop ``crop``'s scores ``[B, K]``, with the
        crop's queue (scored against the current prototypes) when it is in use."""
        batch = scores.shape[0]
        with torch.no_grad():
            s = scores.detach().float()  # [B, K]
            if self.queue is not None and self.queue_in_use:
                queued = self._queue(crop).keys @ self.prototypes.weight.T  # [L, K]
                s = torch.cat([queued.float(), s])  # [L + B, K]
            q = sinkhorn_knopp(s, self.epsilon, self.sinkhorn_iterations, self.gather_distributed)
            return q[-batch:]  # [B, K]: the batch's own rows

    def training_step(self, views: list[Tensor]) -> StepOutput:
        check_views(views, "SwAV")
        self.normalize_prototypes()
        batch = views[0].shape[0]
        # One backbone pass per crop size (the globals together, the locals together), as the
        # official multi-crop forward: (h [B, F], z [B, D], scores [B, K]) per crop.
        out = forward_by_size(self._embed, views)
        scores = [s for _, _, s in out]
        codes = [self.codes(scores[t], t) for t in range(NUM_CODE_CROPS)]  # 2 x [B, K]
        pairs = crop_pairs(len(views), NUM_CODE_CROPS)  # (code crop, predicting crop)
        loss = swapped_prediction_loss(scores, codes, pairs, self.temperature)
        z_global = torch.cat([z for _, z, _ in out[:NUM_CODE_CROPS]]).detach()  # [2B, D]
        if self.queue is not None:
            self._pending = z_global.view(NUM_CODE_CROPS, batch, -1)
        q = torch.cat(codes)  # [2B, K]
        logs = {
            "code_entropy": -(q * q.clamp_min(1e-30).log()).sum(1).mean(),
            "queue_in_use": torch.tensor(float(self.queue_in_use), device=q.device),
            "embedding_std": embedding_std(z_global),
        }
        return StepOutput(loss, logs, z_global, features=out[0][0].detach())

    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.backbone(x)  # [B, feature_dim]
        z = F.normalize(self.projector(h), dim=1)  # [B, D], unit rows
        return h, z, self.prototypes(z)  # [B, F], [B, D], [B, K]: s = z . C

    def before_optimizer_step(self, progress: Progress) -> None:
        """No prototype update during the first ``freeze_prototypes_epochs`` (in steps)."""
        if progress.step < self.freeze_prototypes_epochs * progress.steps_per_epoch:
            self.prototypes.weight.grad = None

    def after_step(self, progress: Progress) -> None:
        """From ``queue_start_epoch`` on, write the step's global-crop embeddings into the
        queue (oldest rows first)."""
        pending, self._pending = self._pending, None
        if self.queue is None or pending is None or progress.epoch < self.queue_start_epoch:
            return
        for crop, embeddings in enumerate(pending):
            self._queue(crop).enqueue(embeddings)
        rows = min(self._known_rows() + pending.shape[1], self.queue_size)
        self.queue_rows.fill_(rows)
        self._queue_rows = rows

    def _queue(self, crop: int) -> MemoryQueue:
        assert self.queue is not None
        return cast(MemoryQueue, self.queue[crop])

    def _known_rows(self) -> int:
        if self._queue_rows is None:
            self._queue_rows = int(self.queue_rows)  # one read per construction or load
        return self._queue_rows

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"sinkhorn_iterations={self.sinkhorn_iterations}, "
            f"freeze_prototypes_epochs={self.freeze_prototypes_epochs}, queue={self.queue_size} rows "
            f"from epoch {self.queue_start_epoch}"
        )
