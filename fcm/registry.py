"""A small name → constructor registry with helpful errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fcm.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to constructors (or other objects) of one kind.

    ``kind`` names what is registered (``"model"``, ``"codec"``) so that an unknown name gives a message such as
    ``unknown codec 'x266'; known: ffv1, x264, x265``. The contract a registrant must meet is stated in the
    docstring of the module that owns the registry.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items)) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
