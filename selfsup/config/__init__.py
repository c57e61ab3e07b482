"""Typed run configuration on pydantic v2: sections, YAML in/out, ``key=value`` overrides.

Every field carries its meaning and safe range in ``description`` and its rule in ``Field`` /
``Literal``; ``selfsup pretrain --help`` prints both, so the help text, the validation and the
error messages cannot drift apart. Every failure is a :class:`ConfigError` (a ``ValueError``)
of one line that names the key, the value, the rule and the fix. Importing this package does
not import torch.

Example:
    >>> cfg = apply_overrides(Config(), ["method=moco", "train.batch_size=128"])
    >>> cfg.train.batch_size, cfg.method_section().queue_size
    (128, 65536)
    >>> cfg.train.epochs = 0
    Traceback (most recent call last):
    ...
    selfsup.config.errors.ConfigError: train.epochs must be >= 1, got 0; e.g. train.epochs=100
"""

from selfsup.config.base import ConfigModel, Section
from selfsup.config.colorization import ColorizationConfig
from selfsup.config.errors import ConfigError
from selfsup.config.methods import (
    METHOD_SECTIONS,
    METHODS,
    BYOLConfig,
    DINOConfig,
    MAEConfig,
    MethodName,
    MoCoConfig,
    MoCoV3Config,
    SimCLRConfig,
)
from selfsup.config.pretext import JigsawConfig, RotationConfig
from selfsup.config.root import (
    Config,
    apply_method_defaults,
    apply_overrides,
    config_changes,
    iter_fields,
    load_yaml,
    option_help,
    set_key,
    validate,
)
from selfsup.config.sections import (
    DATASET_NAMES,
    BackboneConfig,
    DataConfig,
    DatasetName,
    EvalConfig,
    OptimConfig,
    TrainConfig,
)
from selfsup.config.views import ViewsConfig, local_crop_size

__all__ = [
    "DATASET_NAMES",
    "METHODS",
    "METHOD_SECTIONS",
    "BYOLConfig",
    "BackboneConfig",
    "ColorizationConfig",
    "Config",
    "ConfigError",
    "ConfigModel",
    "DINOConfig",
    "DataConfig",
    "DatasetName",
    "EvalConfig",
    "JigsawConfig",
    "MAEConfig",
    "MethodName",
    "MoCoConfig",
    "MoCoV3Config",
    "OptimConfig",
    "RotationConfig",
    "Section",
    "SimCLRConfig",
    "TrainConfig",
    "ViewsConfig",
    "apply_method_defaults",
    "apply_overrides",
    "config_changes",
    "iter_fields",
    "load_yaml",
    "local_crop_size",
    "option_help",
    "set_key",
    "validate",
]
