"""Named classes a config or checkpoint may choose from, and the plain arguments they may pass.

A config's `model` / `feeder` key and a checkpoint's saved config are data: they select one of
the classes that code registered explicitly (the project's own, or a user's module imported by
the user's launcher script), and are never imported by name, since importing or calling an
arbitrary dotted name from a file runs code of the file's choosing.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from utils.config import check_kwargs
from utils.errors import ConfigError

T = TypeVar("T", bound=type)

PLAIN_TYPES = (bool, int, float, str, type(None))


class Registry:
    """Classes by name; `register` is the only way in."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key  # 'model', and the config key that names one
        self._classes: dict[str, type] = {}

    def register(self, cls: T | None = None, *, name: str | None = None) -> Any:
        """Decorator: add `cls` under `name` (default `module.QualifiedName`, as configs spell it)."""
        def add(cls: T) -> T:
            key = name or f"{cls.__module__}.{cls.__qualname__}"
            known = self._classes.get(key)
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} name {key!r} is already registered for {known!r}")
            self._classes[key] = cls
            return cls
        return add if cls is None else add(cls)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: Any, source: str = "") -> type:
        """The class registered as `name`; a ConfigError naming the key and the choices otherwise."""
        if isinstance(name, str) and name in self._classes:
            return self._classes[name]
        where = f"{source}: " if source else ""
        raise ConfigError(
            f"{where}key '{self.key}' is {name!r}, not a registered {self.kind} (registered: "
            f"{', '.join(self.names())}). A {self.kind} is never imported by name from a config or "
            f"checkpoint; register your class with @{self._decorator_name()} in your module and "
            f"import that module from your own launcher script before calling main.cli()")

    def _decorator_name(self) -> str:
        return {"model": "slr_network.register_model",
                "feeder": "training.data.register_feeder"}.get(self.kind, "register")

    def __contains__(self, name: object) -> bool:
        return name in self._classes


def is_plain(value: Any) -> bool:
    """bool / int / float / str / None, or a list or tuple of plain values."""
    if isinstance(value, (list, tuple)):
        return all(is_plain(item) for item in value)
    return isinstance(value, PLAIN_TYPES)


def check_plain_args(fn: Callable, kwargs: Mapping[str, Any], section: str) -> None:
    """Every key names one of `fn`'s explicit parameters (no **kwargs pass-through) and every
    value is plain and fits the parameter's type."""
    for key, value in kwargs.items():
        if not is_plain(value):
            raise ConfigError(f"key '{section}.{key}' must be a plain value (bool, int, float, "
                              f"string, null or a list of them), got {type(value).__name__}")
    check_kwargs(fn, kwargs, section, extra_keys=False)
