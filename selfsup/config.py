"""Typed run configuration: dataclasses, YAML in/out, ``key=value`` overrides, validation.

Every field carries its meaning and safe range in ``metadata["help"]``; ``selfsup pretrain --help``
prints them, so the help text and the code cannot drift apart. Batch size is always the *global*
batch (REFERENCE.md), and the learning-rate scaling rule is a field, never an implicit rescale.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and the fix."""


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a help text (and a copied default for mutable values)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


METHODS = ("simclr", "moco", "mocov3", "byol", "mae", "dino")
DATASET_NAMES = ("fashion_mnist", "mnist", "cifar10", "cifar100", "digits", "folder", "filelist")


@dataclass
class DataConfig:
    dataset: str = _f("fashion_mnist", f"training images: one of {', '.join(DATASET_NAMES)}")
    data_dir: str | None = _f(
        None,
        "where the data lives (a folder, or the list file for 'filelist'); default searches "
        "$SELFSUP_DATA, then the Debian dataset package, then torchvision's download",
    )
    download: bool = _f(False, "allow torchvision to download the dataset (needs internet)")
    eval_dataset: str | None = _f(
        None, "labelled data for online/offline evaluation; default: the training dataset"
    )
    eval_data_dir: str | None = _f(None, "folder of eval_dataset; default: data_dir")
    image_size: int | None = _f(
        None, "decode size for image folders / resize for in-memory sets; None keeps native size"
    )
    channels: int | None = _f(None, "1 or 3 to convert the data; None keeps the data's channels")
    subset: int | None = _f(
        None, "pre-train on a fixed random subset of this many training images (quick runs)"
    )
    num_workers: int = _f(0, "DataLoader workers decoding image files (in-memory sets need none)")
    strict: bool = _f(
        False,
        "fail on the first unreadable image file; default skips it and warns with the file names",
    )


@dataclass
class BackboneConfig:
    name: str = _f(
        "resnet18",
        "resnet18|resnet34|resnet50|resnet101, vit_micro|vit_tiny|vit_small|vit_base, "
        "or 'timm:<model name>' for timm models",
    )
    width: float = _f(1.0, "channel multiplier of ResNet stages (0.25 = CPU-sized); > 0")
    cifar_stem: bool | None = _f(
        None, "3x3 stride-1 stem without max-pool; None = on when the view size is <= 64 px"
    )
    zero_init_residual: bool = _f(False, "zero-initialise the last BN of every residual block")
    patch_size: int = _f(16, "ViT patch side in pixels (4 for 28/32 px images); divides views.size")
    pool: str = _f("cls", "ViT features for evaluation: cls token or mean of patch tokens")
    drop_path_rate: float = _f(0.0, "ViT stochastic depth of the last block (DINO student: 0.1)")
    freeze_patch_embed: bool = _f(False, "ViT: fixed random patch projection (MoCo v3)")


@dataclass
class ViewsConfig:
    """Every field left at null takes the method's own recipe (REFERENCE.md): SimCLR strong
    crop + colour + blur, MoCo v2 crop 0.2, BYOL asymmetric blur/solarize, MAE crop + flip only."""

    size: int = _f(32, "side of the training views in pixels")
    crop_min_scale: float | None = _f(
        None, "smallest crop area fraction of RandomResizedCrop, in (0, 1]; null = method's"
    )
    color_strength: float = _f(
        1.0, "multiplier on the recipe's colour jitter (SimCLR's s: 0.8s/0.8s/0.8s/0.2s); 0 = off"
    )
    jitter_p: float | None = _f(None, "probability of colour jitter per view; null = method's")
    gray_p: float | None = _f(None, "probability of grayscale per view; null = method's")
    blur_p: list[float] | None = _f(
        None, "Gaussian blur probability per view (one value = every view); 0 for <= 32 px images"
    )
    solarize_p: list[float] | None = _f(
        None, "solarize probability per view (one value = every view); null = method's"
    )
    flip_p: float | None = _f(None, "probability of horizontal flip per view; null = method's")
    mean: list[float] | None = _f(None, "normalisation mean per channel; null = dataset's")
    std: list[float] | None = _f(None, "normalisation std per channel; null = dataset's")


@dataclass
class SimCLRConfig:
    temperature: float = _f(
        0.5, "NT-Xent temperature tau > 0: 0.1 (ImageNet) / 0.5 (CIFAR, small images)"
    )
    projector: str = _f("v2", "projection head: v1 (2 layers) or v2 (3 layers with BN)")
    proj_hidden_dim: int | None = _f(None, "hidden width of the projector; None = preset's")
    proj_out_dim: int = _f(128, "output dimension of the projector (128 in the paper)")
    gather_distributed: bool = _f(True, "negatives from all processes (gathered with gradient)")
    loss_scale: str = _f("mean", "mean (paper) or sum (official code, 2x)")


@dataclass
class MoCoConfig:
    temperature: float = _f(0.2, "InfoNCE temperature: 0.07 (MoCo v1) / 0.2 (v2); > 0")
    queue_size: int = _f(65536, "negatives in the queue K (65536 on ImageNet; >= batch size)")
    momentum: float = _f(0.999, "key encoder EMA momentum m in [0, 1] (0.99-0.999)")
    proj_hidden_dim: int = _f(2048, "hidden width of the v2 MLP head (2048-ReLU-128)")
    proj_out_dim: int = _f(128, "output dimension of the head")
    split_bn: int = _f(8, "BatchNorm splits on one process (shuffle-BN substitute); 0 = plain BN")


@dataclass
class MoCoV3Config:
    temperature: float = _f(
        1.0, "contrastive temperature: 1.0 (ResNet) / 0.2 (ViT) in the official code"
    )
    momentum_base: float = _f(0.99, "target momentum at step 0, cosine to 1 at the end")
    proj_hidden_dim: int = _f(4096, "hidden width of the projector")
    proj_num_layers: int = _f(2, "projector layers: 2 (official ResNet recipe) or 3 (ViT recipe)")
    proj_out_dim: int = _f(256, "output dimension of projector and predictor")
    pred_hidden_dim: int = _f(4096, "hidden width of the 2-layer predictor")
    pred_last_batch_norm: bool = _f(
        False, "BN (no affine) after the predictor: false ResNet, true ViT"
    )
    gather_distributed: bool = _f(True, "keys from all processes as negatives")


@dataclass
class BYOLConfig:
    momentum_base: float = _f(
        0.99, "target EMA tau at step 0, cosine to 1: 0.996 (1000 epochs) / 0.99 (300 epochs)"
    )
    momentum_schedule: str = _f("cosine", "cosine (tau -> 1) or constant (tau = momentum_base)")
    proj_hidden_dim: int = _f(4096, "hidden width of projector (Linear-BN-ReLU-Linear)")
    proj_out_dim: int = _f(256, "output dimension of projector and predictor")
    pred_hidden_dim: int = _f(4096, "hidden width of the predictor")
    predictor: bool = _f(True, "use the predictor; false only for the collapse ablation")


@dataclass
class MAEConfig:
    mask_ratio: float = _f(0.75, "fraction of patches removed, in (0, 1); 0.75 in the paper")
    decoder_dim: int = _f(512, "decoder width (paper: 512)")
    decoder_depth: int = _f(8, "decoder Transformer blocks (paper: 8)")
    decoder_heads: int = _f(16, "decoder attention heads (must divide decoder_dim)")
    norm_pix_loss: bool = _f(False, "per-patch normalised pixel targets (better features)")


@dataclass
class DINOConfig:
    """DINO (Caron et al. 2021). The paper's optimiser settings live in ``optim``: adamw, base_lr
    5e-4 (linear rule), weight_decay 0.04 -> final_weight_decay 0.4, clip_grad 3.0 per_tensor."""

    out_dim: int = _f(65536, "prototypes K of the head's last layer (65536 paper; 4096 small data)")
    hidden_dim: int = _f(2048, "hidden width of the head's 3-layer MLP")
    bottleneck_dim: int = _f(256, "bottleneck before the weight-normalised last layer")
    head_batch_norm: bool = _f(False, "BatchNorm in the head's MLP (off in the paper)")
    norm_last_layer: bool = _f(True, "freeze the last layer's weight-norm gain at 1 (paper)")
    num_local_crops: int = _f(8, "local crops N besides the 2 global ones (8 code, 10 paper)")
    local_size: int = _f(96, "side of the local crops in pixels (96 for 224 px globals)")
    global_crop_scale: list[float] = _f([0.4, 1.0], "area range of the global crops")
    local_crop_scale: list[float] = _f([0.05, 0.4], "area range of the local crops")
    student_temperature: float = _f(0.1, "student temperature tau_s > 0")
    teacher_temperature: float = _f(
        0.04, "teacher temperature after warm-up (0.04-0.07; above 0.07 is unstable)"
    )
    warmup_teacher_temperature: float = _f(0.04, "teacher temperature at step 0")
    warmup_teacher_temperature_epochs: float = _f(30.0, "epochs of tau_t warm-up")
    center_momentum: float = _f(0.9, "momentum of the center in [0, 1]; 1 = no centering")
    momentum_base: float = _f(0.996, "teacher EMA momentum at step 0, cosine to 1")
    freeze_last_layer_epochs: float = _f(
        1.0, "epochs during which the last layer's gradients are dropped (1 in the paper)"
    )


@dataclass
class OptimConfig:
    name: str = _f("lars", "lars | sgd | adamw")
    base_lr: float = _f(
        0.3, "learning rate before scaling: lr = base_lr * rule(global batch); see lr_scaling"
    )
    lr_scaling: str = _f(
        "linear", "linear: base_lr*B/256; sqrt: base_lr*sqrt(B) (SimCLR+LARS, small B); none"
    )
    final_lr: float = _f(0.0, "learning rate at the end of the cosine schedule")
    warmup_epochs: float = _f(10.0, "linear warm-up length in epochs (fractions allowed)")
    weight_decay: float = _f(1e-6, "weight decay (not applied to biases and norm parameters)")
    momentum: float = _f(0.9, "momentum of SGD/LARS")
    betas: list[float] = _f([0.9, 0.999], "AdamW betas")
    lars_eta: float = _f(0.001, "LARS trust coefficient")
    clip_grad: float | None = _f(None, "clip the gradient norm to this value; None = off")
    clip_grad_mode: str = _f(
        "global", "global: one norm over all gradients; per_tensor: each parameter's own (DINO)"
    )
    decay_norm_and_bias: bool = _f(False, "decay biases and norm parameters (MoCo v2)")
    final_weight_decay: float | None = _f(
        None, "weight decay at the end of a cosine schedule from weight_decay; None = constant"
    )


@dataclass
class TrainConfig:
    batch_size: int = _f(256, "GLOBAL batch size (all devices together); >= 2 for SimCLR")
    epochs: int = _f(100, "number of epochs")
    max_steps: int | None = _f(None, "stop after this many steps (schedules still span epochs)")
    seed: int = _f(0, "seed for weights, data order and views")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = _f(
        "auto", "auto | fp32 | bf16 | fp16; auto = bf16 where the device runs it fast, else fp32"
    )
    channels_last: bool = _f(True, "channels-last memory format (faster convolutions)")
    compile: bool = _f(
        False,
        "torch.compile the training step (+24% img/s measured on a 2-core CPU for SimCLR; the "
        "first step compiles for about a minute, so it pays off on runs of minutes or more)",
    )
    compile_backend: str = _f("inductor", "torch.compile backend (inductor; eager for debugging)")
    deterministic: bool = _f(False, "deterministic kernels (slower; for exact reproduction)")
    log_every: int = _f(20, "steps between metrics.jsonl lines")
    knn_every: int = _f(1, "epochs between online k-NN evaluations (needs labels); 0 = off")
    knn_train_samples: int | None = _f(10000, "training images in the online k-NN bank; None = all")
    knn_test_samples: int | None = _f(None, "test images in the online k-NN; None = all")
    checkpoint_every: int = _f(1, "epochs between checkpoints (one is always written at the end)")
    checkpoint_every_steps: int = _f(0, "also checkpoint every N steps inside an epoch; 0 = off")
    progress: bool = _f(True, "show a progress bar")
    keep_best: int = _f(
        1,
        "also keep the k checkpoints with the best online k-NN top-1 (lowest loss without "
        "labels) in checkpoints/best-*.pt; 0 = keep last.pt only",
    )
    on_nonfinite: str = _f(
        "stop",
        "stop: end the run at a NaN/inf loss (last good checkpoint kept); skip: skip that step",
    )


@dataclass
class EvalConfig:
    knn_k: int = _f(20, "neighbours in the weighted k-NN (DINO protocol: 20)")
    knn_temperature: float = _f(0.07, "temperature of the k-NN vote weights exp(sim/T)")
    linear_epochs: int = _f(100, "epochs of the linear probe on cached features")
    linear_lrs: list[float] = _f([0.01, 0.1, 1.0], "learning rates tried on the validation split")
    linear_batch_norm: bool | None = _f(
        None, "BatchNorm1d(affine=False) before the linear layer; null = on for MAE (its protocol)"
    )
    val_fraction: float = _f(0.1, "fraction of train held out to choose hyper-parameters")
    batch_size: int = _f(512, "batch size of feature extraction")
    network: str = _f("auto", "auto | online | target")


@dataclass
class Config:
    method: str = _f("simclr", f"self-supervised method: {', '.join(METHODS)}")
    run_dir: str | None = _f(None, "output folder; default runs/<method>-<dataset>-<time>")
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)
    mocov3: MoCoV3Config = field(default_factory=MoCoV3Config)
    byol: BYOLConfig = field(default_factory=BYOLConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        for key, value in _flatten(data):
            set_key(cfg, key, value)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        return cls.from_dict(load_yaml(path))

    def validate(self) -> Config:
        """Reject impossible settings before any training starts; returns self."""
        validate(self)
        return self


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; pass a YAML file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data)}")
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where and what, and how to fix it."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    detail = f" ({context})" if context else ""
    return f"{where}{problem}{detail}; fix the indentation, colons or brackets there"


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def iter_fields(obj: Any = None, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """Yield (dotted key, field, current value) for every leaf option of a config."""
    obj = Config() if obj is None else obj
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def _all_keys() -> list[str]:
    return [key for key, _, _ in iter_fields()]


_SCALAR_LISTS = ("views.blur_p", "views.solarize_p")


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """Convert ``value`` to the field's declared type or raise a ConfigError naming both."""
    hint = annotation
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        hint = inner[0]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        raise ConfigError(
            f"{key} cannot be null; give a value of type {getattr(hint, '__name__', hint)}"
        )
    if origin is list:
        if isinstance(value, int | float) and not isinstance(value, bool) and key in _SCALAR_LISTS:
            value = [value]  # one value for every view
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list such as [0.5, 0.5], got {value!r}")
        return [_coerce(key, args[0], v) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Set a dotted key (``train.batch_size``) with type checking; unknown keys are refused."""
    parts = key.split(".")
    obj: Any = cfg
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(obj) or not hasattr(obj, part):
            raise ConfigError(_unknown_key_message(key))
        obj = getattr(obj, part)
    name = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
    if name not in fields:
        raise ConfigError(_unknown_key_message(key))
    if dataclasses.is_dataclass(getattr(obj, name)):
        raise ConfigError(
            f"{key} is a section, not an option; give its options, e.g. {key}.<option>=value or "
            f"a YAML mapping '{key}: {{<option>: value}}' (`selfsup pretrain --help` lists them)"
        )
    hints = typing.get_type_hints(type(obj))
    setattr(obj, name, _coerce(key, hints[name], value))


def _unknown_key_message(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, _all_keys(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown option {key!r}{hint} (`selfsup pretrain --help` lists every option)"


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Apply ``key=value`` strings; values are parsed as YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.epochs=10")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and value.lower() in ("none", "null"):
            value = None
        set_key(cfg, key.strip(), value)
    return cfg


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Check values and their combinations; each message names the option and the fix."""
    _require(cfg.method in METHODS, f"method={cfg.method!r} is unknown; choose one of {METHODS}")
    d, b, v, o, t, e = cfg.data, cfg.backbone, cfg.views, cfg.optim, cfg.train, cfg.eval
    _require(
        d.dataset in DATASET_NAMES,
        f"data.dataset={d.dataset!r} is unknown; choose one of {', '.join(DATASET_NAMES)}",
    )
    if d.eval_dataset is not None:
        _require(
            d.eval_dataset in DATASET_NAMES,
            f"data.eval_dataset={d.eval_dataset!r} is unknown; choose one of {', '.join(DATASET_NAMES)}",
        )
    if d.dataset in ("folder", "filelist"):
        _require(d.data_dir is not None, f"data.dataset={d.dataset} needs data.data_dir=<path>")
    _require(d.channels in (None, 1, 3), f"data.channels must be 1, 3 or null, got {d.channels}")
    _require(d.subset is None or d.subset >= 2, "data.subset must be >= 2 images or null")
    _require(d.num_workers >= 0, "data.num_workers must be >= 0")
    _require(b.width > 0, f"backbone.width must be > 0 (e.g. 0.25 or 1.0), got {b.width}")
    _require(v.size >= 8, f"views.size must be >= 8 pixels, got {v.size}")
    _require(
        v.crop_min_scale is None or 0 < v.crop_min_scale <= 1,
        "views.crop_min_scale must be in (0, 1], e.g. 0.08",
    )
    _require(v.color_strength >= 0, "views.color_strength must be >= 0 (0 disables jitter)")
    for name in ("jitter_p", "gray_p", "flip_p"):
        p = getattr(v, name)
        _require(
            p is None or 0 <= p <= 1,
            f"views.{name} is a probability, got {p}; use a value in [0, 1]",
        )
    for name in ("blur_p", "solarize_p"):
        ps = getattr(v, name) or []
        _require(
            all(0 <= p <= 1 for p in ps),
            f"views.{name} holds probabilities, got {ps}; use values in [0, 1]",
        )
    for name in ("mean", "std"):
        vals = getattr(v, name)
        _require(vals is None or len(vals) in (1, 3), f"views.{name} needs 1 or 3 values")
    if v.std is not None:
        _require(all(s > 0 for s in v.std), "views.std values must be > 0")
    if cfg.method == "simclr":
        s = cfg.simclr
        _require(
            s.temperature > 0,
            f"simclr.temperature must be > 0 (0.1-0.5 is the usual range), got {s.temperature}",
        )
        _require(
            t.batch_size >= 2,
            f"train.batch_size={t.batch_size}: SimCLR needs at least 2 images per batch for "
            "negatives (256 or more is typical); raise train.batch_size",
        )
        _require(
            s.projector in ("v1", "v2"), f"simclr.projector must be v1 or v2, got {s.projector!r}"
        )
        _require(s.proj_out_dim >= 1, "simclr.proj_out_dim must be >= 1")
    _validate_method(cfg)
    _require(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    _require(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    _require(t.max_steps is None or t.max_steps >= 1, "train.max_steps must be >= 1 or null")
    _require(
        t.precision in ("auto", "fp32", "bf16", "fp16"), "train.precision: auto|fp32|bf16|fp16"
    )
    _require(t.log_every >= 1, "train.log_every must be >= 1")
    _require(t.knn_every >= 0, "train.knn_every must be >= 0 (0 disables online k-NN)")
    _require(t.checkpoint_every >= 1, "train.checkpoint_every must be >= 1 epoch")
    _require(
        o.name in ("lars", "sgd", "adamw"), f"optim.name must be lars|sgd|adamw, got {o.name!r}"
    )
    _require(
        o.lr_scaling in ("linear", "sqrt", "none"),
        f"optim.lr_scaling must be linear|sqrt|none, got {o.lr_scaling!r}",
    )
    _require(o.base_lr > 0, f"optim.base_lr must be > 0, got {o.base_lr}")
    _require(o.final_lr >= 0, "optim.final_lr must be >= 0")
    _require(o.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
    _require(o.weight_decay >= 0, "optim.weight_decay must be >= 0")
    _require(0 <= o.momentum < 1, "optim.momentum must be in [0, 1)")
    _require(
        len(o.betas) == 2 and all(0 <= x < 1 for x in o.betas), "optim.betas: two values in [0, 1)"
    )
    _require(o.clip_grad is None or o.clip_grad > 0, "optim.clip_grad must be > 0 or null")
    _require(
        o.clip_grad_mode in ("global", "per_tensor"),
        f"optim.clip_grad_mode must be global or per_tensor, got {o.clip_grad_mode!r}",
    )
    _require(
        o.final_weight_decay is None or o.final_weight_decay >= 0,
        "optim.final_weight_decay must be >= 0 or null (constant weight decay)",
    )
    _require(t.keep_best >= 0, f"train.keep_best must be >= 0, got {t.keep_best}")
    _require(
        t.on_nonfinite in ("stop", "skip"),
        f"train.on_nonfinite must be stop or skip, got {t.on_nonfinite!r}",
    )
    _require(e.knn_k >= 1, "eval.knn_k must be >= 1")
    _require(e.knn_temperature > 0, "eval.knn_temperature must be > 0 (0.07 is standard)")
    _require(e.linear_epochs >= 1, "eval.linear_epochs must be >= 1")
    _require(0 < e.val_fraction < 1, "eval.val_fraction must be in (0, 1), e.g. 0.1")


def _validate_method(cfg: Config) -> None:
    t, b = cfg.train, cfg.backbone
    contrastive = {"moco": cfg.moco.temperature, "mocov3": cfg.mocov3.temperature}
    if cfg.method in contrastive:
        tau = contrastive[cfg.method]
        _require(tau > 0, f"{cfg.method}.temperature must be > 0 (0.07-1.0), got {tau}")
    if cfg.method in ("moco", "mocov3", "byol"):
        _require(
            t.batch_size >= 2,
            f"train.batch_size={t.batch_size}: {cfg.method} needs at least 2 images per batch "
            "(BatchNorm and negatives); raise train.batch_size",
        )
    if cfg.method == "moco":
        m = cfg.moco
        _require(
            m.queue_size >= t.batch_size,
            f"moco.queue_size={m.queue_size} is smaller than train.batch_size={t.batch_size}; "
            "the queue must hold at least one batch of keys (raise moco.queue_size)",
        )
        _require(0 <= m.momentum <= 1, f"moco.momentum must be in [0, 1], got {m.momentum}")
        _require(m.split_bn >= 0, "moco.split_bn must be >= 0 (0 = plain BatchNorm)")
        if m.split_bn > 1:
            _require(
                t.batch_size % m.split_bn == 0,
                f"train.batch_size={t.batch_size} must be divisible by moco.split_bn={m.split_bn}; "
                "change one of them (or set moco.split_bn=0)",
            )
    if cfg.method == "mocov3":
        _require(0 <= cfg.mocov3.momentum_base <= 1, "mocov3.momentum_base must be in [0, 1]")
    if cfg.method == "byol":
        y = cfg.byol
        _require(
            0 <= y.momentum_base <= 1,
            f"byol.momentum_base must be in [0, 1], got {y.momentum_base}",
        )
        _require(
            y.momentum_schedule in ("cosine", "constant"),
            f"byol.momentum_schedule must be cosine or constant, got {y.momentum_schedule!r}",
        )
    if cfg.method == "mae":
        r = cfg.mae.mask_ratio
        _require(
            0 < r < 1,
            f"mae.mask_ratio={r}: the ratio of removed patches must be in (0, 1) (0.75 in the "
            "paper); 0 leaves nothing to reconstruct and 1 leaves the encoder no input",
        )
        _require(
            cfg.mae.decoder_dim % cfg.mae.decoder_heads == 0,
            "mae.decoder_heads must divide mae.decoder_dim",
        )
        _require(
            b.name.startswith("vit"), f"MAE needs a ViT backbone (e.g. vit_tiny), got {b.name!r}"
        )
    if cfg.method == "dino":
        _validate_dino(cfg)
    if b.name.startswith("vit"):
        _require(
            cfg.views.size % b.patch_size == 0,
            f"views.size={cfg.views.size} must be a multiple of backbone.patch_size={b.patch_size}",
        )
        _require(b.pool in ("cls", "mean"), f"backbone.pool must be cls or mean, got {b.pool!r}")


def _validate_dino(cfg: Config) -> None:
    n, b = cfg.dino, cfg.backbone
    for name in ("student_temperature", "teacher_temperature", "warmup_teacher_temperature"):
        tau = getattr(n, name)
        _require(tau > 0, f"dino.{name} must be > 0 (0.04-0.1), got {tau}")
    _require(0 <= n.center_momentum <= 1, "dino.center_momentum must be in [0, 1] (0.9)")
    _require(0 <= n.momentum_base <= 1, "dino.momentum_base must be in [0, 1] (0.996)")
    _require(n.out_dim >= 2, f"dino.out_dim must be >= 2 prototypes, got {n.out_dim}")
    _require(n.hidden_dim >= 1 and n.bottleneck_dim >= 1, "dino head dimensions must be >= 1")
    _require(n.num_local_crops >= 0, "dino.num_local_crops must be >= 0")
    _require(n.freeze_last_layer_epochs >= 0, "dino.freeze_last_layer_epochs must be >= 0")
    _require(
        8 <= n.local_size <= cfg.views.size,
        f"dino.local_size={n.local_size} must be in [8, views.size={cfg.views.size}] pixels",
    )
    for name in ("global_crop_scale", "local_crop_scale"):
        lo_hi = getattr(n, name)
        _require(
            len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] <= 1,
            f"dino.{name} must be [min, max] with 0 < min <= max <= 1, got {lo_hi}",
        )
    if b.name.startswith("vit"):
        _require(
            n.local_size % b.patch_size == 0,
            f"dino.local_size={n.local_size} must be a multiple of backbone.patch_size="
            f"{b.patch_size} (ViT patches)",
        )
    _require(
        cfg.train.batch_size >= 2,
        f"train.batch_size={cfg.train.batch_size}: DINO's center and BatchNorm need at least 2 "
        "images per batch; raise train.batch_size",
    )


def option_help() -> str:
    """Every option with its default and help text, grouped by section (for ``--help``)."""
    lines: list[str] = []
    section = None
    for key, f, value in iter_fields():
        head = key.split(".")[0] if "." in key else ""
        if head != section:
            section = head
            lines.append(f"\n[{head or 'top level'}]")
        lines.append(f"  {key}={value!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)
