"""SSL methods, one file each, mapping to their papers."""

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

METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls for cls in (SimCLR, MoCo, MoCoV3, BYOL, MAE, DINO, Colorization)
}
METHOD_CLASSES |= {cls.name: cls for cls in (Rotation, Jigsaw)}  # pretext tasks

__all__ = [
    "BYOL",
    "DINO",
    "MAE",
    "METHOD_CLASSES",
    "Colorization",
    "Jigsaw",
    "Method",
    "MoCo",
    "MoCoV3",
    "Progress",
    "Rotation",
    "SimCLR",
    "StepOutput",
    "embedding_std",
]
