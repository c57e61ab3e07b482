"""What the claims share: the noise floor of an accuracy and the presets' names."""

from __future__ import annotations

__all__ = ["ACCURACY_FLOOR", "BYOL", "DINO", "MAE", "MOCO", "ROTATION", "SIMCLR", "VICREG"]

# Points of top-1 that stand for the seed spread when it is smaller (or unmeasured, one seed):
# the binomial standard error of an ~85% top-1 on 10000 test images is 0.36 points.
ACCURACY_FLOOR = 0.3

SIMCLR = "simclr_fashion_mnist"
MOCO = "moco_fashion_mnist"
BYOL = "byol_fashion_mnist"
DINO = "dino_fashion_mnist"
MAE = "mae_fashion_mnist"
VICREG = "vicreg_fashion_mnist"
ROTATION = "rotation_fashion_mnist"
