"""Faithfulness of the views: the parameters each method's recipe samples against REFERENCE.md.

The recipes are built the way training builds them (``build.method_view_specs`` on a config
with 224 px views and no ``views.*`` overrides) and their parameters drawn with
``sample_view_params``, the function ``MultiViewTransform`` draws through. The expected values
are written out by hand from REFERENCE.md, never read from the presets.

Statistics, 20k draws per view:

* continuous parameters: one-sample Kolmogorov-Smirnov test against the specified CDF; a
  correct sampler fails it with probability ``ALPHA`` (the seeds are fixed, so the tests are
  deterministic; the threshold says how surprising a failure would be);
* probabilities: the observed rate within 4 standard errors ``4 sqrt(p (1 - p) / n)``;
* the jitter order: chi-square test of the 24 permutations against uniform.

Crop geometry follows torchvision's ``RandomResizedCrop``: up to 10 candidates with area
fraction ``a ~ U(scale)`` and log aspect ratio ``u ~ U(log ratio)``, the first that fits in the
image is kept. On a square image a candidate fits iff ``a e^|u| <= 1``, so the kept ``(a, u)``
is uniform on that region: the density of ``a`` is proportional to the length of its valid
``u`` range and that of ``u`` to the length of its valid ``a`` range (the fallback after 10
misses has probability below 1e-8 for these ranges).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from selfsup import build
from selfsup.config import Config, apply_overrides
from selfsup.views import ViewSpec
from selfsup.views.transforms import ViewParams, sample_view_params

N = 20000
SIDE = 4096  # a large input image: pixel rounding of the crop boxes is negligible
ALPHA = 1e-3
RATIO = (3 / 4, 4 / 3)


@dataclasses.dataclass(frozen=True)
class Expected:
    """One view's recipe as REFERENCE.md states it."""

    scale: tuple[float, float]
    jitter: tuple[float, float, float, float] | None  # brightness, contrast, saturation, hue
    gray_p: float
    blur_p: float
    solarize_p: float
    jitter_p: float = 0.8
    flip_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


# SimCLR: crop 0.08-1, flip, jitter 0.8s/0.8s/0.8s/0.2s (s = 1) p 0.8, grey 0.2, blur 0.5.
SIMCLR = Expected((0.08, 1.0), (0.8, 0.8, 0.8, 0.2), gray_p=0.2, blur_p=0.5, solarize_p=0.0)
# MoCo v2: crop 0.2-1, jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grey 0.2, blur 0.5, flip.
MOCO_V2 = Expected((0.2, 1.0), (0.4, 0.4, 0.4, 0.1), gray_p=0.2, blur_p=0.5, solarize_p=0.0)
# BYOL: jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grey 0.2; blur 1.0 / 0.1, solarize 0.0 / 0.2.
BYOL_1 = Expected((0.08, 1.0), (0.4, 0.4, 0.2, 0.1), gray_p=0.2, blur_p=1.0, solarize_p=0.0)
BYOL_2 = dataclasses.replace(BYOL_1, blur_p=0.1, solarize_p=0.2)
# SwAV: SimCLR's distortion (s = 1) and blur 0.5 on every crop; global crops 0.14-1.
SWAV_GLOBAL = dataclasses.replace(SIMCLR, scale=(0.14, 1.0))
# MAE: RandomResizedCrop(0.2-1) + flip only.
MAE = Expected((0.2, 1.0), None, gray_p=0.0, blur_p=0.0, solarize_p=0.0, jitter_p=0.0)

RECIPES: dict[str, list[Expected]] = {
    "simclr": [SIMCLR, SIMCLR],
    "moco": [MOCO_V2, MOCO_V2],
    "byol": [BYOL_1, BYOL_2],
    # MoCo v3 (Chen, Xie, He 2021) trains with BYOL's augmentations.
    "mocov3": [BYOL_1, BYOL_2],
    "mae": [MAE],
    # SimSiam (Chen & He 2021) trains with MoCo v2's; Barlow Twins and VICReg with BYOL's.
    "simsiam": [MOCO_V2, MOCO_V2],
    "barlow": [BYOL_1, BYOL_2],
    "vicreg": [BYOL_1, BYOL_2],
}


def _specs(method: str) -> list[ViewSpec]:
    cfg = apply_overrides(Config(), [f"method={method}", "views.size=224"])
    return build.method_view_specs(cfg)


def _draw(spec: ViewSpec, seed: int, channels: int = 3) -> ViewParams:
    gen = torch.Generator().manual_seed(seed)
    return sample_view_params(spec, N, SIDE, SIDE, channels, gen)


def _cdf_on_grid(
    low: float, high: float, density: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """CDF of an (unnormalised) density on [low, high], by the trapezoid rule on a fine grid."""
    grid = np.linspace(low, high, 200001)
    f = density(grid)
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    return lambda x: np.interp(x, grid, cdf)


def crop_area_cdf(scale: tuple[float, float]) -> Callable[[np.ndarray], np.ndarray]:
    """Area fraction of the first crop that fits: density ~ length of the valid log-ratio range."""
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])

    def valid_u_length(a: np.ndarray) -> np.ndarray:
        return np.clip(np.minimum(hi, -np.log(a)) - np.maximum(lo, np.log(a)), 0.0, None)

    return _cdf_on_grid(scale[0], scale[1], valid_u_length)


def crop_log_ratio_cdf(scale: tuple[float, float]) -> Callable[[np.ndarray], np.ndarray]:
    """log(w / h) of the first crop that fits: density ~ length of the valid area range."""

    def valid_a_length(u: np.ndarray) -> np.ndarray:
        return np.clip(np.minimum(scale[1], np.exp(-np.abs(u))) - scale[0], 0.0, None)

    return _cdf_on_grid(math.log(RATIO[0]), math.log(RATIO[1]), valid_a_length)


def _ks_pvalue(sample: torch.Tensor, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    return float(stats.kstest(sample.double().numpy(), cdf).pvalue)


def _uniform_pvalue(sample: torch.Tensor, low: float, high: float) -> float:
    return float(stats.kstest(sample.double().numpy(), "uniform", args=(low, high - low)).pvalue)


def _assert_rate(mask: torch.Tensor | None, p: float, name: str) -> None:
    """Bernoulli(p) draws: the observed rate within 4 standard errors (exact for p in {0, 1})."""
    if p == 0.0:
        assert mask is None, f"{name}: probability 0 must draw nothing"
        return
    assert mask is not None and mask.dtype == torch.bool and mask.shape == (N,), name
    rate = float(mask.double().mean())
    tolerance = 4 * math.sqrt(p * (1 - p) / N)
    assert abs(rate - p) <= tolerance, f"{name}: rate {rate:.4f}, expected {p} +- {tolerance:.4f}"


def _check_view(params: ViewParams, expected: Expected, seed: int) -> None:
    x0, y0, w, h = params.boxes.double().unbind(dim=1)
    area = w * h / SIDE**2
    assert _ks_pvalue(area, crop_area_cdf(expected.scale)) > ALPHA, "crop area"
    assert _ks_pvalue(torch.log(w / h), crop_log_ratio_cdf(expected.scale)) > ALPHA, "crop ratio"
    # Positions uniform over the integers 0..SIDE - w: (x0 + U) / (SIDE - w + 1) ~ U(0, 1).
    rng = np.random.default_rng(seed)
    for start, extent in ((x0, w), (y0, h)):
        u = (start + torch.from_numpy(rng.random(N))) / (SIDE - extent + 1)
        assert _uniform_pvalue(u, 0.0, 1.0) > ALPHA, "crop position"
    _assert_rate(params.flip, expected.flip_p, "flip")

    if expected.jitter is None:
        assert params.jitter is None, "this recipe has no colour jitter"
    else:
        jitter = params.jitter
        assert jitter is not None
        _assert_rate(jitter.mask, expected.jitter_p, "jitter")
        brightness, contrast, saturation, hue = expected.jitter
        for name, factors, s in (
            ("brightness", jitter.brightness, brightness),
            ("contrast", jitter.contrast, contrast),
            ("saturation", jitter.saturation, saturation),
        ):
            assert _uniform_pvalue(factors, max(0.0, 1 - s), 1 + s) > ALPHA, name
        assert _uniform_pvalue(jitter.hue, -hue, hue) > ALPHA, "hue"
        # Random order: each of the 4! = 24 permutations equally likely.
        codes = (jitter.order * torch.tensor([64, 16, 4, 1])).sum(dim=1)
        counts = torch.unique(codes, return_counts=True)[1].numpy()
        assert counts.size == 24, "every order of the four colour ops must occur"
        assert stats.chisquare(counts).pvalue > ALPHA, "jitter order"

    _assert_rate(params.gray, expected.gray_p, "grayscale")
    _assert_rate(params.blur, expected.blur_p, "blur")
    if expected.blur_p > 0:
        assert params.blur_sigma is not None
        assert _uniform_pvalue(params.blur_sigma, *expected.blur_sigma) > ALPHA, "blur sigma"
    _assert_rate(params.solarize, expected.solarize_p, "solarize")


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_sampled_parameters_follow_the_reference_recipe(method: str) -> None:
    specs = _specs(method)
    assert len(specs) == len(RECIPES[method])
    for i, (spec, expected) in enumerate(zip(specs, RECIPES[method])):
        assert spec.size == 224
        if expected.blur_p > 0:
            assert spec.blur_kernel_size == 23, "blur kernel ~10% of the 224 px side, odd"
        _check_view(_draw(spec, seed=100 + i), expected, seed=i)


def test_dino_multi_crop_follows_the_reference_recipe() -> None:
    specs = _specs("dino")
    # 2 global crops (scale 0.4-1) then the local crops (scale 0.05-0.4); flip, jitter
    # (0.4, 0.4, 0.2, 0.1) p 0.8, grey 0.2; blur 1.0 / 0.1 / 0.5, solarize 0 / 0.2 / 0.
    common = Expected((0.4, 1.0), (0.4, 0.4, 0.2, 0.1), gray_p=0.2, blur_p=1.0, solarize_p=0.0)
    expected = [
        common,
        dataclasses.replace(common, blur_p=0.1, solarize_p=0.2),
        *[dataclasses.replace(common, scale=(0.05, 0.4), blur_p=0.5)] * (len(specs) - 2),
    ]
    assert len(specs) >= 3 and specs[0].size == specs[1].size == 224
    assert all(s.size < 224 for s in specs[2:]), "local crops are smaller"
    for i, (spec, exp) in enumerate(zip(specs, expected)):
        _check_view(_draw(spec, seed=200 + i), exp, seed=i)


def test_swav_multi_crop_follows_the_reference_recipe() -> None:
    specs = _specs("swav")
    # 2 x 224 (area 0.14-1) + 6 x 96 (area 0.05-0.14), every crop SimCLR's distortion (s = 1)
    # and blur 0.5 (official multicropdataset.py).
    expected = [SWAV_GLOBAL] * 2 + [dataclasses.replace(SWAV_GLOBAL, scale=(0.05, 0.14))] * 6
    assert [s.size for s in specs] == [224] * 2 + [96] * 6
    for i, (spec, exp) in enumerate(zip(specs, expected)):
        _check_view(_draw(spec, seed=300 + i), exp, seed=i)


def test_grayscale_draws_nothing_on_one_channel_images() -> None:
    params = _draw(_specs("simclr")[0], seed=7, channels=1)
    assert params.gray is None
    assert params.jitter is not None  # brightness and contrast still act on grey images


def test_the_two_views_are_drawn_independently() -> None:
    """Two views of one batch come from one generator stream but must not be correlated."""
    first, second = _specs("simclr")
    gen = torch.Generator().manual_seed(8)
    a = sample_view_params(first, N, SIDE, SIDE, 3, gen)
    b = sample_view_params(second, N, SIDE, SIDE, 3, gen)
    area_a = (a.boxes[:, 2] * a.boxes[:, 3]).double().numpy()
    area_b = (b.boxes[:, 2] * b.boxes[:, 3]).double().numpy()
    # Under independence the sample correlation has standard error ~1 / sqrt(N).
    assert abs(np.corrcoef(area_a, area_b)[0, 1]) < 4 / math.sqrt(N)
    assert a.jitter is not None and b.jitter is not None
    assert abs(np.corrcoef(a.jitter.hue.numpy(), b.jitter.hue.numpy())[0, 1]) < 4 / math.sqrt(N)
    assert not torch.equal(a.flip, b.flip)


def test_the_tests_detect_a_wrong_recipe() -> None:
    """Power: each check rejects a recipe that differs from the reference in one setting."""
    simclr = _specs("simclr")[0]
    moco = _draw(_specs("moco")[0], seed=9)  # crop scale 0.2-1 instead of 0.08-1
    assert (
        _ks_pvalue(
            (moco.boxes[:, 2] * moco.boxes[:, 3]).double() / SIDE**2, crop_area_cdf((0.08, 1.0))
        )
        < 1e-6
    )
    wrong = _draw(
        dataclasses.replace(simclr, brightness=0.7, gray_p=0.22, blur_sigma=(0.1, 1.9)), 10
    )
    assert wrong.jitter is not None and wrong.gray is not None and wrong.blur_sigma is not None
    assert _uniform_pvalue(wrong.jitter.brightness, 0.2, 1.8) < 1e-6
    assert _uniform_pvalue(wrong.blur_sigma, 0.1, 2.0) < 1e-6
    with pytest.raises(AssertionError, match="grayscale"):
        _assert_rate(wrong.gray, 0.2, "grayscale")
    # Uniform area in the scale range, ignoring the rejection of crops that do not fit, is
    # also wrong: the test sees the difference.
    uniform = _uniform_pvalue(
        (_draw(simclr, 11).boxes[:, 2:].prod(dim=1)).double() / SIDE**2, 0.08, 1.0
    )
    assert uniform < 1e-6


def test_sampling_through_the_transform_reproduces_its_views() -> None:
    """MultiViewTransform draws exactly through sample_view_params: same generator state, same
    parameters, hence the views the tests above describe are the ones training sees."""
    from selfsup.views import MultiViewTransform
    from selfsup.views.transforms import apply_view_params

    spec = _specs("simclr")[0]
    spec = dataclasses.replace(spec, size=16)
    images = torch.randint(0, 256, (6, 3, 20, 20), generator=torch.Generator().manual_seed(12))
    images = images.to(torch.uint8)
    (view,) = MultiViewTransform([spec], mean=[0.0], std=[1.0])(
        images, torch.Generator().manual_seed(13)
    )
    params = sample_view_params(spec, 6, 20, 20, 3, torch.Generator().manual_seed(13))
    expected = apply_view_params(images.float() / 255, spec, params)
    torch.testing.assert_close(view, expected, rtol=0, atol=1e-6)
