"""selfsup: self-supervised visual representation learning on PyTorch.

The building blocks (losses, heads, views, optimisers, schedules, evaluation) work in any training
loop; the :class:`Trainer` and the ``selfsup`` command are built from the same blocks.
Imports are lazy so that ``import selfsup`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "selfsup.config",
    "apply_overrides": "selfsup.config",
    "Trainer": "selfsup.train.trainer",
    "TrainStep": "selfsup.train.step",
    "keep_freed_memory": "selfsup.train.allocator",
    "EMATarget": "selfsup.nn.ema",
    "register_method": "selfsup.methods.registry",
    "SimCLR": "selfsup.methods",
    "MoCo": "selfsup.methods",
    "MoCoV3": "selfsup.methods",
    "BYOL": "selfsup.methods",
    "MAE": "selfsup.methods",
    "DINO": "selfsup.methods",
    "Rotation": "selfsup.methods",
    "Jigsaw": "selfsup.methods",
    "Colorization": "selfsup.methods",
    "SimSiam": "selfsup.methods",
    "BarlowTwins": "selfsup.methods",
    "VICReg": "selfsup.methods",
    "SwAV": "selfsup.methods",
    "Method": "selfsup.methods",
    "NTXentLoss": "selfsup.nn",
    "simclr_projector": "selfsup.nn",
    "BarlowTwinsLoss": "selfsup.nn",
    "VICRegLoss": "selfsup.nn",
    "sinkhorn_knopp": "selfsup.nn",
    "MultiViewTransform": "selfsup.views",
    "EvalTransform": "selfsup.views",
    "ViewSpec": "selfsup.views",
    "build_backbone": "selfsup.backbones",
    "load_dataset": "selfsup.data",
    "EpochLoader": "selfsup.data",
    "extract_features": "selfsup.eval.features",
    "knn_accuracy": "selfsup.eval.knn",
    "linear_probe": "selfsup.eval.linear",
    "load_encoder": "selfsup.eval.run",
    "evaluate_run": "selfsup.eval.run",
    "export_encoder": "selfsup.export",
    "load_exported": "selfsup.export",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'selfsup' has no attribute {name!r}")
