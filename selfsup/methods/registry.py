"""The method registry: a method registers its name, config section and default views where it
is defined, and everything else (build, CLI, bench, trainer, viz) asks the registry.

Adding a method is one method file (the class, decorated with :func:`register_method`, with a
``from_config`` classmethod), its config section in :mod:`selfsup.config` and its tests: no
if/elif chain anywhere names the methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from selfsup.config import Config
    from selfsup.methods.base import Method
    from selfsup.views import ViewSpec

__all__ = ["MethodEntry", "MultiCrop", "get_method", "method_names", "register_method"]

ViewsFn = Callable[["Config"], "list[ViewSpec]"]
LocalViewFn = Callable[["Config", int, "tuple[float, float]"], "ViewSpec"]
M = TypeVar("M", bound="type[Method]")


@dataclass(frozen=True)
class MultiCrop:
    """A method that takes local crops (``views.local_crops``) after its global views.

    Attributes:
        count: local crops when ``views.local_crops`` is null (DINO 8, SwAV 6; 0 = off by
            default but available).
        scale: area range of the local crops when ``views.local_crop_scale`` is null.
        local_view: ``(cfg, size, scale) -> ViewSpec`` of one local crop; None = the first
            global view at the local size and scale.
    """

    count: int = 0
    scale: tuple[float, float] = (0.05, 0.4)
    local_view: LocalViewFn | None = None

    def view(self, cfg: Config, first_global: ViewSpec, size: int) -> ViewSpec:
        """One local crop's recipe at ``size`` px with the configured (or default) scale."""
        given = cfg.views.local_crop_scale
        scale = (given[0], given[1]) if given is not None else self.scale
        if self.local_view is not None:
            return self.local_view(cfg, size, scale)
        return dataclasses.replace(first_global, size=size, crop_scale=scale)


@dataclass(frozen=True)
class MethodEntry:
    """What the registry knows of a method.

    Attributes:
        name: the ``method=`` value and the name of its config section (``cfg.<name>``).
        cls: the :class:`~selfsup.methods.base.Method` subclass; its ``from_config(cfg,
            backbone, view_recipe)`` builds it.
        views: the method's own view recipe for a config (REFERENCE.md), before the user's
            ``views.*`` overrides: its global views (local crops come from ``multicrop``).
        multicrop: how the method takes local crops; None = it cannot (MAE, pretext tasks).
    """

    name: str
    cls: type[Method]
    views: ViewsFn
    multicrop: MultiCrop | None = None

    def section(self, cfg: Config) -> Any:
        """This method's config section of ``cfg`` (e.g. ``cfg.byol``)."""
        return getattr(cfg, self.name)


_REGISTRY: dict[str, MethodEntry] = {}


def register_method(
    name: str, *, views: ViewsFn, multicrop: MultiCrop | None = None
) -> Callable[[M], M]:
    """Class decorator: register a method under ``name`` with its default (global) views and,
    for a method that takes local crops, its :class:`MultiCrop` defaults.

    Example:
        >>> from selfsup.methods.base import Method
        >>> @register_method("toy", views=lambda cfg: [])
        ... class Toy(Method):
        ...     pass
        >>> get_method("toy").cls is Toy
        True
        >>> _ = _REGISTRY.pop("toy")  # keep the registry to the real methods
    """

    def decorate(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(
                f"method {name!r} is already registered by {_REGISTRY[name].cls.__name__}; "
                "choose another name"
            )
        cls.name = name
        _REGISTRY[name] = MethodEntry(name, cls, views, multicrop)
        return cls

    return decorate


def _load_builtin_methods() -> None:
    import selfsup.methods  # noqa: F401  (importing the package registers every method)


def get_method(name: str) -> MethodEntry:
    """The registered method ``name``; a clear error naming the known ones otherwise."""
    _load_builtin_methods()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(method_names())}")
    return _REGISTRY[name]


def method_names() -> list[str]:
    """Every registered method name, in registration order."""
    _load_builtin_methods()
    return list(_REGISTRY)
