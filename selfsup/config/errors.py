"""One-line configuration errors: pydantic's findings retold with the key, the value and the fix.

pydantic reports a failure as a multi-line dump of locations and error types. The CLI prints one
line and exits 2, so every :class:`pydantic.ValidationError` is turned into a
:class:`ConfigError` here, with the wording the rule's field declares (its range, its choices, or
an ``error`` template in ``json_schema_extra``).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and the fix."""


# error type -> what the value must be (the first word of the type, e.g. int_parsing -> int)
_TYPE_RULES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list such as [0.5, 0.5]",
}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown option {key!r}{hint} (`selfsup pretrain --help` lists every option)"


def section_message(key: str) -> str:
    return (
        f"{key} is a section, not an option; give its options, e.g. {key}.<option>=value or "
        f"a YAML mapping '{key}: {{<option>: value}}' (`selfsup pretrain --help` lists them)"
    )


def yaml_value(value: Any) -> str:
    """``value`` as one would type it in an override: null, true, [0.4, 1.0], 0.5, resnet18."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return str(value)


def default_of(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def optional(info: FieldInfo) -> bool:
    return type(None) in typing.get_args(info.annotation)


def choices(info: FieldInfo) -> tuple[Any, ...]:
    """The values of a ``Literal[...]`` field (``Literal[...] | None`` too); () for others."""
    for hint in (info.annotation, *typing.get_args(info.annotation)):
        if typing.get_origin(hint) is typing.Literal:
            return typing.get_args(hint)
    return ()


def rule(info: FieldInfo) -> str:
    """The declared range or choices in words: '> 0', 'in [0, 1)', 'lars|sgd|adamw'; '' if none."""
    if choices(info):
        text = "|".join(yaml_value(c) for c in choices(info))
    else:
        low = high = ""
        for m in info.metadata:
            if isinstance(m, annotated_types.Gt):
                low = f"({m.gt}"
            elif isinstance(m, annotated_types.Ge):
                low = f"[{m.ge}"
            elif isinstance(m, annotated_types.Lt):
                high = f"{m.lt})"
            elif isinstance(m, annotated_types.Le):
                high = f"{m.le}]"
        if low and high:
            text = f"in {low}, {high}"
        elif low:
            text = (">= " if low[0] == "[" else "> ") + low[1:]
        elif high:
            text = ("<= " if high[-1] == "]" else "< ") + high[:-1]
        else:
            return ""
    return f"{text} or null" if optional(info) else text


def _walk(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[list[str], FieldInfo | None]:
    """The field names along ``loc`` (list indices dropped) and the innermost field's info."""
    names: list[str] = []
    info: FieldInfo | None = None
    cls: Any = model
    for part in loc:
        fields = cls.model_fields if isinstance(cls, type) and issubclass(cls, BaseModel) else {}
        if not isinstance(part, str) or part not in fields:
            break
        info = fields[part]
        names.append(part)
        cls = info.annotation
    return names, info


def _given(data: Any, names: Sequence[str], fallback: Any) -> Any:
    """What the user wrote for the key (a whole list, not the one bad item pydantic names)."""
    for name in names:
        if not isinstance(data, Mapping) or name not in data:
            return fallback
        data = data[name]
    return data


def _first_leaf(key: str, value: Any) -> str:
    while isinstance(value, Mapping) and value:
        name, value = next(iter(value.items()))
        key = f"{key}.{name}"
    return key


def explain(
    err: ValidationError,
    model: type[BaseModel],
    given: Mapping[str, Any] | None,
    known_keys: Iterable[str],
    prefix: str = "",
) -> ConfigError:
    """The first problem of ``err`` as a ConfigError; unknown keys go first (a typo explains more).

    ``model`` is the class that validated ``given`` (the user's mapping, for the values they
    wrote); ``prefix`` is the dotted section of ``model`` (``"train."``), empty for the root.
    """
    details = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    return ConfigError(_message(details[0], model, given, known_keys, prefix))


def _message(
    e: ErrorDetails,
    model: type[BaseModel],
    given: Mapping[str, Any] | None,
    known_keys: Iterable[str],
    prefix: str,
) -> str:
    kind, loc = e["type"], e["loc"]
    if kind in ("extra_forbidden", "no_such_attribute"):
        dotted = prefix + ".".join(str(p) for p in loc)
        return unknown_key_message(_first_leaf(dotted, e["input"]), known_keys)
    names, info = _walk(model, loc)
    key = prefix + ".".join(names)
    if info is None:  # not about one option (should not happen): pydantic's own words
        return f"{key or 'config'}: {e['msg']}"
    section = info.annotation
    if isinstance(section, type) and issubclass(section, BaseModel):
        return section_message(key)
    value = _given(given, names, e["input"])
    if isinstance(value, Mapping):  # 'method: {foo: 1}' or 'method.foo=1'
        return unknown_key_message(_first_leaf(key, value), known_keys)
    default = yaml_value(default_of(info))
    head = kind.split("_")[0]
    if head in _TYPE_RULES and (kind.endswith(("_type", "_parsing")) or kind == "int_from_float"):
        want = _TYPE_RULES[head]
        if len(loc) > len(names) and head != "list":  # one item of a list field
            want = f"a list of {'integers' if head == 'int' else 'numbers'}"
        example = f"e.g. {key}={default}" if default != "null" else ""
        if value is None:
            return f"{key} cannot be null; give {want}" + (f", {example}" if example else "")
        return f"{key} must be {want}, got {value!r}" + (f"; {example}" if example else "")
    extra = info.json_schema_extra
    template = extra.get("error") if isinstance(extra, dict) else None
    if isinstance(template, str):
        return template.format(key=key, value=repr(value), rule=rule(info))
    if kind == "literal_error":
        null = " or null" if optional(info) else ""
        options = "|".join(yaml_value(c) for c in choices(info))
        return f"{key}={value!r} is unknown; choose one of {options}{null}"
    if kind in _RANGE_ERRORS and rule(info):
        return f"{key} must be {rule(info)}, got {value!r}; e.g. {key}={default}"
    return f"{key}={value!r} is refused ({e['msg']}); `selfsup pretrain --help` gives the rule"
