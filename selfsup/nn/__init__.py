"""Building blocks shared by the methods: losses, heads and distributed helpers."""

from selfsup.nn.distributed import (
    all_reduce_mean,
    gather_no_grad,
    gather_with_grad,
    is_distributed,
    rank,
    world_size,
)
from selfsup.nn.heads import ScaleOnlyBatchNorm1d, mlp, simclr_projector
from selfsup.nn.losses import NTXentLoss, nt_xent_loss

__all__ = [
    "NTXentLoss",
    "ScaleOnlyBatchNorm1d",
    "all_reduce_mean",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "mlp",
    "nt_xent_loss",
    "rank",
    "simclr_projector",
    "world_size",
]
