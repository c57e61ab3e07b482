import pytest
import torch

from selfsup.backbones import ResNet
from selfsup.methods import SimCLR, embedding_std
from selfsup.nn import simclr_projector
from selfsup.views import MultiViewTransform, simclr_small_view
from tests.nn.test_losses import reference_nt_xent


def _simclr(views: int = 2) -> SimCLR:
    torch.manual_seed(0)
    backbone = ResNet("resnet18", width=0.125, cifar_stem=True, in_channels=1)
    spec = simclr_small_view(16)
    recipe = MultiViewTransform([spec] * views, mean=[0.5], std=[0.25])
    return SimCLR(backbone, simclr_projector(backbone.feature_dim, "v1", 32, 16), recipe, 0.5)


def test_training_step_is_nt_xent_on_projections_of_both_views():
    method = _simclr()
    images = torch.randint(0, 256, (8, 1, 20, 20), dtype=torch.uint8)
    views = method.make_views(images, torch.Generator().manual_seed(1))
    assert [v.shape for v in views] == [(8, 1, 16, 16)] * 2
    out = method.training_step(views)
    # Reference: the same network applied to the concatenated views, then NT-Xent (T = 0.5)
    # written as a loop over anchors in NumPy.
    with torch.no_grad():
        z = method.projector(method.backbone(torch.cat(views))).double().numpy()  # [16, 16]
    expected = reference_nt_xent(z[:8], z[8:], 0.5)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.embeddings is not None and out.embeddings.shape == (16, 16)
    assert not out.embeddings.requires_grad
    out.loss.backward()
    assert method.backbone.conv1.weight.grad is not None
    assert method.backbone.conv1.weight.grad.abs().sum() > 0


def test_encoder_is_the_backbone_before_the_projector():
    method = _simclr()
    assert method.encoder is method.backbone


def test_simclr_refuses_a_recipe_without_two_views():
    with pytest.raises(ValueError, match="needs 2 global views"):
        _simclr(views=1)


def test_embedding_std_detects_collapse():
    spread = torch.randn(512, 64)
    collapsed = torch.ones(512, 64) + 1e-6 * torch.randn(512, 64)
    assert embedding_std(spread).item() == pytest.approx(1 / 64**0.5, rel=0.1)
    assert embedding_std(collapsed).item() < 1e-4
    # By hand: rows (3, 0) and (0, 0.5) normalise to e_1 and e_2; each column holds {1, 0},
    # whose sample std is sqrt(((1 - 0.5)^2 + (0 - 0.5)^2) / 1) = sqrt(0.5).
    two = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    assert embedding_std(two).item() == pytest.approx(0.5**0.5, rel=1e-6)
