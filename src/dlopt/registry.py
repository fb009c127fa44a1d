"""A tiny name -> factory registry shared by datasets, models, optimizers, schedules, ...

Each room keeps one :class:`Registry`; adding a new entry is one decorator in one place.
An unknown name raises an error that lists the valid names.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from dlopt.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered item: its name, factory and a small info record."""

    name: str
    factory: Callable[..., T]
    info: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, inspect.Parameter]:
        """Keyword parameters the factory accepts (introspected from its signature)."""
        sig = inspect.signature(self.factory)
        return {
            n: p
            for n, p in sig.parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


class Registry(Generic[T]):
    """Named factories of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str, error: type[Exception] = ConfigError) -> None:
        self.kind = kind
        self._error = error
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str | None = None, **info: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register ``factory`` under ``name`` (default: its ``__name__``)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = Entry(key, factory, dict(info))
            return factory

        return deco

    def get(self, name: str) -> Entry[T]:
        """The entry called ``name``; an unknown name lists the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise self._error(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Call the factory registered as ``name`` with ``kwargs``."""
        return self.get(name).factory(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())
