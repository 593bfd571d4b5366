"""One registry type for every kind of thing a user may add: methods, models, datasets, baselines,
similarity metrics, randomization modes, figures.

A :class:`Registry` maps names to entries in registration order, refuses a name registered twice,
and answers an unknown name with an error that lists the registered ones (and the config key the
name came from, where there is one). It is a read-only mapping, so ``name in REGISTRY``,
``REGISTRY[name]`` and iteration work as on a dict.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that is not in its registry (a bad config value too); the message lists the registered names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Mapping[str, T], Generic[T]):
    """Named entries of one kind, in registration order."""

    def __init__(self, kind: str, error: type[UnknownNameError] = UnknownNameError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a second entry of the same name is an error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        """Unregister ``name`` (a test's toy entry, say) and return its entry."""
        return self._entries.pop(name)

    @contextmanager
    def added(self, name: str, entry: T) -> Iterator[T]:
        """``entry`` registered as ``name`` within the block only (a test's toy entry)."""
        self.add(name, entry)
        try:
            yield entry
        finally:
            self._entries.pop(name, None)

    @contextmanager
    def isolated(self, keep: tuple[str, ...] = ()) -> Iterator[Registry[T]]:
        """Within the block the registry holds only the entries named in ``keep`` (and what is
        registered inside); on exit it is as before. For tests and benchmarks that need a chosen set."""
        saved = self._entries
        self._entries = {name: saved[name] for name in keep}
        try:
            yield self
        finally:
            self._entries = saved

    def get_entry(self, name: str, config_key: str | None = None) -> T:
        """The entry of ``name``, or an error naming the config key and the registered names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            where = f" (config key {config_key})" if config_key else ""
            raise self.error(
                f"unknown {self.kind} {name!r}{where}; registered: {', '.join(self._entries) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get_entry(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
