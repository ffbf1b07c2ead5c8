"""``MaskSnapshot``: a document's mask copied on another thread while it is being edited
(copy on write, a band of rows at a time). No Qt, no torch."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np


class MaskSnapshot:
    """A document's mask at one state (``state``), copied by ``copy()`` on any thread while
    the document goes on changing on its own: the rows are copied a band at a time, and a
    band that the document is about to change before it has been copied is first kept as
    it was (copy on write; ``MaskDocument`` calls ``before_write``). So the thread that
    edits never pays for the copy of a big mask (400 MB for 20000 x 20000), only for the
    bands it touches meanwhile."""

    BAND_ROWS = 256

    def __init__(self, live: np.ndarray, state: int, owner: list) -> None:
        self.state = state
        self.shape = live.shape
        self._live = live
        self._owner = owner  # the document's list of snapshots (left when done)
        self._lock = threading.Lock()
        bands = -(-live.shape[0] // self.BAND_ROWS)
        self._copied = np.zeros(bands, bool)
        self._kept: dict[int, np.ndarray] = {}
        self._done = False

    def before_write(self, top: int, bottom: int) -> None:
        """The document is about to change rows ``top:bottom``: keep the bands not yet
        copied as they are."""
        if self._done or bottom <= top:
            return
        b = self.BAND_ROWS
        with self._lock:
            for k in range(top // b, (bottom - 1) // b + 1):
                if not self._copied[k] and k not in self._kept:
                    self._kept[k] = self._live[k * b : (k + 1) * b].copy()

    def copy(self, should_stop: Callable[[], bool] | None = None) -> np.ndarray | None:
        """The mask at ``state``, as a new array (None when ``should_stop`` said stop)."""
        out = np.empty(self.shape, np.uint8)
        b = self.BAND_ROWS
        try:
            for k in range(len(self._copied)):
                if should_stop is not None and should_stop():
                    return None
                rows = slice(k * b, (k + 1) * b)
                with self._lock:
                    kept = self._kept.pop(k, None)
                    out[rows] = self._live[rows] if kept is None else kept
                    self._copied[k] = True
        finally:
            self.release()
        return out

    def release(self) -> None:
        """Stop watching the document (done, or not wanted any more)."""
        with self._lock:
            self._done = True
            self._kept.clear()
        try:
            self._owner.remove(self)
        except ValueError:
            pass
