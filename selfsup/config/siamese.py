"""The sections of the methods without negatives or a momentum network: SimSiam, Barlow Twins,
VICReg and SwAV (``selfsup.config.methods`` lists them with the others).

Each section's ``standalone`` holds its paper's optimiser (``method=<name>`` without a config
file); the presets in configs/ size them for small data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from selfsup.config.base import Bool, Float, Int, Section, says
from selfsup.config.errors import ConfigError

if TYPE_CHECKING:
    from selfsup.config.root import Config

__all__ = ["BarlowConfig", "SimSiamConfig", "SwAVConfig", "VICRegConfig"]


def _batch_statistics(cfg: Config, method: str, why: str) -> None:
    if cfg.train.batch_size < 2:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size}: {method} {why}, which needs at least 2 "
            "images per batch; raise train.batch_size (256 or more is typical)"
        )


def _final_lr(fraction: float) -> Any:
    """``optim.final_lr`` as a fraction of the peak lr (the official Barlow Twins, VICReg and
    SwAV schedules end at peak / 1000)."""

    def final(cfg: Config) -> float:
        from selfsup.train.optim import scaled_lr  # here: importing the config imports no torch

        o = cfg.optim
        return fraction * scaled_lr(o.base_lr, cfg.train.batch_size, o.lr_scaling)

    return final


class SimSiamConfig(Section):
    """SimSiam (Chen & He 2021): SGD 0.05 x B/256, momentum 0.9, weight decay 1e-4 on every
    parameter, cosine schedule without warm-up, the predictor at a fixed lr."""

    section = "simsiam"
    standalone: ClassVar[dict[str, Any]] = {
        "optim.name": "sgd",
        "optim.base_lr": 0.05,
        "optim.lr_scaling": "linear",
        "optim.momentum": 0.9,
        "optim.weight_decay": 1e-4,
        "optim.decay_norm_and_bias": True,  # the official SGD decays every parameter
        "optim.warmup_epochs": 0.0,
        "backbone.zero_init_residual": True,
    }

    proj_hidden_dim: Int = Field(
        2048, ge=1, description="hidden width of the projector (2048: ResNet-50's feature width)"
    )
    proj_out_dim: Int = Field(
        2048, ge=1, description="output dimension of projector and predictor (2048 in the paper)"
    )
    proj_num_layers: Int = Field(
        3,
        ge=1,
        description="Linear layers of the projector, each followed by BN (3 on ImageNet, 2 in the "
        "paper's CIFAR variant)",
    )
    pred_hidden_dim: Int = Field(
        512,
        ge=1,
        description="bottleneck of the predictor (512 for 2048-d projections; the paper finds the "
        "bottleneck helps, 1/4 of proj_out_dim is its ratio)",
    )
    fixed_predictor_lr: Bool = Field(
        True,
        description="the predictor keeps the peak learning rate (not warmed up or decayed); the "
        "paper finds it slightly better (official --fix-pred-lr)",
    )
    stop_gradient: Bool = Field(
        True,
        description="stop the gradient through the target projection; false is the paper's "
        "ablation and collapses at once (the embeddings go constant)",
    )

    def check(self, cfg: Config) -> None:
        _batch_statistics(cfg, "simsiam", "normalises every head layer over the batch (BN)")


class BarlowConfig(Section):
    """Barlow Twins (Zbontar et al. 2021): LARS, lr 0.2 x B/256 for weights and 0.0048 x B/256
    for biases and BN parameters, weight decay 1.5e-6, 10 warm-up epochs, cosine to 1/1000."""

    section = "barlow"
    standalone: ClassVar[dict[str, Any]] = {
        "optim.name": "lars",
        "optim.base_lr": 0.2,
        "optim.lr_scaling": "linear",
        "optim.norm_and_bias_lr_scale": 0.024,  # 0.0048 / 0.2
        "optim.weight_decay": 1.5e-6,
        "optim.warmup_epochs": lambda cfg: min(10.0, cfg.train.epochs / 10),
        "optim.final_lr": _final_lr(1e-3),
        "backbone.zero_init_residual": True,
    }

    proj_hidden_dim: Int = Field(
        8192, ge=1, description="hidden width of the projector (8192 in the paper)"
    )
    proj_out_dim: Int = Field(
        8192,
        ge=1,
        description="embedding dimension D (8192 in the paper; wider helps up to 16384)",
    )
    proj_num_layers: Int = Field(3, ge=1, description="Linear layers of the projector (3)")
    off_diagonal_weight: Float = Field(
        0.0051,
        ge=0,
        description="lambda, the weight of the off-diagonal (redundancy) terms: 0.0051 for D = "
        "8192; the off-diagonal sum grows as D^2 and the diagonal one as D, so the balance moves "
        "with D (no tuned values for other D exist)",
        json_schema_extra=says("{key} must be >= 0 (0.0051 in the paper), got {value}"),
    )
    gather_distributed: Bool = Field(
        True, description="batch statistics over every process's embeddings (the global batch)"
    )

    def check(self, cfg: Config) -> None:
        _batch_statistics(cfg, "barlow", "standardises each embedding dimension over the batch")


class VICRegConfig(Section):
    """VICReg (Bardes et al. 2022): LARS 0.2 x B/256, weight decay 1e-6, 10 warm-up epochs, cosine
    to 1/1000."""

    section = "vicreg"
    standalone: ClassVar[dict[str, Any]] = {
        "optim.name": "lars",
        "optim.base_lr": 0.2,
        "optim.lr_scaling": "linear",
        "optim.weight_decay": 1e-6,
        "optim.warmup_epochs": lambda cfg: min(10.0, cfg.train.epochs / 10),
        "optim.final_lr": _final_lr(1e-3),
        "backbone.zero_init_residual": True,
    }

    proj_hidden_dim: Int = Field(
        8192, ge=1, description="hidden width of the expander (8192 in the paper)"
    )
    proj_out_dim: Int = Field(8192, ge=1, description="embedding dimension D (8192 in the paper)")
    proj_num_layers: Int = Field(3, ge=1, description="Linear layers of the expander (3)")
    invariance_weight: Float = Field(
        25.0, ge=0, description="lambda, weight of the mean squared distance of the views (25)"
    )
    variance_weight: Float = Field(
        25.0,
        ge=0,
        description="mu, weight of the std hinge max(0, 1 - std) per dimension (25; mu = lambda "
        "is the paper's choice, below lambda the embeddings shrink towards collapse)",
    )
    covariance_weight: Float = Field(
        1.0, ge=0, description="nu, weight of the squared off-diagonal covariances / D (1)"
    )
    eps: Float = Field(
        1e-4,
        gt=0,
        description="epsilon in std = sqrt(var + eps): keeps the gradient finite at collapse",
    )
    gather_distributed: Bool = Field(
        True, description="variance and covariance over every process's embeddings"
    )

    def check(self, cfg: Config) -> None:
        _batch_statistics(cfg, "vicreg", "computes variances and covariances over the batch")


class SwAVConfig(Section):
    """SwAV (Caron et al. 2020). The optimiser is the official batch-256 recipe (scripts/
    swav_200ep_bs256_pretrain.sh: LARS lr 0.6, final 0.0006, no warm-up, weight decay 1e-6)
    with the linear rule: 0.6 x B/256, ending at 1/1000 of the peak. The official batch-4096
    recipe uses 4.8 (0.3 x B/256) with 10 warm-up epochs; this library runs small batches."""

    section = "swav"
    standalone: ClassVar[dict[str, Any]] = {
        "optim.name": "lars",
        "optim.base_lr": 0.6,
        "optim.lr_scaling": "linear",
        "optim.weight_decay": 1e-6,
        "optim.warmup_epochs": 0.0,
        "optim.final_lr": _final_lr(1e-3),
    }

    proj_hidden_dim: Int = Field(2048, ge=1, description="hidden width of the projector (2048)")
    proj_out_dim: Int = Field(128, ge=1, description="embedding dimension (128)")
    num_prototypes: Int = Field(
        3000,
        ge=2,
        description="prototypes K (3000 on ImageNet, 3x its classes; the paper finds the number "
        "matters little as long as it is several times the classes)",
        json_schema_extra=says("{key} must be >= 2 prototypes, got {value}"),
    )
    temperature: Float = Field(
        0.1,
        gt=0,
        description="temperature of the predicted assignments (0.1)",
        json_schema_extra=says("{key} must be > 0 (0.1 in the paper), got {value}"),
    )
    epsilon: Float = Field(
        0.05,
        gt=0,
        description="Sinkhorn-Knopp entropic regularisation (0.05); larger gives smoother codes, "
        "much larger (> 0.1) makes them near uniform and stalls learning",
        json_schema_extra=says("{key} must be > 0 (0.03-0.05), got {value}"),
    )
    sinkhorn_iterations: Int = Field(3, ge=1, description="Sinkhorn-Knopp iterations (3)")
    freeze_prototypes_epochs: Float = Field(
        1.0,
        ge=0,
        description="epochs (fractions allowed, counted in steps) during which the prototypes "
        "get no update (1 in the paper: they would follow the random features of the start)",
    )
    queue_length: Int = Field(
        0,
        ge=0,
        description="embeddings of past batches added to Sinkhorn's batch, per global crop; 0 = "
        "no queue. Official: 3840 at batch 256 (the batch is too small to spread over 3000 "
        "prototypes); must be >= train.batch_size",
    )
    queue_start_epoch: Int = Field(
        15,
        ge=0,
        description="epoch from which the queue is filled (15 in the paper: the features of the "
        "first epochs change too fast); it is used once full",
    )
    gather_distributed: Bool = Field(
        True, description="Sinkhorn-Knopp over every process's embeddings (the global batch)"
    )

    def check(self, cfg: Config) -> None:
        batch = cfg.train.batch_size
        _batch_statistics(cfg, "swav", "spreads the batch over the prototypes (Sinkhorn-Knopp)")
        if 0 < self.queue_length < batch:
            raise ConfigError(
                f"swav.queue_length={self.queue_length} is smaller than train.batch_size={batch}:"
                " the queue must hold at least one batch of embeddings; raise swav.queue_length "
                "(3840 at batch 256 in the paper) or set it to 0 (no queue)"
            )
