"""Building blocks shared by the methods: losses, heads, EMA targets, queues, distributed helpers."""

from selfsup.nn.batchnorm import SplitBatchNorm2d, convert_to_split_batchnorm
from selfsup.nn.distributed import (
    all_reduce_max,
    all_reduce_mean,
    all_reduce_sum,
    gather_no_grad,
    gather_with_grad,
    is_distributed,
    rank,
    shuffle_batch,
    unshuffle_batch,
    world_size,
)
from selfsup.nn.ema import (
    EMATarget,
    EMAUpdater,
    cosine_momentum,
    ema_update_,
    make_target,
    momentum_schedule,
)
from selfsup.nn.heads import ScaleOnlyBatchNorm1d, mlp, simclr_projector
from selfsup.nn.losses import (
    BarlowTwinsLoss,
    NTXentLoss,
    VICRegLoss,
    barlow_twins_loss,
    byol_loss,
    infonce_queue_loss,
    moco_v3_loss,
    nt_xent_loss,
    simsiam_loss,
    swapped_prediction_loss,
    vicreg_loss,
)
from selfsup.nn.masking import num_kept, patchify, random_masking, unpatchify
from selfsup.nn.queue import MemoryQueue
from selfsup.nn.sinkhorn import sinkhorn_knopp

__all__ = [
    "BarlowTwinsLoss",
    "EMATarget",
    "EMAUpdater",
    "MemoryQueue",
    "NTXentLoss",
    "ScaleOnlyBatchNorm1d",
    "SplitBatchNorm2d",
    "VICRegLoss",
    "all_reduce_max",
    "all_reduce_mean",
    "all_reduce_sum",
    "barlow_twins_loss",
    "byol_loss",
    "convert_to_split_batchnorm",
    "cosine_momentum",
    "ema_update_",
    "gather_no_grad",
    "gather_with_grad",
    "infonce_queue_loss",
    "is_distributed",
    "make_target",
    "mlp",
    "moco_v3_loss",
    "momentum_schedule",
    "nt_xent_loss",
    "num_kept",
    "patchify",
    "random_masking",
    "rank",
    "shuffle_batch",
    "simclr_projector",
    "simsiam_loss",
    "sinkhorn_knopp",
    "swapped_prediction_loss",
    "unpatchify",
    "unshuffle_batch",
    "vicreg_loss",
    "world_size",
]
