"""Builds the display pyramid's wanted tiles on plain background threads into a
``TileCache`` (``TileLoader``); the window polls for finished ones. No Qt, no torch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import numpy as np

from stoneseg_core.display.grid import TileKey
from stoneseg_core.display.tile_cache import TileCache
from stoneseg_core.errors import StonesegError

log = logging.getLogger(__name__)


class TileLoader:
    """Builds wanted tiles on background threads into a ``TileCache``.

    ``want(keys)`` replaces the queue with ``keys`` (most wanted first) minus those cached
    or being built; ``take_ready()`` returns the keys built since the last call (the window
    polls it from its own thread: these threads never call Qt). A tile that fails is not
    retried; its message is kept in ``errors``.
    """

    def __init__(
        self,
        build: Callable[[TileKey, Callable[[], bool]], np.ndarray | None],
        cache: TileCache,
        workers: int = 2,
        paused: bool = False,
    ) -> None:
        self._build = build
        self._paused = paused
        self.cache = cache
        self._cond = threading.Condition()
        self._queue: list[TileKey] = []
        self._busy: set[TileKey] = set()
        self._ready: list[TileKey] = []
        self._failed: set[TileKey] = set()
        self.errors: list[str] = []
        self._closed = False
        self._on_exit: Callable[[], None] | None = None
        self._alive = max(1, workers)
        self._threads = [
            threading.Thread(target=self._run, name=f"stoneseg-tiles-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    @property
    def pending(self) -> bool:
        with self._cond:
            return bool(self._queue or self._busy or self._ready)

    def want(self, keys: Iterable[TileKey]) -> None:
        with self._cond:
            self._queue = [
                k
                for k in dict.fromkeys(keys)
                if k not in self._busy and k not in self._failed and k not in self.cache
            ]
            if self._queue:
                self._cond.notify_all()

    def resume(self) -> None:
        """Start building (a loader made ``paused`` waits for this)."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def take_ready(self) -> list[TileKey]:
        with self._cond:
            ready, self._ready = self._ready, []
        return ready

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is queued or being built (for scripts and tests)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (not self._queue or self._paused) and not self._busy, timeout
            )

    def _stopping(self) -> bool:
        return self._closed

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with self._cond:
                self._alive -= 1
                last, on_exit = self._alive == 0, self._on_exit
            if last and on_exit is not None:
                on_exit()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: (self._queue and not self._paused) or self._closed)
                if self._closed:
                    return
                key = self._queue.pop(0)
                self._busy.add(key)
            value, error = None, None
            try:
                value = self._build(key, self._stopping)
            except StonesegError as exc:
                error = str(exc)
            except Exception as exc:  # a bug or an unexpected decoder error: keep going
                log.exception("Building tile %s failed", key)
                error = f"A part of the photo could not be drawn: {exc}"
            with self._cond:
                self._busy.discard(key)
                if value is not None:
                    self.cache.put(key, value)
                    self._ready.append(key)
                elif error is not None:
                    self._failed.add(key)
                    if error not in self.errors:
                        self.errors.append(error)
                    self._ready.append(key)
                self._cond.notify_all()

    def close(
        self, wait: bool = True, timeout: float = 10.0, on_exit: Callable[[], None] | None = None
    ) -> None:
        """Stop: nothing more is started; a tile being built stops at its next band.
        ``wait=False`` returns at once (the window's thread never waits for a decoder);
        ``on_exit`` runs on the last thread to finish (at once if none is left)."""
        with self._cond:
            self._closed = True
            self._queue = []
            self._on_exit = on_exit
            nobody_left = self._alive == 0
            self._cond.notify_all()
        if nobody_left and on_exit is not None:
            on_exit()
        if wait:
            for t in self._threads:
                t.join(timeout)
