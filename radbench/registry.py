"""A small name -> object registry, shared by backbones, dataset adapters and protocols."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from radbench.errors import RadbenchError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def replace(self, name: str, obj: T) -> None:
        """Register `obj` under `name`, in place of an earlier one (a notebook cell run twice)."""
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise RadbenchError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; known: {known}") \
                from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
