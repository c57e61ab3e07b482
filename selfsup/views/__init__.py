"""Batched views: random augmentations applied to a whole uint8 batch on the training device.

``ops`` holds the vectorised operations (each split into parameter sampling and application);
``spec`` holds :class:`ViewSpec`, one view's recipe; ``recipes`` the per-method presets;
``transforms`` the :class:`MultiViewTransform` and :class:`EvalTransform` that apply them.
"""

from selfsup.views.recipes import (
    byol_views,
    dino_views,
    mae_view,
    moco_v2_view,
    simclr_small_view,
    simclr_view,
    swav_view,
)
from selfsup.views.spec import ViewSpec
from selfsup.views.transforms import EvalTransform, MultiViewTransform

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
    "swav_view",
]
