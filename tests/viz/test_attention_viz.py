import numpy as np
import pytest
import torch

from selfsup.backbones.vit import VisionTransformer

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from selfsup.viz import cls_attention_maps, save_attention_maps  # noqa: E402


def _vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(16, 4, in_channels=1, embed_dim=32, depth=2, num_heads=4)


def test_maps_are_the_cls_row_of_the_last_attention_on_the_patch_grid():
    vit = _vit().eval()
    x = torch.randn(2, 1, 16, 16)
    maps = cls_attention_maps(vit, x)
    attn = vit.last_attention(x)  # [2, 4, 17, 17]
    assert maps.shape == (2, 4, 4, 4)
    torch.testing.assert_close(maps.flatten(2), attn[:, :, 0, 1:])
    # with the cls token's own weight the row is a probability distribution
    torch.testing.assert_close(maps.sum((2, 3)) + attn[:, :, 0, 0], torch.ones(2, 4))
    # patch (row r, col c) is token 1 + r * cols + c
    assert maps[1, 2, 3, 1] == attn[1, 2, 0, 1 + 3 * 4 + 1]


def test_png_has_one_column_per_head_plus_image_and_mean(tmp_path):
    vit = _vit().train()
    images = torch.randint(0, 256, (5, 1, 20, 20), dtype=torch.uint8)  # resized to 16 px
    path = save_attention_maps(vit, images, tmp_path / "a" / "attn.png", [0.5], [0.25], 3, 32)
    png = Image.open(path)
    assert png.size == ((4 + 2) * 32, 3 * 32 + 24)
    assert vit.training  # mode restored
    pixels = np.asarray(png.convert("RGB"))[24:]
    heads = pixels[:, 32 : 5 * 32]
    assert heads.std() > 5  # maps are drawn, not blank


def test_refuses_a_non_vit_and_float_images(tmp_path):
    with pytest.raises(ValueError, match="ViT"):
        save_attention_maps(
            torch.nn.Conv2d(1, 1, 1),
            torch.zeros(1, 1, 8, 8, dtype=torch.uint8),
            tmp_path / "x.png",
            [0.5],
            [0.25],
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uint8"):
        save_attention_maps(_vit(), torch.rand(2, 1, 16, 16), tmp_path / "x.png", [0.5], [0.25])
