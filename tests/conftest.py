"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from selfsup.config import Config, apply_overrides

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


# Per-method overrides that shrink heads/decoders and fit the methods' constraints to tiny data.
METHOD_OVERRIDES: dict[str, list[str]] = {
    "simclr": [],
    "moco": ["method=moco", "moco.queue_size=100", "moco.split_bn=2", "moco.proj_hidden_dim=32"],
    "mocov3": ["method=mocov3", "mocov3.proj_hidden_dim=32", "mocov3.pred_hidden_dim=32"],
    "byol": ["method=byol", "byol.proj_hidden_dim=32", "byol.pred_hidden_dim=32"],
    "mae": [
        "method=mae",
        "backbone.name=vit_micro",
        "backbone.patch_size=2",
        "mae.decoder_dim=32",
        "mae.decoder_depth=1",
        "mae.decoder_heads=4",
        "optim.name=adamw",
        "optim.base_lr=1e-3",
    ],
    "dino": [
        "method=dino",
        "views.size=16",
        "views.local_size=8",
        "views.local_crops=2",
        "dino.out_dim=64",
        "dino.hidden_dim=32",
        "dino.bottleneck_dim=16",
        "dino.freeze_last_layer_epochs=0.2",
        "optim.name=adamw",
        "optim.base_lr=1e-3",
        "optim.weight_decay=0.04",
        "optim.final_weight_decay=0.4",
        "optim.clip_grad=3.0",
        "optim.clip_grad_mode=per_tensor",
    ],
    "simsiam": [
        "method=simsiam",
        "simsiam.proj_hidden_dim=32",
        "simsiam.proj_out_dim=32",
        "simsiam.pred_hidden_dim=8",
    ],
    "barlow": ["method=barlow", "barlow.proj_hidden_dim=32", "barlow.proj_out_dim=32"],
    "vicreg": ["method=vicreg", "vicreg.proj_hidden_dim=32", "vicreg.proj_out_dim=32"],
    "swav": [
        "method=swav",
        "swav.proj_hidden_dim=32",
        "swav.proj_out_dim=16",
        "swav.num_prototypes=32",
        # the queue starts in epoch 2 of the resume tests (22 steps per epoch) and fills in 2
        "swav.queue_length=128",
        "swav.queue_start_epoch=1",
        "swav.freeze_prototypes_epochs=0.2",
        "views.local_crops=2",  # 8 px like the globals on digits: the pairs, not the sizes
    ],
    "rotation": ["method=rotation", "rotation.hidden_dim=32"],
    "jigsaw": [  # 12 px views of the 8 px digits: 4 px cells, 3 px tiles
        "method=jigsaw",
        "views.size=12",
        "jigsaw.num_permutations=10",
        "jigsaw.hidden_dim=32",
        "train.online_linear=false",  # as its presets: no whole-image features in training
    ],
    "colorization": [  # colour data: scikit-image's photographs, 16 px patches
        "method=colorization",
        "data.dataset=photo_patches",
        "data.image_size=16",
        "views.size=16",
        "colorization.head_dim=16",
        "optim.name=adamw",
        "optim.base_lr=1e-3",
    ],
}


# The smallest SimCLR the CLI takes as key=value overrides (digits, 8 px, width 0.125, fp32).
TINY_CLI_OVERRIDES = [
    "data.dataset=digits",
    "backbone.width=0.125",
    "views.size=8",
    "simclr.proj_hidden_dim=32",
    "simclr.proj_out_dim=16",
    "train.precision=fp32",
]


def tiny_config(*overrides: str) -> Config:
    """SimCLR on scikit-learn's digits (8x8, always available) with a very small ResNet."""
    cfg = apply_overrides(
        Config(),
        [
            "data.dataset=digits",
            "backbone.width=0.125",
            "views.size=8",
            "views.blur_p=0",
            "views.color_strength=0.5",
            "simclr.proj_hidden_dim=32",
            "simclr.proj_out_dim=16",
            "optim.name=sgd",
            "optim.base_lr=0.1",
            "optim.warmup_epochs=0",
            "train.batch_size=64",
            "train.epochs=1",
            "train.precision=fp32",
            "train.progress=false",
            "train.tensorboard=false",  # tests/train/test_tensorboard.py turns it on
            "train.knn_every=0",
            "train.log_every=1",
            "eval.linear_epochs=5",
            *overrides,
        ],
    )
    return cfg.validate()


def train_on_fixed_views(method: str, steps: int = 30) -> list[Any]:
    """``steps`` TrainStep updates of ``METHOD_OVERRIDES[method]`` on one fixed batch of views
    (64 digits, seeded): the StepResults, for tests that a loss falls without collapse."""
    from selfsup import build
    from selfsup.train.step import TrainStep

    cfg = tiny_config(*METHOD_OVERRIDES[method])
    data = build.train_dataset(cfg)
    build.resolve_normalization(cfg, data)
    torch.manual_seed(0)
    model = build.make_method(cfg, data.channels)
    step = TrainStep.from_config(cfg, model, steps_per_epoch=steps, device="cpu")
    views = step.views(data.get_batch(torch.arange(64))[0], torch.Generator().manual_seed(0))
    return [step.update(views, k) for k in range(steps)]


def grey_png_folder(folder: Path, count: int, size: int) -> Path:
    """``folder`` with ``count`` random ``size`` x ``size`` grey PNGs ``0.png``... (seeded)."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    return folder


@pytest.fixture
def tiny() -> Config:
    return tiny_config()


requires_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
