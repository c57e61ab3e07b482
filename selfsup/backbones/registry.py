"""Backbones by name. A backbone is any ``nn.Module`` mapping images ``[B, C, H, W]`` to features
``[B, feature_dim]`` and exposing ``feature_dim``; it knows nothing of SSL methods."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from selfsup.backbones.resnet import _LAYOUTS, ResNet


class FeatureBackbone(nn.Module):
    """Wrap any module that returns ``[B, D]`` features and declare its dimension.

    >>> net = FeatureBackbone(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), feature_dim=5)
    >>> net(torch.zeros(2, 3, 2, 2)).shape
    torch.Size([2, 5])
    """

    def __init__(self, module: nn.Module, feature_dim: int) -> None:
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        self.module = module
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        out = self.module(x)
        if out.ndim != 2 or out.shape[1] != self.feature_dim:
            raise ValueError(
                f"backbone returned shape {tuple(out.shape)}, expected [B, {self.feature_dim}]; "
                "declare the right feature_dim or add pooling/flatten to the module"
            )
        return out


def _timm_backbone(model_name: str, in_channels: int) -> nn.Module:
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a dev dependency
        raise ValueError("timm backbones need `pip install timm` (or selfsup[timm])") from err
    if model_name not in timm.list_models():
        raise ValueError(f"timm has no model {model_name!r}; see timm.list_models()")
    model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_channels)
    num_features: int = model.num_features  # type: ignore[assignment]
    return FeatureBackbone(model, num_features)


_CUSTOM: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``factory(in_channels=..., **options)`` buildable as ``backbone.name=<name>``."""
    _CUSTOM[name] = factory


def _vit_names() -> list[str]:
    from selfsup.backbones.vit import VIT_PRESETS

    return sorted(VIT_PRESETS)


def backbone_names() -> list[str]:
    return sorted(_LAYOUTS) + _vit_names() + sorted(_CUSTOM) + ["timm:<name>"]


def build_backbone(
    name: str,
    in_channels: int = 3,
    width: float = 1.0,
    cifar_stem: bool = False,
    zero_init_residual: bool = False,
    image_size: int = 224,
    patch_size: int = 16,
    pool: str = "cls",
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """Build a backbone by name: ``resnet18|34|50|101``, a ViT preset (``vit_tiny``...), a
    registered name, or ``timm:<model>``. ResNet options (width, CIFAR stem) and ViT options
    (image and patch size, pooling, stochastic depth) are ignored by the other family."""
    if name in _LAYOUTS:
        return ResNet(name, width, cifar_stem, in_channels, zero_init_residual)
    if name in _vit_names():
        from selfsup.backbones.vit import build_vit

        return build_vit(
            name,
            image_size,
            patch_size,
            in_channels,
            pool=pool,  # type: ignore[arg-type]
            drop_path_rate=drop_path_rate,
        )
    if name.startswith("timm:"):
        return _timm_backbone(name.removeprefix("timm:"), in_channels)
    if name in _CUSTOM:
        return _CUSTOM[name](in_channels=in_channels)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(backbone_names())}")


def feature_dim(backbone: nn.Module) -> int:
    """The declared feature dimension of a backbone (``feature_dim`` attribute)."""
    dim = getattr(backbone, "feature_dim", None)
    if not isinstance(dim, int):
        raise ValueError(
            f"{type(backbone).__name__} does not declare `feature_dim`; wrap it in "
            "selfsup.backbones.FeatureBackbone(module, feature_dim=D)"
        )
    return dim


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "FeatureBackbone",
    "backbone_names",
    "build_backbone",
    "count_parameters",
    "feature_dim",
    "register_backbone",
]
