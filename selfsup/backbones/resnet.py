"""ResNets built from torchvision's residual blocks, with the options small-image SSL needs.

* ``cifar_stem``: 3x3 stride-1 first convolution and no max-pool, the convention for images of
  64 px or less (REFERENCE.md, "Conventions for small images"). Without it a 32 px image is
  down-sampled to 8 px before the first residual stage.
* ``width``: a multiplier on every stage's channels (64, 128, 256, 512 at width 1), so that a
  CPU-sized ResNet-18 is the same architecture, only narrower.
* ``in_channels``: 1 for grayscale data (a 1-channel stem) or 3.

At ``width=1, cifar_stem=False, in_channels=3`` the module names and shapes equal torchvision's
``resnet18``/``resnet50``, so torchvision state dicts load into it (minus ``fc``).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """A ResNet trunk without the classifier: ``forward`` returns pooled features ``[B, feature_dim]``."""

    def __init__(
        self,
        depth: str = "resnet18",
        width: float = 1.0,
        cifar_stem: bool = False,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth not in _LAYOUTS:
            raise ValueError(f"unknown ResNet {depth!r}; choose one of {sorted(_LAYOUTS)}")
        if width <= 0:
            raise ValueError(f"ResNet width multiplier must be > 0, got {width}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
        block, layers = _LAYOUTS[depth]
        widths = [max(8, round(c * width)) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[3] * block.expansion

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        # torchvision's Bottleneck derives its inner width from base_width=64; keep the ratio 1.
        kwargs = {"base_width": 64} if block is Bottleneck else {}
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample, **kwargs)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_maps(self, x: Tensor) -> Tensor:
        """Spatial features of the last stage: ``[B, C, H', W']``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.avgpool(self.forward_maps(x)).flatten(1)  # [B, feature_dim]
