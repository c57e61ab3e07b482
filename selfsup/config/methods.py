"""One section per self-supervised method, each owning the checks that involve other sections.

``Config.validate`` calls ``check`` of the active method only (``cfg.method``), so a MoCo run is
never refused for a DINO setting. ``METHOD_SECTIONS`` is the one list of methods: ``METHODS``
and the ``method`` choices follow from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from selfsup.config.base import CROP_SCALE, Bool, CropScale, Float, Int, Section, says
from selfsup.config.colorization import ColorizationConfig
from selfsup.config.errors import ConfigError
from selfsup.config.pretext import JigsawConfig, RotationConfig
from selfsup.config.siamese import BarlowConfig, SimSiamConfig, SwAVConfig, VICRegConfig

if TYPE_CHECKING:
    from selfsup.config.root import Config

MethodName = Literal[
    "simclr",
    "moco",
    "mocov3",
    "byol",
    "mae",
    "dino",
    "simsiam",
    "barlow",
    "vicreg",
    "swav",
    "rotation",
    "jigsaw",
    "colorization",
]


def _need_two_images(cfg: Config, why: str) -> None:
    if cfg.train.batch_size < 2:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size}: {why}; raise train.batch_size")


class SimCLRConfig(Section):
    section = "simclr"

    temperature: Float = Field(
        0.5,
        gt=0,
        description="NT-Xent temperature tau > 0: 0.1 (ImageNet) / 0.5 (CIFAR, small images)",
        json_schema_extra=says("{key} must be > 0 (0.1-0.5 is the usual range), got {value}"),
    )
    projector: Literal["v1", "v2"] = Field(
        "v2", description="projection head: v1 (2 layers) or v2 (3 layers with BN)"
    )
    proj_hidden_dim: Int | None = Field(
        None, ge=1, description="hidden width of the projector; None = preset's"
    )
    proj_out_dim: Int = Field(
        128, ge=1, description="output dimension of the projector (128 in the paper)"
    )
    gather_distributed: Bool = Field(
        True, description="negatives from all processes (gathered with gradient)"
    )
    loss_scale: Literal["mean", "sum"] = Field(
        "mean",
        description="mean: the paper's NT-Xent, averaged over the 2N anchors; sum: the official "
        "code's sum of the two directions' means (2x the loss; with LARS it doubles the effective "
        "lr of biases and BN parameters, which LARS does not rescale)",
    )

    def check(self, cfg: Config) -> None:
        _need_two_images(
            cfg,
            "SimCLR needs at least 2 images per batch for negatives (256 or more is typical)",
        )


class MoCoConfig(Section):
    section = "moco"
    standalone: ClassVar[dict[str, Any]] = {  # MoCo v2: SGD 0.03*B/256, wd 1e-4 on all weights
        "optim.name": "sgd",
        "optim.base_lr": 0.03,
        "optim.weight_decay": 1e-4,
        "optim.warmup_epochs": 0.0,
        "optim.decay_norm_and_bias": True,
    }

    temperature: Float = Field(
        0.2,
        gt=0,
        description="InfoNCE temperature: 0.07 (MoCo v1) / 0.2 (v2); > 0",
        json_schema_extra=says("{key} must be > 0 (0.07-1.0), got {value}"),
    )
    queue_size: Int = Field(
        65536, ge=1, description="negatives in the queue K (65536 on ImageNet; >= batch size)"
    )
    momentum: Float = Field(
        0.999, ge=0, le=1, description="key encoder EMA momentum m in [0, 1] (0.99-0.999)"
    )
    proj_hidden_dim: Int = Field(
        2048, ge=1, description="hidden width of the v2 MLP head (2048-ReLU-128)"
    )
    proj_out_dim: Int = Field(128, ge=1, description="output dimension of the head")
    split_bn: Int = Field(
        8,
        ge=0,
        description="BatchNorm groups per process (MoCo's per-GPU BN: 8 on one process, 8/W on "
        "W); 0 = plain BN",
    )

    def check(self, cfg: Config) -> None:
        batch = cfg.train.batch_size
        _need_two_images(cfg, "moco needs at least 2 images per batch (BatchNorm and negatives)")
        if self.queue_size < batch:
            raise ConfigError(
                f"moco.queue_size={self.queue_size} is smaller than train.batch_size={batch}; "
                "the queue must hold at least one batch of keys (raise moco.queue_size)"
            )
        if self.split_bn > 1 and batch % self.split_bn != 0:
            raise ConfigError(
                f"train.batch_size={batch} must be divisible by moco.split_bn={self.split_bn}; "
                "change one of them (or set moco.split_bn=0)"
            )


class MoCoV3Config(Section):
    section = "mocov3"
    standalone: ClassVar[dict[str, Any]] = {"optim.weight_decay": 1.5e-6}  # ResNet: LARS

    temperature: Float = Field(
        1.0,
        gt=0,
        description="contrastive temperature: 1.0 (ResNet) / 0.2 (ViT) in the official code",
        json_schema_extra=says("{key} must be > 0 (0.07-1.0), got {value}"),
    )
    momentum_base: Float = Field(
        0.99, ge=0, le=1, description="target momentum at step 0, cosine to 1 at the end"
    )
    proj_hidden_dim: Int = Field(4096, ge=1, description="hidden width of the projector")
    proj_num_layers: Int = Field(
        2, ge=1, description="projector layers: 2 (official ResNet recipe) or 3 (ViT recipe)"
    )
    proj_out_dim: Int = Field(256, ge=1, description="output dimension of projector and predictor")
    pred_hidden_dim: Int = Field(4096, ge=1, description="hidden width of the 2-layer predictor")
    pred_last_batch_norm: Bool = Field(
        False, description="BN (no affine) after the predictor: false ResNet, true ViT"
    )
    gather_distributed: Bool = Field(True, description="keys from all processes as negatives")

    def check(self, cfg: Config) -> None:
        _need_two_images(cfg, "mocov3 needs at least 2 images per batch (BatchNorm and negatives)")


class BYOLConfig(Section):
    section = "byol"
    standalone: ClassVar[dict[str, Any]] = {  # LARS 0.2*B/256, wd 1.5e-6, 10 warm-up epochs
        "optim.base_lr": 0.2,
        "optim.weight_decay": 1.5e-6,
    }

    momentum_base: Float = Field(
        0.99,
        ge=0,
        le=1,
        description="target EMA tau at step 0, cosine to 1: 0.996 (1000 epochs) / 0.99 (300 "
        "epochs)",
    )
    momentum_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine (tau -> 1) or constant (tau = momentum_base)"
    )
    proj_hidden_dim: Int = Field(
        4096, ge=1, description="hidden width of projector (Linear-BN-ReLU-Linear)"
    )
    proj_out_dim: Int = Field(256, ge=1, description="output dimension of projector and predictor")
    pred_hidden_dim: Int = Field(4096, ge=1, description="hidden width of the predictor")
    predictor: Bool = Field(
        True, description="use the predictor; false only for the collapse ablation"
    )

    def check(self, cfg: Config) -> None:
        _need_two_images(cfg, "byol needs at least 2 images per batch (BatchNorm and negatives)")


class MAEConfig(Section):
    section = "mae"
    standalone: ClassVar[dict[str, Any]] = {  # a ViT; AdamW (0.9, 0.95) 1.5e-4*B/256, wd 0.05
        "backbone.name": "vit_tiny",
        "backbone.patch_size": lambda cfg: 4 if cfg.views.size <= 64 else 16,
        "optim.name": "adamw",
        "optim.base_lr": 1.5e-4,
        "optim.lr_scaling": "linear",
        "optim.betas": [0.9, 0.95],
        "optim.weight_decay": 0.05,
        "optim.warmup_epochs": lambda cfg: min(40.0, cfg.train.epochs / 4),
        "eval.linear_batch_norm": True,
    }

    mask_ratio: Float = Field(
        0.75,
        ge=0,
        lt=1,
        description="fraction of patches removed, in [0, 1); 0.75 in the paper; 0 = the plain "
        "autoencoder baseline (every patch visible, the loss over all of them)",
        json_schema_extra=says(
            "{key}={value}: the ratio of removed patches must be in [0, 1) (0.75 in the paper; 0 "
            "= the plain autoencoder); 1 leaves the encoder no input"
        ),
    )
    decoder_dim: Int = Field(512, ge=1, description="decoder width (paper: 512)")
    decoder_depth: Int = Field(8, ge=1, description="decoder Transformer blocks (paper: 8)")
    decoder_heads: Int = Field(
        16, ge=1, description="decoder attention heads (must divide decoder_dim)"
    )
    norm_pix_loss: Bool = Field(
        False, description="per-patch normalised pixel targets (better features)"
    )

    def check(self, cfg: Config) -> None:
        if self.decoder_dim % self.decoder_heads != 0:
            raise ConfigError("mae.decoder_heads must divide mae.decoder_dim")
        if not cfg.backbone.name.startswith("vit"):
            raise ConfigError(
                f"MAE needs a ViT backbone (e.g. vit_tiny), got {cfg.backbone.name!r}"
            )


DINO_TEMPERATURE = says("{key} must be > 0 (0.04-0.1), got {value}")


class DINOConfig(Section):
    """DINO (Caron et al. 2021). The paper's optimiser settings live in ``optim``: adamw, base_lr
    5e-4 (linear rule), weight_decay 0.04 -> final_weight_decay 0.4, clip_grad 3.0 per_tensor."""

    section = "dino"
    standalone: ClassVar[dict[str, Any]] = {
        # the paper's optimiser (local crops: views.local_*, 96/224 of the global size)
        "optim.name": "adamw",
        "optim.base_lr": 5e-4,
        "optim.lr_scaling": "linear",
        "optim.final_lr": 1e-6,
        "optim.warmup_epochs": lambda cfg: min(10.0, cfg.train.epochs / 10),
        "optim.weight_decay": 0.04,
        "optim.final_weight_decay": 0.4,
        "optim.clip_grad": 3.0,
        "optim.clip_grad_mode": "per_tensor",
    }

    out_dim: Int = Field(
        65536,
        ge=2,
        description="prototypes K of the head's last layer (65536 paper; 4096 small data)",
        json_schema_extra=says("{key} must be >= 2 prototypes, got {value}"),
    )
    hidden_dim: Int = Field(2048, ge=1, description="hidden width of the head's 3-layer MLP")
    bottleneck_dim: Int = Field(
        256, ge=1, description="bottleneck before the weight-normalised last layer"
    )
    head_batch_norm: Bool = Field(
        False, description="BatchNorm in the head's MLP (off in the paper)"
    )
    norm_last_layer: Bool = Field(
        True, description="freeze the last layer's weight-norm gain at 1 (paper)"
    )
    global_crop_scale: CropScale = Field(
        [0.4, 1.0],
        description="area range [min, max] of the global crops",
        json_schema_extra=CROP_SCALE,
    )
    student_temperature: Float = Field(
        0.1, gt=0, description="student temperature tau_s > 0", json_schema_extra=DINO_TEMPERATURE
    )
    teacher_temperature: Float = Field(
        0.04,
        gt=0,
        description="teacher temperature after warm-up (0.04-0.07; above 0.07 is unstable)",
        json_schema_extra=DINO_TEMPERATURE,
    )
    warmup_teacher_temperature: Float = Field(
        0.04,
        gt=0,
        description="teacher temperature at step 0",
        json_schema_extra=DINO_TEMPERATURE,
    )
    warmup_teacher_temperature_epochs: Float = Field(
        30.0,
        ge=0,
        description="epochs of the linear teacher-temperature warm-up from "
        "warmup_teacher_temperature to teacher_temperature (official DINO: 30 epochs, also in the "
        "300-epoch recipe; a no-op while both temperatures are equal, the official code default)",
    )
    center_momentum: Float = Field(
        0.9, ge=0, le=1, description="momentum of the center in [0, 1]; 1 = no centering"
    )
    momentum_base: Float = Field(
        0.996, ge=0, le=1, description="teacher EMA momentum at step 0, cosine to 1"
    )
    freeze_last_layer_epochs: Float = Field(
        1.0,
        ge=0,
        description="epochs during which the last layer's gradients are dropped (1 in the paper)",
    )

    def check(self, cfg: Config) -> None:
        _need_two_images(cfg, "DINO's center and BatchNorm need at least 2 images per batch")


METHOD_SECTIONS: dict[str, type[Section]] = {
    cls.section: cls
    for cls in (SimCLRConfig, MoCoConfig, MoCoV3Config, BYOLConfig, MAEConfig, DINOConfig)
}
# SimSiam, Barlow Twins, VICReg and SwAV live in config/siamese.py
METHOD_SECTIONS |= {
    cls.section: cls for cls in (SimSiamConfig, BarlowConfig, VICRegConfig, SwAVConfig)
}
# the pretext tasks' sections live in config/pretext.py
METHOD_SECTIONS |= {cls.section: cls for cls in (RotationConfig, JigsawConfig)}
METHOD_SECTIONS[ColorizationConfig.section] = ColorizationConfig  # its own file
METHODS: tuple[str, ...] = tuple(METHOD_SECTIONS)
