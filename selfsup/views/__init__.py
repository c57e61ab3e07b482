"""Batched views: random augmentations applied to a whole uint8 batch on the training device.

``ops`` holds the vectorised operations (each split into parameter sampling and application);
``recipes`` holds :class:`ViewSpec` and the transforms that turn a batch into views.
"""

from selfsup.views.recipes import (
    EvalTransform,
    MultiViewTransform,
    ViewSpec,
    byol_views,
    dino_views,
    mae_view,
    moco_v2_view,
    simclr_small_view,
    simclr_view,
)

__all__ = [
    "EvalTransform",
    "MultiViewTransform",
    "ViewSpec",
    "byol_views",
    "dino_views",
    "mae_view",
    "moco_v2_view",
    "simclr_small_view",
    "simclr_view",
]
