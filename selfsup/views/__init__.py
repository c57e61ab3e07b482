"""Batched views: random augmentations applied to a whole uint8 batch on the training device.

``ops`` holds the vectorised operations (each split into parameter sampling and application);
``spec`` holds :class:`ViewSpec`, one view's recipe; ``recipes`` the per-method presets;
``transforms`` the :class:`MultiViewTransform` and :class:`EvalTransform` that apply them;
``multicrop`` the pairs and the per-resolution forward of local crops; ``progressive`` the
views' side per step of progressive resizing (``views.progressive_start_size``).
"""

from selfsup.views.multicrop import crop_pairs, forward_by_size, size_groups
from selfsup.views.progressive import progressive_size, progressive_sizes
from selfsup.views.recipes import (
    byol_local_view,
    byol_views,
    colorization_view,
    dino_global_views,
    dino_local_view,
    dino_views,
    jigsaw_view,
    mae_view,
    moco_v2_view,
    rotation_view,
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
    "byol_local_view",
    "byol_views",
    "colorization_view",
    "crop_pairs",
    "dino_global_views",
    "dino_local_view",
    "dino_views",
    "forward_by_size",
    "jigsaw_view",
    "mae_view",
    "moco_v2_view",
    "progressive_size",
    "progressive_sizes",
    "rotation_view",
    "simclr_small_view",
    "simclr_view",
    "size_groups",
    "swav_view",
]
