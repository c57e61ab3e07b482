"""``StepOutput.features``: every method returns the detached backbone features of its first
view (what the online linear probe learns from), without an extra forward pass."""

from __future__ import annotations

import pytest
import torch

from selfsup import build
from tests.conftest import METHOD_OVERRIDES, tiny_config


@pytest.mark.parametrize("method", sorted(METHOD_OVERRIDES))
def test_every_method_returns_the_detached_backbone_features_of_its_first_view(method):
    cfg = tiny_config(*METHOD_OVERRIDES[method])
    data = build.train_dataset(cfg)
    build.resolve_normalization(cfg, data)
    torch.manual_seed(0)
    model = build.make_method(cfg, data.channels)
    images = data.get_batch(torch.arange(16))[0]
    views = model.make_views(images, torch.Generator().manual_seed(0))
    model.eval()  # BN from running statistics: a sample's features do not depend on its batch
    out = model.training_step(views)
    if method == "jigsaw":  # trains on tiles only: no whole-image features, no online probe
        assert (
            out.features is None and cfg.method_section().standalone["train.online_linear"] is False
        )
        return
    assert out.features is not None and not out.features.requires_grad
    assert out.features.shape == (16, model.encoder.feature_dim)
    if method != "mae":  # MAE's are of the visible patches only
        with torch.no_grad():
            expected = model.encoder(views[0])
        torch.testing.assert_close(out.features, expected, rtol=1e-4, atol=1e-5)
