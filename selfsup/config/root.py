"""The run configuration: every section together, YAML in/out, ``key=value`` overrides, ``--help``.

A run directory's ``config.yaml`` is ``Config.to_yaml()``, and ``Config.from_yaml`` reads it back
(older files too: renamed keys are converted with a warning). Field rules are checked whenever a
value is set; ``Config.validate()`` adds the checks that combine sections.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from selfsup.config.base import ConfigModel, Section, all_keys
from selfsup.config.colorization import ColorizationConfig
from selfsup.config.errors import ConfigError, explain, rule, section_message, unknown_key_message
from selfsup.config.methods import (
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
from selfsup.config.sections import (
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    TrainConfig,
)
from selfsup.config.siamese import BarlowConfig, SimSiamConfig, SwAVConfig, VICRegConfig
from selfsup.config.views import ViewsConfig

# renamed: the warm-up was a fraction of the run, it is now in epochs (as in the official code)
OLD_WARMUP_KEY = "dino.teacher_temperature_warmup"
WARMUP_KEY = "dino.warmup_teacher_temperature_epochs"
# moved: multi-crop is a view recipe every two-view method takes, no longer DINO's own
MOVED_TO_VIEWS = {
    "dino.num_local_crops": "views.local_crops",
    "dino.local_size": "views.local_size",
    "dino.local_crop_scale": "views.local_crop_scale",
}


class Config(ConfigModel):
    """Everything a run needs; ``to_yaml`` / ``from_yaml`` round-trip it exactly."""

    method: MethodName = Field(
        "simclr", description=f"self-supervised method: {', '.join(METHODS)}"
    )
    run_dir: str | None = Field(
        None, description="output folder; default runs/<method>-<dataset>-<time>"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    simclr: SimCLRConfig = Field(default_factory=SimCLRConfig)
    moco: MoCoConfig = Field(default_factory=MoCoConfig)
    mocov3: MoCoV3Config = Field(default_factory=MoCoV3Config)
    byol: BYOLConfig = Field(default_factory=BYOLConfig)
    mae: MAEConfig = Field(default_factory=MAEConfig)
    dino: DINOConfig = Field(default_factory=DINOConfig)
    simsiam: SimSiamConfig = Field(default_factory=SimSiamConfig)
    barlow: BarlowConfig = Field(default_factory=BarlowConfig)
    vicreg: VICRegConfig = Field(default_factory=VICRegConfig)
    swav: SwAVConfig = Field(default_factory=SwAVConfig)
    rotation: RotationConfig = Field(default_factory=RotationConfig)
    jigsaw: JigsawConfig = Field(default_factory=JigsawConfig)
    colorization: ColorizationConfig = Field(default_factory=ColorizationConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Nested sections (``{'train': {'epochs': 3}}``) or dotted keys; unknown keys refused."""
        nested = _nest(_migrate(dict(_flatten(data))))
        try:
            return cls.model_validate(nested)
        except ValidationError as err:
            raise explain(err, cls, nested, all_keys()) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        return cls.from_dict(load_yaml(path))

    # -- checks -----------------------------------------------------------------------------
    def method_section(self) -> Section:
        """The options of the active method (``cfg.dino`` when ``cfg.method == 'dino'``)."""
        section: Section = getattr(self, self.method)
        return section

    def validate(self) -> Config:  # type: ignore[override]  # pydantic v1's deprecated classmethod
        """Reject impossible settings before any training starts; returns self.

        Every field is checked again (a list changed in place skips the assignment check), then
        the combinations: data, the active method's own checks, the other sections.
        """
        Config.from_dict(self.to_dict())
        first = (self.data, self.method_section(), self.backbone)
        others = (self.views, self.optim, self.train, self.eval)
        for section in (*first, *others):
            section.check(self)
        return self


def validate(cfg: Config) -> None:
    """Check values and their combinations; each message names the option and the fix."""
    cfg.validate()


# -- YAML files ---------------------------------------------------------------------------------
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


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def config_changes(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` of every option that differs between two config
    dicts (``Config.to_dict()``, or a checkpoint's ``config`` entry), in key order."""
    old, new = dict(_flatten(before)), dict(_flatten(after))
    return [
        (key, old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{'train.epochs': 3}`` -> ``{'train': {'epochs': 3}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *path, name = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{part} is given both a value and options; give it once")
        if isinstance(node.get(name), dict):
            raise ConfigError(f"{key} is given both a value and options; give it once")
        node[name] = value
    return out


def _migrate(flat: dict[str, Any]) -> dict[str, Any]:
    """Convert renamed keys of older run directories' ``config.yaml`` (with a warning)."""
    if OLD_WARMUP_KEY in flat:
        if WARMUP_KEY in flat:
            raise ConfigError(
                f"{OLD_WARMUP_KEY} and {WARMUP_KEY} are both given; keep only {WARMUP_KEY} "
                "(the warm-up in epochs)"
            )
        epochs = flat.get("train.epochs", TrainConfig.model_fields["epochs"].default)
        flat[WARMUP_KEY] = _warmup_epochs(flat.pop(OLD_WARMUP_KEY), epochs)
    # A run directory written before multi-crop moved to views.*: DINO's values move with it;
    # every other method's copy of DINO's defaults never applied and is dropped.
    moved = {new: flat.pop(old) for old, new in MOVED_TO_VIEWS.items() if old in flat}
    if flat.get("method") == "dino":
        for new, value in moved.items():
            if flat.get(new) is None:
                flat[new] = value
    return flat


def _warmup_epochs(fraction: Any, epochs: Any) -> float:
    try:
        value = float(fraction) * float(epochs)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{OLD_WARMUP_KEY}={fraction!r} (a fraction of the run) is replaced by {WARMUP_KEY}; "
            f"give {WARMUP_KEY}=<epochs of the warm-up> instead (30 in the official recipe)"
        ) from None
    warnings.warn(
        f"{OLD_WARMUP_KEY}={fraction} (a fraction of the run) is read as {WARMUP_KEY}={value:g} "
        f"({fraction} x train.epochs={epochs}); write the new key to silence this warning",
        stacklevel=4,
    )
    return value


# -- key=value overrides ------------------------------------------------------------------------
def _is_section(info: FieldInfo) -> bool:
    return isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Set a dotted key (``train.batch_size``) with validation; unknown keys are refused."""
    if key == OLD_WARMUP_KEY:
        key, value = WARMUP_KEY, _warmup_epochs(value, cfg.train.epochs)
    if key in MOVED_TO_VIEWS:
        raise ConfigError(f"{key} is now {MOVED_TO_VIEWS[key]} (multi-crop for every method)")
    *path, name = key.split(".")
    target: ConfigModel = cfg
    if path:
        info = Config.model_fields.get(path[0])
        if len(path) > 1 or info is None or not _is_section(info):
            raise ConfigError(unknown_key_message(key, all_keys()))
        target = getattr(cfg, path[0])
    info = type(target).model_fields.get(name)
    if info is None:
        raise ConfigError(unknown_key_message(key, all_keys()))
    if _is_section(info):
        raise ConfigError(section_message(key))
    setattr(target, name, value)  # validated; a ConfigError names the key and the rule


def apply_method_defaults(cfg: Config, given: Sequence[str] = ()) -> list[str]:
    """Set the options the active method's paper needs (its section's ``standalone``) except
    the dotted keys in ``given`` (what the user set); returns them as ``key=value`` strings.
    For ``method=<name>`` without a config file: the built-in defaults are SimCLR's."""
    applied = []
    for key, value in cfg.method_section().standalone.items():
        if key in given:
            continue
        resolved = value(cfg) if callable(value) else value
        set_key(cfg, key, resolved)
        applied.append(f"{key}={resolved}")
    return applied


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


# -- help -----------------------------------------------------------------------------------------
def iter_fields(
    obj: ConfigModel | None = None, prefix: str = ""
) -> Iterator[tuple[str, FieldInfo, Any]]:
    """Yield (dotted key, pydantic field, current value) for every leaf option of a config."""
    obj = Config() if obj is None else obj
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name)
        if isinstance(value, ConfigModel):
            yield from iter_fields(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info, value


def option_help() -> str:
    """Every option with its default, its rule and its description, by section (``--help``)."""
    lines: list[str] = []
    section = None
    for key, info, value in iter_fields():
        head = key.split(".")[0] if "." in key else ""
        if head != section:
            section = head
            lines.append(f"\n[{head or 'top level'}]")
        limits = f"  ({rule(info)})" if rule(info) else ""
        lines.append(f"  {key}={value!r}{limits}\n      {info.description}")
    return "\n".join(lines)
