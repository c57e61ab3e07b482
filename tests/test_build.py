import pytest

from selfsup import build
from selfsup.config import Config, apply_overrides


def _specs(*overrides: str):
    cfg = apply_overrides(Config(), list(overrides)).validate()
    return build.method_view_specs(cfg)


def test_simclr_recipe_is_the_reference_with_overrides_applied():
    a, b = _specs("views.size=32")
    assert a == b
    assert (a.size, a.crop_scale, a.jitter_p, a.gray_p, a.blur_p) == (
        32,
        (0.08, 1.0),
        0.8,
        0.2,
        0.5,
    )
    assert (a.brightness, a.contrast, a.saturation, a.hue) == pytest.approx((0.8, 0.8, 0.8, 0.2))
    small = _specs("views.color_strength=0.5", "views.blur_p=0", "views.crop_min_scale=0.2")[0]
    assert (small.brightness, small.hue, small.blur_p) == pytest.approx((0.4, 0.1, 0.0))
    assert small.crop_scale == (0.2, 1.0)


def test_byol_views_stay_asymmetric_unless_overridden():
    one, two = _specs("method=byol")
    assert (one.blur_p, two.blur_p, one.solarize_p, two.solarize_p) == (1.0, 0.1, 0.0, 0.2)
    one, two = _specs("method=byol", "views.blur_p=0")
    assert one.blur_p == two.blur_p == 0.0 and two.solarize_p == 0.2
    with pytest.raises(ValueError, match="give one value"):
        _specs("method=byol", "views.blur_p=[1, 0.5, 0.1]")


def test_moco_and_mae_recipes():
    moco = _specs("method=moco")
    assert len(moco) == 2 and moco[0].crop_scale == (0.2, 1.0)
    (mae,) = _specs("method=mae", "backbone.name=vit_tiny", "backbone.patch_size=4")
    assert (mae.crop_scale, mae.jitter_p, mae.gray_p, mae.blur_p) == ((0.2, 1.0), 0.0, 0.0, 0.0)
