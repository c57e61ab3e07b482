"""Self-supervised objectives as small, typed, stand-alone modules.

Each loss is a function (``nt_xent_loss``) plus an ``nn.Module`` wrapper holding its
hyperparameters (``NTXentLoss``), so it drops into any training loop. Losses that compare
across devices take an explicit ``gather_distributed`` switch and are identical to the
single-process loss on the global batch when it is on.

``contrastive``: NT-Xent, InfoNCE with a queue, MoCo v3; ``regression``: BYOL; ``dino``: DINO's
targets, loss and center; ``colorization``: the rebalanced cross-entropy on ab bins.
"""

from selfsup.nn.losses.colorization import rebalanced_soft_cross_entropy
from selfsup.nn.losses.contrastive import NTXentLoss, infonce_queue_loss, moco_v3_loss, nt_xent_loss
from selfsup.nn.losses.dino import DINOLoss, dino_cross_entropy, dino_loss, dino_teacher_probs
from selfsup.nn.losses.regression import byol_loss

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
    "rebalanced_soft_cross_entropy",
]
