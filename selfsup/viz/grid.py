"""A figure of image columns with titles, one row per image: what MAE's and Colorization's
pictures are drawn with (matplotlib on an Agg canvas, exact pixel size)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

__all__ = ["HEADER_PX", "PAD_PX", "save_image_columns", "to_rgb"]

HEADER_PX = 24  # strip above the grid holding the column titles
PAD_PX = 2  # blank border inside each cell
_DPI = 100


def to_rgb(images: Tensor) -> Tensor:
    """``[N, C, H, W]`` in [0, 1] -> ``[N, H, W, 3]`` float on the CPU (grey is repeated)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.clamp(0.0, 1.0).permute(0, 2, 3, 1).float().cpu()


def save_image_columns(
    columns: Sequence[tuple[str, Tensor]], path: str | Path, cell_px: int = 128
) -> Path:
    """Write a PNG of titled columns: ``(title, images [N, H, W, 3] in [0, 1])`` each, with
    the same ``N``. The PNG is ``len(columns) * cell_px`` wide and ``N * cell_px + 24`` high;
    parent folders are created."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is a dev dependency
        raise ImportError("the figures need matplotlib: pip install 'selfsup[viz]'") from err
    rows = len(columns[0][1])
    width_px, height_px = len(columns) * cell_px, rows * cell_px + HEADER_PX
    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    inner = cell_px - 2 * PAD_PX
    for col, (title, column) in enumerate(columns):
        fig.text(
            (col + 0.5) * cell_px / width_px,
            1 - 0.5 * HEADER_PX / height_px,
            title,
            ha="center",
            va="center",
            fontsize=8 if cell_px < 128 else 10,
        )
        for row in range(rows):
            left = col * cell_px + PAD_PX
            bottom = height_px - HEADER_PX - (row + 1) * cell_px + PAD_PX
            ax = fig.add_axes(
                (left / width_px, bottom / height_px, inner / width_px, inner / height_px)
            )
            ax.imshow(column[row].numpy(), interpolation="nearest", vmin=0.0, vmax=1.0)
            ax.set_axis_off()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI, format="png")
    return out
