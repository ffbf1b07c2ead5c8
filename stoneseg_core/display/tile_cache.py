"""The display pyramid's tile cache: least-recently-used arrays bounded in bytes, safe across
threads. No Qt, no torch."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np


class TileCache:
    """Least-recently-used arrays, at most ``max_bytes`` in all; safe across threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def peek(self, key: Hashable) -> np.ndarray | None:
        """The value without making it recently used."""
        return self._items.get(key)

    def put(self, key: Hashable, value: np.ndarray) -> None:
        size = int(value.nbytes)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= int(old.nbytes)
            if size > self.max_bytes:
                return  # larger than the whole cache: not kept
            self._items[key] = value
            self._nbytes += size
            while self._nbytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._nbytes -= int(dropped.nbytes)
                self.evictions += 1

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= int(old.nbytes)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0
