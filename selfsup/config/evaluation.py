"""The ``eval`` section: the evaluation protocols' options (docs/evaluation.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from selfsup.config.base import Bool, Float, Int, Section, says

__all__ = ["EvalConfig"]


class EvalConfig(Section):
    section = "eval"

    knn_k: Int = Field(20, ge=1, description="neighbours in the weighted k-NN (DINO protocol: 20)")
    knn_temperature: Float = Field(
        0.07, gt=0, description="temperature of the k-NN vote weights exp(sim/T); 0.07 is standard"
    )
    linear_epochs: Int = Field(
        100, ge=1, description="epochs of the linear probe on cached features"
    )
    linear_lrs: Annotated[list[Annotated[Float, Field(gt=0)]], Field(min_length=1)] = Field(
        [0.01, 0.1, 1.0],
        description="learning rates (> 0) tried on the validation split",
        json_schema_extra=says("{key} must be a non-empty list of rates > 0, got {value}"),
    )
    linear_batch_norm: Bool | None = Field(
        None,
        description="BatchNorm1d(affine=False) before the linear layer; null = on for MAE (its "
        "protocol)",
    )
    val_fraction: Float = Field(
        0.1, gt=0, lt=1, description="fraction of train held out to choose hyper-parameters"
    )
    batch_size: Int = Field(512, ge=1, description="batch size of feature extraction")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="feature extraction precision: auto = bf16 where the device runs it fast "
        "(2x on an AVX512-BF16 CPU; top-1 within ~0.2 points of fp32), else fp32; fp32 for "
        "numbers that repeat exactly across machines",
    )
    label_seed: Int = Field(
        0,
        ge=0,
        description="seed of the stratified label subsets (1%, 10%): the same for every encoder "
        "compared; written to RUN/labels/",
    )
    probe_epochs: Int | None = Field(
        None, ge=1, description="epochs of linear_aug (augmented frozen-encoder probe); null = 90"
    )
    probe_lrs: list[Annotated[Float, Field(gt=0)]] | None = Field(
        None,
        description="base lrs (x batch/256) tried by linear_aug on validation; null = [0.1, 1.0]",
    )
    finetune_epochs: Int | None = Field(
        None,
        ge=1,
        description="fine-tuning epochs; null = the recipe's: ResNet 60 (1% labels) / 30 (more), "
        "ViT 100",
    )
    finetune_warmup_epochs: Float | None = Field(
        None,
        ge=0,
        description="linear lr warm-up of fine-tuning, in epochs; null = the recipe's: ResNet 0, "
        "ViT 5 (MAE). Scale it with eval.finetune_epochs: a shortened run of 5 epochs or fewer "
        "is otherwise all warm-up",
    )
    finetune_lrs: list[Annotated[Float, Field(gt=0)]] | None = Field(
        None,
        description="base lrs (x batch/256) of the head tried on validation; null = ResNet "
        "[0.05, 0.2], ViT [5e-4, 1e-3]",
    )
    finetune_batch_size: Int = Field(256, ge=2, description="batch size of linear_aug / finetune")
    finetune_encoder_lr_scale: Float = Field(
        0.1,
        gt=0,
        le=1,
        description="ResNet fine-tuning: encoder lr / head lr (SimCLR's paper: 1.0; lower keeps "
        "small label subsets from erasing pre-training)",
    )
    finetune_layer_decay: Float = Field(
        0.75, gt=0, le=1, description="ViT fine-tuning: layer-wise lr decay (MAE: 0.75 ViT-B)"
    )
    finetune_regularise: bool | None = Field(
        None,
        description="MAE's fine-tuning regularisers (RandAugment 2/9, mixup 0.8 / cutmix 1.0, "
        "label smoothing 0.1, drop path 0.1): null = the recipe's (ViT on, ResNet off). They are "
        "made for 100 epochs: switch them off (false) for a run of a few epochs, where they keep "
        "a ViT near chance",
    )

    network: Literal["auto", "online", "target"] = Field(
        "auto",
        description="which network downstream evaluation and export use for EMA methods: auto = "
        "the method's own protocol (DINO: the target/teacher, as every published DINO number; "
        "BYOL/MoCo: the online encoder), online, or target",
    )
