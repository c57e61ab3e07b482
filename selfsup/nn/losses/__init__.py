"""Self-supervised objectives as small, typed, stand-alone modules.

Each loss is a function (``nt_xent_loss``) plus an ``nn.Module`` wrapper holding its
hyperparameters (``NTXentLoss``), so it drops into any training loop. Losses that compare
across devices take an explicit ``gather_distributed`` switch and are identical to the
single-process loss on the global batch when it is on.

``contrastive``: NT-Xent, InfoNCE with a queue, MoCo v3; ``regression``: BYOL, SimSiam;
``redundancy``: Barlow Twins, VICReg; ``swav``: SwAV's swapped prediction; ``dino``: DINO's
targets, loss and center; ``colorization``: the rebalanced cross-entropy on ab bins.
"""

from selfsup.nn.losses.colorization import rebalanced_soft_cross_entropy
from selfsup.nn.losses.contrastive import NTXentLoss, infonce_queue_loss, moco_v3_loss, nt_xent_loss
from selfsup.nn.losses.dino import DINOLoss, dino_cross_entropy, dino_loss, dino_teacher_probs
from selfsup.nn.losses.redundancy import (
    BarlowTwinsLoss,
    VICRegLoss,
    barlow_twins_loss,
    barlow_twins_terms,
    cross_correlation,
    off_diagonal,
    vicreg_loss,
    vicreg_terms,
)
from selfsup.nn.losses.regression import byol_loss, simsiam_loss
from selfsup.nn.losses.swav import swapped_prediction_loss

__all__ = [
    "BarlowTwinsLoss",
    "DINOLoss",
    "NTXentLoss",
    "VICRegLoss",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "byol_loss",
    "cross_correlation",
    "dino_cross_entropy",
    "dino_loss",
    "dino_teacher_probs",
    "infonce_queue_loss",
    "moco_v3_loss",
    "nt_xent_loss",
    "off_diagonal",
    "rebalanced_soft_cross_entropy",
    "simsiam_loss",
    "swapped_prediction_loss",
    "vicreg_loss",
    "vicreg_terms",
]
