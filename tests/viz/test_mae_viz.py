import numpy as np
import pytest
import torch

from selfsup.backbones.vit import VisionTransformer
from selfsup.methods.mae import MAE
from selfsup.views import MultiViewTransform, ViewSpec

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from selfsup.viz import save_reconstruction_grid  # noqa: E402
from selfsup.viz.mae import MASK_COLOR  # noqa: E402


def _mae() -> MAE:
    torch.manual_seed(0)
    vit = VisionTransformer(16, 4, in_channels=1, embed_dim=32, depth=1, num_heads=2)
    spec = ViewSpec(size=16, crop_scale=(0.2, 1.0), jitter_p=0, gray_p=0, blur_p=0)
    return MAE(vit, MultiViewTransform([spec], [0.5], [0.25]), 0.75, 32, 1, 2)


def test_writes_a_png_of_the_documented_pixel_size(tmp_path):
    method = _mae().train()
    images = torch.randint(0, 256, (5, 1, 20, 20), dtype=torch.uint8)  # resized to 16 px
    path = save_reconstruction_grid(
        method,
        images,
        tmp_path / "figs" / "mae.png",
        [0.5],
        [0.25],
        generator=torch.Generator().manual_seed(0),
        max_images=3,
        cell_px=64,
    )
    assert path.exists() and path.suffix == ".png"
    png = Image.open(path)
    assert png.format == "PNG"
    assert png.size == (3 * 64, 3 * 64 + 24)  # 3 columns x 3 rows (max_images) + title strip
    assert method.training  # mode restored
    # The middle column draws the removed patches in MASK_COLOR, the others never do.
    pixels = np.asarray(png.convert("RGB")).astype(int)
    color = np.array([round(255 * c) for c in MASK_COLOR])
    is_mask = (np.abs(pixels - color).max(axis=-1) <= 2)[24:]
    middle, sides = is_mask[:, 64:128], np.concatenate([is_mask[:, :64], is_mask[:, 128:]], 1)
    assert middle.mean() > 0.3 and sides.sum() == 0


def test_refuses_float_images(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_reconstruction_grid(
            _mae(), torch.rand(2, 1, 16, 16), tmp_path / "x.png", [0.5], [0.25]
        )
