"""sRGB <-> CIE Lab (selfsup/views/ops/lab.py) against scikit-image's rgb2lab, an independent
implementation, and its own inverse."""

from __future__ import annotations

import pytest
import torch

from selfsup.views.ops.lab import LAB_WHITE, lab_to_rgb, lightness, rgb_to_lab

color = pytest.importorskip("skimage.color")


def _every_8bit_colour(step: int = 5) -> torch.Tensor:
    """A grid of 8-bit sRGB colours (every ``step`` levels, 0 and 255 included) as
    ``[3, N, 1]`` float64 images of one column."""
    levels = torch.cat([torch.arange(0, 255, step), torch.tensor([255])]).double() / 255
    grid = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij"))  # [3, n, n, n]
    return grid.reshape(3, -1, 1)


def test_rgb_to_lab_agrees_with_skimage_within_the_constants_difference():
    # skimage's sRGB matrix and D65 white have 6 digits, ours are the standard's 4 (white = the
    # matrix's row sums): the two differ by at most 0.02 Lab units over the whole cube.
    rgb = _every_8bit_colour()  # [3, N, 1]
    ours = rgb_to_lab(rgb.float()).double()
    theirs = torch.from_numpy(color.rgb2lab(rgb.permute(1, 2, 0).numpy())).permute(2, 0, 1)
    assert (ours - theirs).abs().max() < 0.03
    # A difference in the conversion itself (a wrong exponent, white or matrix row) is far larger:
    assert (rgb_to_lab(rgb.float() ** 1.01).double() - theirs).abs().max() > 0.3


def test_known_colours():
    rgb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]]).T[:, :, None]
    lab = rgb_to_lab(rgb)[:, :, 0].T  # [5, 3]
    expected = torch.tensor(
        [[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86]]
    )
    torch.testing.assert_close(lab[:3], expected, atol=0.03, rtol=0)
    torch.testing.assert_close(lab[3], torch.tensor([100.0, 0, 0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(lab[4], torch.zeros(3), atol=1e-6, rtol=0)


def test_greys_are_neutral_and_the_white_is_the_matrix_image_of_rgb_white():
    grey = torch.linspace(0, 1, 11).view(1, 11, 1).expand(3, 11, 1)
    lab = rgb_to_lab(grey)
    assert lab[1:].abs().max() < 1e-4  # a = b = 0 for every grey
    assert lab[0].diff(dim=0).min() > 0  # L rises with the grey level
    assert list(LAB_WHITE) == pytest.approx([0.9505, 1.0, 1.089])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_within_1e_3(dtype):
    rgb = _every_8bit_colour(3).to(dtype)
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert (back - rgb).abs().max() < 1e-3
    # batched [B, 3, H, W] as the method uses it
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert (lab_to_rgb(rgb_to_lab(images)) - images).abs().max() < 1e-3


def test_lightness_is_the_l_channel_bit_for_bit():
    images = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lightness(images), rgb_to_lab(images)[:, :1])


def test_out_of_gamut_lab_is_clipped_into_rgb_range():
    lab = torch.tensor([50.0, 120.0, -120.0]).view(3, 1, 1)  # far outside sRGB
    rgb = lab_to_rgb(lab)
    assert rgb.min() >= 0 and rgb.max() <= 1


def test_bad_shapes_name_the_fix():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_lab(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="float"):
        rgb_to_lab(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
