"""Figures users expect from self-supervised models (matplotlib, Agg canvas; ``selfsup[viz]``)."""

from selfsup.viz.attention import cls_attention_maps, save_attention_maps
from selfsup.viz.colorization import save_colorization_grid
from selfsup.viz.mae import save_reconstruction_grid

__all__ = [
    "cls_attention_maps",
    "save_attention_maps",
    "save_colorization_grid",
    "save_reconstruction_grid",
]
