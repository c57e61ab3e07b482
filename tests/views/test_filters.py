"""Blur, solarize and normalize against torchvision and hand values; the generic samplers."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from selfsup.views import ops
from tests.views.helpers import rand_images, seeded


@pytest.mark.parametrize(("channels", "kernel_size"), [(3, 5), (1, 3), (3, 9)])
def test_gaussian_blur_matches_torchvision(channels: int, kernel_size: int) -> None:
    x = rand_images(5, channels, 11, 14, seed=32)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.7, 3.0])
    out = ops.gaussian_blur(x, sigma, kernel_size)
    ref = torch.stack(
        [
            TF.gaussian_blur(x[i], [kernel_size, kernel_size], [float(sigma[i])] * 2)
            for i in range(5)
        ]
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_gaussian_blur_mask_constant_image_and_validation() -> None:
    x = rand_images(4, 3, 8, 8, seed=33)
    mask = torch.tensor([True, False, False, True])
    out = ops.gaussian_blur(x, torch.full((4,), 1.5), 5, mask)
    assert torch.equal(out[~mask], x[~mask])
    assert not torch.allclose(out[mask], x[mask], atol=1e-2)
    flat = torch.full((2, 3, 8, 8), 0.37)
    torch.testing.assert_close(ops.gaussian_blur(flat, torch.tensor([0.3, 2.0]), 7), flat)
    with pytest.raises(ValueError, match="odd"):
        ops.gaussian_blur(x, torch.ones(4), 4)
    with pytest.raises(ValueError, match="too large"):
        ops.gaussian_blur(x, torch.ones(4), 17)


@pytest.mark.parametrize(("side", "expected"), [(224, 23), (96, 9), (32, 3), (28, 3), (10, 3)])
def test_gaussian_kernel_size(side: int, expected: int) -> None:
    assert ops.gaussian_kernel_size(side, 0.1) == expected


def test_solarize_values_mask_and_torchvision() -> None:
    x = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0]).view(1, 1, 1, 5).repeat(2, 1, 1, 1)
    out = ops.solarize(x, 0.5, torch.tensor([True, False]))
    torch.testing.assert_close(out[0].reshape(-1), torch.tensor([0.0, 0.2, 0.5, 0.3, 0.0]))
    assert torch.equal(out[1], x[1])
    y = rand_images(3, 3, 6, 6, seed=34)
    assert torch.equal(ops.solarize(y, 0.6), TF.solarize(y, 0.6))
    with pytest.raises(ValueError, match="threshold"):
        ops.solarize(y, 128.0)


def test_normalize_values_and_validation() -> None:
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    out = ops.normalize(x, [0.5, 0.5, 0.0], [0.5, 0.25, 2.0])
    torch.testing.assert_close(out.reshape(-1), torch.tensor([-1.0, 0.0, 0.5]))
    one = ops.normalize(x, [0.5], [0.5])
    torch.testing.assert_close(one.reshape(-1), torch.tensor([-1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="entries"):
        ops.normalize(x, [0.5, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="std"):
        ops.normalize(x, [0.5], [0.0])


def test_sample_mask_and_uniform() -> None:
    assert not ops.sample_mask(1000, 0.0, seeded(35)).any()
    assert ops.sample_mask(1000, 1.0, seeded(35)).all()
    assert abs(float(ops.sample_mask(20000, 0.3, seeded(36)).float().mean()) - 0.3) < 0.015
    u = ops.sample_uniform(20000, 0.1, 2.0, seeded(37))
    assert u.min() >= 0.1 and u.max() < 2.0 and abs(float(u.mean()) - 1.05) < 0.02
    with pytest.raises(ValueError, match="probability"):
        ops.sample_mask(4, -0.1)
