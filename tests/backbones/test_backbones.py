import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from selfsup.backbones import FeatureBackbone, ResNet, build_backbone, count_parameters, feature_dim


@pytest.mark.parametrize(("name", "tv"), [("resnet18", resnet18), ("resnet50", resnet50)])
def test_width_one_matches_torchvision_state_dict(name, tv):
    ours = ResNet(name)
    theirs = tv().state_dict()
    theirs = {k: v for k, v in theirs.items() if not k.startswith("fc.")}
    ours_sd = ours.state_dict()
    assert set(ours_sd) == set(theirs)
    assert all(ours_sd[k].shape == theirs[k].shape for k in theirs)
    ours.load_state_dict(theirs)  # strict: same architecture


def test_cifar_stem_keeps_resolution_and_features_shape():
    net = ResNet("resnet18", width=0.25, cifar_stem=True, in_channels=1).eval()
    x = torch.randn(2, 1, 32, 32)
    assert net.forward_maps(x).shape == (2, 128, 4, 4)  # 32 -> 4 after three stride-2 stages
    assert net(x).shape == (2, feature_dim(net)) == (2, 128)
    standard = ResNet("resnet18", width=0.25).eval()
    assert standard.forward_maps(torch.randn(2, 3, 32, 32)).shape[-1] == 1  # 32 / 32


def test_width_multiplier_scales_parameters_quadratically():
    full = count_parameters(ResNet("resnet18"))
    quarter = count_parameters(ResNet("resnet18", width=0.25))
    assert 0.05 < quarter / full < 0.08  # ~1/16 plus the stem


def test_zero_init_residual_zeroes_last_bn_of_each_block():
    net = ResNet("resnet18", zero_init_residual=True)
    assert torch.count_nonzero(net.layer1[0].bn2.weight) == 0


def test_build_backbone_names_and_errors():
    assert isinstance(build_backbone("resnet18", 3, 0.25, True), ResNet)
    timm_net = build_backbone("timm:resnet10t", in_channels=1)
    out = timm_net(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, feature_dim(timm_net))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet7")
    with pytest.raises(ValueError, match="timm has no model"):
        build_backbone("timm:not_a_model")
    with pytest.raises(ValueError, match="width"):
        ResNet(width=0)


def test_feature_backbone_declares_and_checks_dimension():
    net = FeatureBackbone(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), feature_dim=5)
    assert net(torch.zeros(2, 3, 2, 2)).shape == (2, 5)
    wrong = FeatureBackbone(nn.Sequential(nn.Flatten(), nn.Linear(12, 4)), feature_dim=5)
    with pytest.raises(ValueError, match="expected"):
        wrong(torch.zeros(2, 3, 2, 2))
    with pytest.raises(ValueError, match="feature_dim"):
        feature_dim(nn.Linear(2, 2))
