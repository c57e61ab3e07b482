"""What every config section is made of: the value types and the validated base class.

A field declares its rule where it is defined, ``Field(gt=0, description=...)`` or
``Literal[...]``; the same declaration validates YAML files, ``key=value`` overrides and plain
Python assignments (``cfg.train.epochs = 0`` fails at once), and feeds ``--help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError, PydanticKnownError
from pydantic_core.core_schema import ErrorType

from selfsup.config.errors import ConfigError, explain, unknown_key_message

if TYPE_CHECKING:
    from selfsup.config.root import Config


def _no_bool_for(kind: ErrorType) -> BeforeValidator:
    def check(value: Any) -> Any:
        # YAML's true is a bool and Python's bool is an int: train.epochs=true is a mistake
        if isinstance(value, bool):
            raise PydanticKnownError(kind)
        return value

    return BeforeValidator(check)


def _one_for_every_view(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    return value


# pydantic's lax mode reads '1e-3' strings (YAML 1.1) and ints as floats; bools stay out
Int = Annotated[int, _no_bool_for("int_type")]
Float = Annotated[float, _no_bool_for("float_type")]
Bool = StrictBool  # true or false only: 1 and 'yes' are refused


def _bool_not_int(value: Any) -> Any:
    # Literal[True] also matches 1 (1 == True): only YAML's true and false are booleans here
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError("literal_error", "not a boolean")
    return value


# true, false or auto (a choice the program makes when it has the facts); 1 and 'yes' are refused
BoolOrAuto = Annotated[Literal[True, False, "auto"], BeforeValidator(_bool_not_int)]
Probability = Annotated[Float, Field(ge=0, le=1)]
# one probability per view; a single number applies to every view
PerView = Annotated[list[Probability], BeforeValidator(_one_for_every_view)]


def _min_max(lo_hi: list[float]) -> list[float]:
    if lo_hi[0] > lo_hi[1]:
        raise PydanticCustomError("crop_order", "min must not exceed max")
    return lo_hi


# [min, max] area fractions of a crop with 0 < min <= max <= 1
CropScale = Annotated[
    list[Annotated[Float, Field(gt=0, le=1)]],
    Field(min_length=2, max_length=2),
    AfterValidator(_min_max),
]


def says(template: str) -> JsonDict:
    """``json_schema_extra`` for a field whose rule has its own words: the message template, with
    ``{key}``, ``{value}`` and ``{rule}`` filled in (errors.explain); e.g. MAE's mask ratio."""
    return {"error": template}


CROP_SCALE: JsonDict = {"error": "{key} must be [min, max] with 0 < min <= max <= 1, got {value}"}


def all_keys() -> list[str]:
    from selfsup.config.root import iter_fields

    return [key for key, _, _ in iter_fields()]


class ConfigModel(BaseModel):
    """Unknown keys are refused and every assignment is validated; failures are ConfigErrors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    section: ClassVar[str] = ""  # the dotted name of this section in Config ('' for the root)

    def __setattr__(self, name: str, value: Any) -> None:
        prefix = f"{self.section}." if self.section else ""
        if not name.startswith("_") and name not in type(self).model_fields:
            raise ConfigError(unknown_key_message(prefix + name, all_keys()))
        try:
            super().__setattr__(name, value)
        except ValidationError as err:
            raise explain(err, type(self), {name: value}, all_keys(), prefix) from None


class Section(ConfigModel):
    """A group of options (``train``, ``dino``, ...); ``check`` holds its cross-field rules.

    A method's section names in ``standalone`` the options of *other* sections its paper sets
    differently from the defaults (its optimiser, a ViT backbone): ``method=<name>`` without a
    config file starts from them. A value may be a function of the config (e.g. a size that
    follows ``views.size``).
    """

    standalone: ClassVar[dict[str, Any]] = {}

    def check(self, cfg: Config) -> None:
        """Raise a ConfigError for a combination with other options that cannot run."""
