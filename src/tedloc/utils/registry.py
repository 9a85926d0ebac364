"""A name -> factory registry with a decorator and an error that lists the choices."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from tedloc.errors import TedlocError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """``@registry.register("name")`` records a factory; ``registry.get("name")`` finds it."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator recording its argument under ``name`` (ValueError if the name is taken)."""
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        """The item registered as ``name`` (TedlocError listing the names if unknown)."""
        try:
            return self._items[name]
        except KeyError:
            raise TedlocError(f"unknown {self.what} {name!r}; available: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def values(self) -> list[T]:
        """The registered items, by name."""
        return [self._items[name] for name in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._items
