"""SSL methods, one file each, and the registry that builds them from a config."""

from selfsup.methods.base import Method, Progress, StepOutput, embedding_std
from selfsup.methods.simclr import SimCLR

METHOD_CLASSES: dict[str, type[Method]] = {SimCLR.name: SimCLR}

__all__ = ["METHOD_CLASSES", "Method", "Progress", "SimCLR", "StepOutput", "embedding_std"]
