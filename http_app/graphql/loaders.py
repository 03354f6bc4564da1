"""Per-request batched loading: one SQL query per field level, never one per row.

A list resolver announces the keys its children will ask for (`expect`); the first child that asks
loads every expected key in one query and later siblings read the result from memory. This batches
whether the engine resolves list items one by one (our tuning) or concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchLoader(Generic[K, V]):
    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], missing: Callable[[], V]) -> None:
        self._fetch = fetch
        self._missing = missing
        self._done: dict[K, V] = {}
        self._pending: dict[K, None] = {}  # insertion-ordered set
        self._lock = asyncio.Lock()
        self.batches = 0  # how many queries ran: tests check the "no N+1" promise with it
        self._batch_values: list[list[V]] = []

    def expect(self, keys: Iterable[K]) -> None:
        done = self._done
        for key in keys:
            if key not in done:
                self._pending[key] = None

    async def load(self, key: K) -> V:
        try:
            return self._done[key]
        except KeyError:
            pass
        self._pending[key] = None
        async with self._lock:
            if key not in self._done:
                keys = list(self._pending)
                self._pending.clear()
                self.batches += 1
                found = await self._fetch(keys)
                values = []
                for k in keys:
                    value = self._done[k] = found[k] if k in found else self._missing()
                    if value is not None:
                        values.append(value)
                self._batch_values.append(values)
        return self._done[key]

    def loaded_since(self, batches: int) -> list[V]:
        """Values fetched by the batches after the first `batches` ones."""
        return [v for batch in self._batch_values[batches:] for v in batch]


class Loaders:
    """The loaders of one request, created on first use and keyed by name (plus argument values).

    `note(kind, keys)` records keys of one kind (e.g. every validator a list returned); loaders of that
    kind expect them, so the first child lookup fetches all siblings at once.
    """

    def __init__(self) -> None:
        self._loaders: dict[Hashable, BatchLoader[Any, Any]] = {}
        self._kinds: dict[str, list[BatchLoader[Any, Any]]] = {}
        self._noted: dict[str, list[Any]] = {}

    def note(self, kind: str, keys: Iterable[Any]) -> None:
        keys = list(keys)
        self._noted.setdefault(kind, []).extend(keys)
        for loader in self._kinds.get(kind, ()):
            loader.expect(keys)

    def get(
        self,
        name: Hashable,
        kind: str,
        fetch: Callable[[list[Any]], Awaitable[dict[Any, Any]]],
        missing: Callable[[], Any],
    ) -> BatchLoader[Any, Any]:
        loader = self._loaders.get(name)
        if loader is None:
            loader = self._loaders[name] = BatchLoader(fetch, missing)
            loader.expect(self._noted.get(kind, ()))
            self._kinds.setdefault(kind, []).append(loader)
        return loader

    def total_batches(self) -> int:
        return sum(loader.batches for loader in self._loaders.values())
