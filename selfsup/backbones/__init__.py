"""Backbones: torchvision-block ResNets (CIFAR stem, width multiplier), timm models, any module."""

from selfsup.backbones.registry import (
    FeatureBackbone,
    backbone_names,
    build_backbone,
    count_parameters,
    feature_dim,
    register_backbone,
)
from selfsup.backbones.resnet import ResNet

__all__ = [
    "FeatureBackbone",
    "ResNet",
    "backbone_names",
    "build_backbone",
    "count_parameters",
    "feature_dim",
    "register_backbone",
]
