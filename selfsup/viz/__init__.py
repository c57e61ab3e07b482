"""Figures users expect from self-supervised models (matplotlib, Agg canvas; ``selfsup[viz]``)."""

from selfsup.viz.mae import save_reconstruction_grid

__all__ = ["save_reconstruction_grid"]
