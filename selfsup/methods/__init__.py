"""SSL methods, one file each, mapping to their papers."""

from selfsup.methods.barlow import BarlowTwins
from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.byol import BYOL
from selfsup.methods.colorization import Colorization
from selfsup.methods.dino import DINO
from selfsup.methods.jigsaw import Jigsaw
from selfsup.methods.mae import MAE
from selfsup.methods.moco import MoCo
from selfsup.methods.mocov3 import MoCoV3
from selfsup.methods.rotation import Rotation
from selfsup.methods.simclr import SimCLR
from selfsup.methods.simsiam import SimSiam
from selfsup.methods.swav import SwAV
from selfsup.methods.vicreg import VICReg

METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        *(SimCLR, MoCo, MoCoV3, BYOL, MAE, DINO, SimSiam, BarlowTwins, VICReg, SwAV),
        *(Rotation, Jigsaw, Colorization),  # the pretext tasks
    )
}

__all__ = [
    "BYOL",
    "DINO",
    "MAE",
    "METHOD_CLASSES",
    "BarlowTwins",
    "Colorization",
    "Jigsaw",
    "Method",
    "MoCo",
    "MoCoV3",
    "Progress",
    "Rotation",
    "SimCLR",
    "SimSiam",
    "StepOutput",
    "SwAV",
    "VICReg",
    "embedding_std",
]
