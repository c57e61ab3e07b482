"""The sections every run has: data, backbone, views, optim, train (and eval, in ``evaluation``).

Each field states its meaning and safe range in ``description`` (``selfsup pretrain --help``
prints them) and its rule in ``Field``/``Literal``. Batch size is always the *global* batch
(REFERENCE.md), and the learning-rate scaling rule is a field, never an implicit rescale.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from selfsup.config.base import Bool, BoolOrAuto, Float, Int, Section, says
from selfsup.config.errors import ConfigError
from selfsup.config.evaluation import EvalConfig
from selfsup.config.views import ViewsConfig

if TYPE_CHECKING:
    from selfsup.config.root import Config

DatasetName = Literal[
    "fashion_mnist", "mnist", "cifar10", "cifar100", "digits", "photo_patches", "folder", "filelist"
]
DATASET_NAMES: tuple[str, ...] = typing.get_args(DatasetName)


class DataConfig(Section):
    section = "data"

    dataset: DatasetName = Field(
        "fashion_mnist", description=f"training images: one of {', '.join(DATASET_NAMES)}"
    )
    data_dir: str | None = Field(
        None,
        description="where the data lives (a folder, or the list file for 'filelist'); given, it "
        "is the only place searched and must exist; default searches $SELFSUP_DATA, then the "
        "Debian dataset package, then torchvision's download cache, and the run's config.yaml "
        "records the folder used",
    )
    download: Bool = Field(
        False, description="allow torchvision to download the dataset (needs internet)"
    )
    eval_dataset: DatasetName | None = Field(
        None,
        description="labelled data for online/offline evaluation; default: the training dataset",
    )
    eval_data_dir: str | None = Field(
        None,
        description="folder of eval_dataset; default: data_dir when eval_dataset is the training "
        "dataset, else the same search as data_dir",
    )
    image_size: Int | None = Field(
        None,
        ge=1,
        description="decode size for image folders / resize for in-memory sets; None keeps "
        "native size",
    )
    channels: Literal[1, 3] | None = Field(
        None,
        description="1 or 3 to convert the data; None keeps the data's channels",
        json_schema_extra=says("{key} must be 1, 3 or null, got {value}"),
    )
    subset: Int | None = Field(
        None,
        ge=2,
        description="pre-train on a fixed random subset of this many training images (quick runs)",
    )
    num_workers: Int = Field(
        0, ge=0, description="DataLoader workers decoding image files (in-memory sets need none)"
    )
    strict: Bool = Field(
        False,
        description="fail on the first unreadable image file; default skips it and warns with "
        "the file names",
    )

    def check(self, cfg: Config) -> None:
        if self.dataset in ("folder", "filelist") and self.data_dir is None:
            raise ConfigError(f"data.dataset={self.dataset} needs data.data_dir=<path>")


class BackboneConfig(Section):
    section = "backbone"

    name: str = Field(
        "resnet18",
        description="resnet18|resnet34|resnet50|resnet101, vit_micro|vit_tiny|vit_small|vit_base, "
        "or 'timm:<model name>' for timm models",
    )
    width: Float = Field(
        1.0,
        gt=0,
        description="channel multiplier of ResNet stages (0.25 = CPU-sized); > 0",
        json_schema_extra=says("{key} must be > 0 (e.g. 0.25 or 1.0), got {value}"),
    )
    cifar_stem: Bool | None = Field(
        None,
        description="3x3 stride-1 stem without max-pool; None = on when the view size is <= 64 px",
    )
    zero_init_residual: Bool = Field(
        False, description="zero-initialise the last BN of every residual block"
    )
    patch_size: Int = Field(
        16, ge=1, description="ViT patch side in pixels (4 for 28/32 px images); divides views.size"
    )
    pool: Literal["cls", "mean"] = Field(
        "cls", description="ViT features for evaluation: cls token or mean of patch tokens"
    )
    drop_path_rate: Float = Field(
        0.0,
        ge=0,
        lt=1,
        description="stochastic depth of the ViT blocks, linearly rising to this rate in the last "
        "block (DINO's student: 0.1; the EMA target never drops paths)",
    )
    freeze_patch_embed: Bool = Field(
        False,
        description="ViT: keep the randomly initialised patch projection fixed (MoCo v3's "
        "--stop-grad-conv1, which stabilises ViT training)",
    )

    def check(self, cfg: Config) -> None:
        if self.name.startswith("vit") and cfg.views.size % self.patch_size != 0:
            raise ConfigError(
                f"views.size={cfg.views.size} must be a multiple of backbone.patch_size="
                f"{self.patch_size}"
            )


class OptimConfig(Section):
    section = "optim"

    name: Literal["lars", "sgd", "adamw"] = Field("lars", description="lars | sgd | adamw")
    base_lr: Float = Field(
        0.3,
        gt=0,
        description="learning rate before scaling: lr = base_lr * rule(global batch); see "
        "lr_scaling",
    )
    lr_scaling: Literal["linear", "sqrt", "none"] = Field(
        "linear",
        description="linear: base_lr*B/256; sqrt: base_lr*sqrt(B) (SimCLR+LARS, small B); none",
    )
    final_lr: Float = Field(
        0.0, ge=0, description="learning rate at the end of the cosine schedule"
    )
    warmup_epochs: Float = Field(
        10.0, ge=0, description="linear warm-up length in epochs (fractions allowed)"
    )
    weight_decay: Float = Field(
        1e-6,
        ge=0,
        description="weight decay (biases and norm parameters: see decay_norm_and_bias)",
    )
    momentum: Float = Field(0.9, ge=0, lt=1, description="momentum of SGD/LARS")
    betas: Annotated[
        list[Annotated[Float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)
    ] = Field(
        [0.9, 0.999],
        description="AdamW betas: two values in [0, 1)",
        json_schema_extra=says("{key} must be two values in [0, 1), got {value}"),
    )
    lars_eta: Float = Field(0.001, gt=0, description="LARS trust coefficient")
    clip_grad: Float | None = Field(
        None, gt=0, description="clip the gradient norm to this value; None = off"
    )
    clip_grad_mode: Literal["global", "per_tensor"] = Field(
        "global",
        description="global: one norm over all gradients; per_tensor: each parameter's own (DINO)",
    )
    final_weight_decay: Float | None = Field(
        None,
        ge=0,
        description="weight decay at the end of a cosine schedule from weight_decay; None = "
        "constant",
    )
    norm_and_bias_lr_scale: Float = Field(
        1.0,
        gt=0,
        description="learning rate of biases and norm parameters as a multiple of the weights' "
        "(the group LARS leaves out of its trust ratio); 1 = the same lr. Barlow Twins: "
        "0.0048 / 0.2 = 0.024",
        json_schema_extra=says("{key} must be > 0 (1 = the weights' learning rate), got {value}"),
    )
    decay_norm_and_bias: Bool = Field(
        False,
        description="also apply weight decay to biases and norm parameters (the official MoCo v2 "
        "SGD decays every parameter; SimCLR/BYOL/DINO exclude them)",
    )


class TrainConfig(Section):
    section = "train"

    batch_size: Int = Field(
        256, ge=1, description="GLOBAL batch size (all devices together); >= 2 for SimCLR"
    )
    epochs: Int = Field(100, ge=1, description="number of epochs")
    total_steps: Int | None = Field(
        None,
        ge=1,
        description="train this many optimiser steps, schedules sized to them, instead of "
        "train.epochs (the last epoch may be partial); `selfsup bench --time-to-accuracy` sets it "
        "from a measured throughput",
    )
    max_steps: Int | None = Field(
        None, ge=1, description="stop after this many steps (schedules still span the run)"
    )
    seed: Int = Field(0, description="seed for weights, data order and views")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto | fp32 | bf16 | fp16; auto = bf16 where the device runs it fast, else "
        "fp32",
    )
    channels_last: Bool = Field(
        True, description="channels-last memory format (faster convolutions)"
    )
    compile: BoolOrAuto = Field(
        "auto",
        description="torch.compile the training step: true | false | auto. auto times the "
        "first steps uncompiled, then compiles when the remaining steps would save at least "
        "1.5x the compile time, by the speed-up and compile time measured for the method on "
        "this kind of device (selfsup/train/compile_policy.py; a method not measured there stays "
        "uncompiled). On the 2-core CPU measured, compiling costs 1.5-2 minutes and SimCLR and "
        "MoCo v3 run no faster, so auto keeps them eager there. A compiled run keeps its compile cache in RUN/compile_cache.bin for "
        "--resume",
        json_schema_extra=says("{key} must be true, false or auto, got {value}"),
    )
    compile_backend: str = Field(
        "inductor",
        description="torch.compile backend (inductor; eager for debugging; auto compiles only "
        "with inductor, the backend it was measured with)",
    )
    deterministic: Bool = Field(
        False, description="deterministic kernels (slower; for exact reproduction)"
    )
    log_every: Int = Field(20, ge=1, description="steps between metrics.jsonl lines")
    knn_every: Int = Field(
        1, ge=0, description="epochs between online k-NN evaluations (needs labels); 0 = off"
    )
    knn_train_samples: Int | None = Field(
        5000,
        ge=1,
        description="training images in the online k-NN bank (a fixed random subset); None = "
        "all. 5000 bank + 2000 queries cost about 3% of a demo epoch (docs/reliability.md)",
    )
    knn_test_samples: Int | None = Field(
        2000,
        ge=1,
        description="test images queried by the online k-NN (a fixed random subset, the same "
        "every epoch); None = all",
    )
    collapse_metrics: Bool = Field(
        True,
        description="with each online k-NN: feature_std, rankme, rankme_ratio, uniformity of the "
        "k-NN's query features (no second extraction) and alignment of 2 views of 256 of them, "
        "with collapse warnings; bounded: 6-9% of the k-NN's time measured on the demo "
        "(docs/methods.md)",
    )
    online_linear: Bool | None = Field(
        None,
        description="train a linear classifier on the detached backbone features of each batch "
        "(its own SGD; never touches the encoder; under 0.2% of a demo step); logs "
        "online_linear_train_acc and, with the online k-NN, linear_top1. A monitor, not the "
        "reported linear probe. null = on when the training data has labels",
    )
    online_linear_lr: Float = Field(
        0.1,
        gt=0,
        description="learning rate of the online linear probe at batch 256 (SGD, momentum 0.9, "
        "no weight decay), scaled by train.batch_size/256",
    )
    checkpoint_every: Int = Field(
        1, ge=1, description="epochs between checkpoints (one is always written at the end)"
    )
    checkpoint_every_steps: Int = Field(
        0, ge=0, description="also checkpoint every N steps inside an epoch; 0 = off"
    )
    progress: Bool | None = Field(
        None,
        description="progress on stderr: null = a bar on a terminal, plain lines otherwise (logs, "
        "pipes); true = the bar even when not a terminal; false = plain lines only",
    )
    progress_every_s: Float = Field(
        30.0,
        ge=0,
        description="seconds between plain progress lines (step, loss, lr, img/s, ETA) when there "
        "is no bar; 0 = none",
    )
    tensorboard: Bool | None = Field(
        None,
        description="also write metrics as TensorBoard event files in RUN/tensorboard/ (train/* "
        "and epoch/* scalars); null = when the tensorboard package is installed",
    )
    keep_best: Int = Field(
        1,
        ge=0,
        description="also keep the k checkpoints with the best online k-NN top-1 (lowest loss "
        "without labels) in checkpoints/best-*.pt; 0 = keep last.pt only",
    )
    sync_batchnorm: Bool = Field(
        False,
        description="multi-process runs: BatchNorm statistics over the global batch of every "
        "process (SyncBatchNorm; BYOL, SimCLR, MoCo v3, DINO ResNet recipes); false = each "
        "process normalises its own sub-batch",
    )
    dist_backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto",
        description="torch.distributed backend under torchrun: auto = nccl on GPUs, gloo on CPUs",
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="stop: end the run at a NaN/inf loss (last good checkpoint kept); skip: skip "
        "that step",
    )

    def planned_steps(self, steps_per_epoch: int) -> int:
        """The run's length, which every schedule spans: ``total_steps``, else ``epochs`` x
        ``steps_per_epoch``."""
        return self.total_steps or self.epochs * steps_per_epoch

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """Epochs the run touches (the last one may be partial with ``total_steps``)."""
        return -(-self.planned_steps(steps_per_epoch) // steps_per_epoch)


SECTIONS: tuple[type[Section], ...] = (
    DataConfig,
    BackboneConfig,
    ViewsConfig,
    OptimConfig,
    TrainConfig,
    EvalConfig,
)
