"""Frozen value objects for the ``motte run`` path, without :mod:`dataclasses`.

Importing dataclasses pulls in inspect, ast, dis and tokenize (~12 ms here), and each
dataclass is built with ``exec`` (~1 ms each): together a tenth of ``motte run``'s start-up
for a small workload (docs/performance.md). A :class:`Record` subclass lists its fields in
``__slots__``, writes a plain ``__init__`` that calls :meth:`Record._set`, and gets
immutability, equality, hashing, ``repr`` and :meth:`replace` from here.
"""

from __future__ import annotations

from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    __slots__ = ()
    #: Fields that take no part in equality, hashing or repr (e.g. where a value came from).
    _uncompared: frozenset[str] = frozenset()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def _fields(cls) -> tuple[str, ...]:
        return tuple(f for c in reversed(cls.__mro__) for f in getattr(c, "__slots__", ()))

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields() if f not in self._uncompared)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f}={getattr(self, f)!r}" for f in self._fields() if f not in self._uncompared
        )
        return f"{type(self).__name__}({shown})"

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` applied (through ``__init__``, so it validates again)."""
        values = {f: getattr(self, f) for f in self._fields()}
        values.update(changes)
        return type(self)(**values)
