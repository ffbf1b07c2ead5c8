"""The undo history of a mask: per step only the changed box, its old and new pixels packed to
one bit each, band by band (a full copy of a big mask is never made for a brush stroke), in
a history bounded in steps and bytes. No Qt, no torch."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from stoneseg_core.editing.bands import row_bands
from stoneseg_core.editing.region import Region
from stoneseg_core.io.images import STONE

Packed = tuple  # of np.ndarray: a block's rows, 1 bit a pixel, one array per band (row_bands)


def pack(block: np.ndarray) -> Packed:
    """1 bit a pixel, row after row, a band of rows to an array: a big block is packed
    without a full-size copy, and never joined into one (joining the bands of a 20000 x
    20000 mask cost 0.15 s a time, mostly the kernel finding a fresh 50 MB)."""
    h, w = block.shape
    return tuple(np.packbits(block[r0:r1], axis=None) for r0, r1 in row_bands(h, w))


def unpack_into(bits: Packed, region: Region, mask: np.ndarray) -> None:
    """Write ``pack``ed ``bits`` of ``region`` back into ``mask``, band by band: no
    full-size temporary either (a fresh 400 MB one held the window's thread ~1 s the first
    time a 20000 x 20000 whole-mask step was undone)."""
    w = region.width
    for (r0, r1), band in zip(row_bands(region.height, w), bits):
        rows = np.unpackbits(band, count=(r1 - r0) * w)
        np.multiply(rows, np.uint8(STONE), out=rows)  # 0/1 -> 0/255 in place
        mask[region.top + r0 : region.top + r1, region.left : region.right] = rows.reshape(
            r1 - r0, w
        )


@dataclass
class UndoStep:
    """One step: the box it changed, its pixels before and after (packed), its label and the
    document's state ids before and after it."""

    region: Region
    old_bits: Packed
    new_bits: Packed
    label: str
    state_before: int
    state_after: int

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.old_bits + self.new_bits)


class UndoHistory:
    """Steps to undo and to redo. A new step clears the redo steps; past ``max_steps`` steps
    or ``max_bytes`` bytes to undo, the oldest are dropped (never the last one)."""

    def __init__(self, max_steps: int, max_bytes: int) -> None:
        self.max_steps = max(1, int(max_steps))
        self.max_bytes = int(max_bytes)
        self._undo: deque[UndoStep] = deque()
        self._redo: list[UndoStep] = []
        self._undo_bytes = 0

    def push(self, step: UndoStep) -> None:
        self._redo.clear()
        self._undo.append(step)
        self._undo_bytes += step.nbytes
        while len(self._undo) > 1 and (
            len(self._undo) > self.max_steps or self._undo_bytes > self.max_bytes
        ):
            dropped = self._undo.popleft()
            self._undo_bytes -= dropped.nbytes

    def take_undo(self) -> UndoStep | None:
        """The last step, now one to redo; None when there is nothing to undo."""
        if not self._undo:
            return None
        step = self._undo.pop()
        self._undo_bytes -= step.nbytes
        self._redo.append(step)
        return step

    def take_redo(self) -> UndoStep | None:
        """The last undone step, now one to undo again; None when there is nothing to redo."""
        if not self._redo:
            return None
        step = self._redo.pop()
        self._undo.append(step)
        self._undo_bytes += step.nbytes
        return step

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_label(self) -> str:
        return self._undo[-1].label if self._undo else ""

    @property
    def redo_label(self) -> str:
        return self._redo[-1].label if self._redo else ""

    @property
    def undo_steps(self) -> int:
        return len(self._undo)

    @property
    def nbytes(self) -> int:
        """Memory held by the undo and redo steps."""
        return self._undo_bytes + sum(s.nbytes for s in self._redo)
