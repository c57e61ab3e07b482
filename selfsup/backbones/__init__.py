"""Backbones: torchvision-block ResNets (CIFAR stem, width multiplier), our ViT (masking-aware,
sin-cos position embeddings), timm models by name, any module with ``feature_dim``; the
lightness encoder (RGB in, a 1-channel backbone on CIE L inside)."""

from selfsup.backbones.lightness import LightnessEncoder
from selfsup.backbones.registry import (
    FeatureBackbone,
    backbone_names,
    build_backbone,
    count_parameters,
    feature_dim,
    register_backbone,
)
from selfsup.backbones.resnet import ResNet
from selfsup.backbones.vit import VIT_PRESETS, VisionTransformer, build_vit

__all__ = [
    "VIT_PRESETS",
    "FeatureBackbone",
    "LightnessEncoder",
    "ResNet",
    "VisionTransformer",
    "backbone_names",
    "build_backbone",
    "build_vit",
    "count_parameters",
    "feature_dim",
    "register_backbone",
]
