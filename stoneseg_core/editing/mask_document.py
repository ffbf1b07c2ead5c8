"""Editing a binary stone mask: brush, eraser, fills, polygons, with undo and redo.

``MaskDocument`` owns one ``uint8`` mask (0 = background, 255 = stone) and changes it in
place, so a view can share the array and repaint only what changed. Every change reports
the ``Region`` it touched. Undo keeps, per step, only the changed bounding box (old and new
pixels packed to one bit each) in a bounded deque: a full copy of a 6000x4000 mask is never
made for a brush stroke. One mouse drag is one undo step (``begin_stroke``/``end_stroke``).

Coordinates are continuous image coordinates: x to the right, y down; the pixel in row
``r`` and column ``c`` covers ``[c, c+1) x [r, r+1)``, so its centre is ``(c+0.5, r+0.5)``.
This module never imports Qt.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from stoneseg_core.io.images import BACKGROUND, STONE

Point = tuple[float, float]

DEFAULT_MAX_STEPS = 200
DEFAULT_MAX_UNDO_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Region:
    """A rectangle of pixels: rows ``top:bottom`` and columns ``left:right`` (ends excluded)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def width(self) -> int:
        return max(0, self.right - self.left)

    @property
    def height(self) -> int:
        return max(0, self.bottom - self.top)

    @property
    def empty(self) -> bool:
        return self.width == 0 or self.height == 0

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def union(self, other: Region | None) -> Region:
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        return Region(
            min(self.top, other.top),
            min(self.left, other.left),
            max(self.bottom, other.bottom),
            max(self.right, other.right),
        )

    def clipped(self, height: int, width: int) -> Region:
        return Region(
            min(max(self.top, 0), height),
            min(max(self.left, 0), width),
            min(max(self.bottom, 0), height),
            min(max(self.right, 0), width),
        )

    def relative_to(self, outer: Region) -> Region:
        return Region(
            self.top - outer.top,
            self.left - outer.left,
            self.bottom - outer.top,
            self.right - outer.left,
        )

    @classmethod
    def full(cls, height: int, width: int) -> Region:
        return cls(0, 0, height, width)


BAND_PIXELS = 1 << 22  # big blocks are compared and packed this many pixels at a time


def _bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges of about ``BAND_PIXELS`` pixels, each a multiple of 8 rows (but the last):
    packed bits of consecutive bands then join up as if packed at once."""
    step = max(8, (BAND_PIXELS // max(1, width)) // 8 * 8)
    return [(r, min(height, r + step)) for r in range(0, height, step)]


def changed_region(
    old: np.ndarray,
    new: np.ndarray,
    offset: Region | None = None,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Region | None:
    """Tight box around the pixels where ``old`` and ``new`` differ, or None (compared by
    bands of rows: no full-size temporary for a big block; ``convert`` is applied to each
    band of ``new`` first)."""
    h, w = old.shape
    any_row = np.zeros(h, bool)
    any_col = np.zeros(w, bool)
    for r0, r1 in _bands(h, w):
        band = new[r0:r1] if convert is None else convert(new[r0:r1])
        diff = old[r0:r1] != band
        any_row[r0:r1] = diff.any(axis=1)
        any_col |= diff.any(axis=0)
    rows = np.flatnonzero(any_row)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(any_col)
    top, left = (offset.top, offset.left) if offset is not None else (0, 0)
    return Region(
        top + int(rows[0]), left + int(cols[0]), top + int(rows[-1]) + 1, left + int(cols[-1]) + 1
    )


@dataclass(frozen=True)
class MaskChange:
    """What a listener hears after every change.

    ``final`` is False for the segments of a stroke still being drawn and True once an edit
    is complete (end of stroke, fill, undo, redo...): save, recovery and history react
    only to final changes; a view repaints on every one.
    """

    region: Region
    final: bool
    label: str


@dataclass
class _UndoRecord:
    region: Region
    old_bits: Packed
    new_bits: Packed
    label: str
    state_before: int
    state_after: int

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.old_bits + self.new_bits)


Packed = tuple  # of np.ndarray: a block's rows, 1 bit a pixel, one array per band (_bands)


def _pack(block: np.ndarray) -> Packed:
    """1 bit a pixel, row after row, a band of rows to an array: a big block is packed
    without a full-size copy, and never joined into one (joining the bands of a 20000 x
    20000 mask cost 0.15 s a time, mostly the kernel finding a fresh 50 MB)."""
    h, w = block.shape
    return tuple(np.packbits(block[r0:r1], axis=None) for r0, r1 in _bands(h, w))


def _unpack_into(bits: Packed, region: Region, mask: np.ndarray) -> None:
    """Write ``_pack``ed ``bits`` of ``region`` back into ``mask``, band by band: no
    full-size temporary either (a fresh 400 MB one held the window's thread ~1 s the first
    time a 20000 x 20000 whole-mask step was undone)."""
    w = region.width
    for (r0, r1), band in zip(_bands(region.height, w), bits):
        rows = np.unpackbits(band, count=(r1 - r0) * w)
        np.multiply(rows, np.uint8(STONE), out=rows)  # 0/1 -> 0/255 in place
        mask[region.top + r0 : region.top + r1, region.left : region.right] = rows.reshape(
            r1 - r0, w
        )


def binary_mask(mask: np.ndarray) -> np.ndarray:
    """A contiguous uint8 0/255 copy of any 2-D mask (nonzero = stone)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"A mask must be a 2-D array, got shape {mask.shape}.")
    if mask.dtype == np.uint8:
        return cv2.threshold(np.ascontiguousarray(mask), 0, STONE, cv2.THRESH_BINARY)[1]
    return np.where(mask > 0, np.uint8(STONE), np.uint8(BACKGROUND))


def polygon_pixels(points: np.ndarray, region: Region, chunk_rows: int = 256) -> np.ndarray:
    """Boolean array over ``region``: True where a pixel centre lies inside the polygon.

    Even-odd rule, exact on pixel centres (OpenCV's fillPoly also fills the pixels the
    outline touches, which would grow every lasso by half a pixel). Rows are handled in
    chunks so a long freehand lasso over a tall photo stays small in memory.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    h, w = region.height, region.width
    inside = np.zeros((h, w), bool)
    dy = y1 - y0
    slope = np.divide(x1 - x0, dy, out=np.zeros_like(dy), where=dy != 0)
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    for start in range(0, h, chunk_rows):
        stop = min(h, start + chunk_rows)
        first, last = region.top + start + 0.5, region.top + stop - 0.5
        edges = (yhi > first) & (ylo <= last) & (dy != 0)  # only edges that reach these rows
        if not edges.any():
            continue
        ex0, ey0, ey1, eslope = x0[edges], y0[edges], y1[edges], slope[edges]
        yc = (np.arange(region.top + start, region.top + stop, dtype=np.float64) + 0.5)[:, None]
        crosses = ((ey0 <= yc) & (yc < ey1)) | ((ey1 <= yc) & (yc < ey0))
        xi = np.where(crosses, ex0 + (yc - ey0) * eslope, np.inf)
        xi.sort(axis=1)
        k = int(crosses.sum(axis=1).max()) // 2 * 2
        if k == 0:
            continue
        lo, hi = xi[:, 0:k:2], xi[:, 1:k:2]
        ok = np.isfinite(lo) & np.isfinite(hi)
        c0 = np.ceil(lo[ok] - 0.5).astype(np.int64) - region.left
        c1 = np.floor(hi[ok] - 0.5).astype(np.int64) - region.left
        rows = np.broadcast_to(np.arange(stop - start)[:, None], ok.shape)[ok]
        c0, c1 = np.clip(c0, 0, w), np.clip(c1 + 1, 0, w)
        keep = c0 < c1
        n = (stop - start) * (w + 1)
        diff = np.bincount(rows[keep] * (w + 1) + c0[keep], minlength=n) - np.bincount(
            rows[keep] * (w + 1) + c1[keep], minlength=n
        )
        inside[start:stop] = np.cumsum(diff.reshape(stop - start, w + 1)[:, :w], axis=1) > 0
    return inside


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


class MaskDocument:
    """One image's mask being edited, with its undo history.

    The array is changed in place and never replaced, so a view may keep a reference to
    ``mask`` (read it, never write it). Methods that change pixels return the changed
    ``Region`` (None when nothing changed) and notify listeners.
    """

    def __init__(
        self,
        mask: np.ndarray | None = None,
        shape: tuple[int, int] | None = None,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_undo_bytes: int = DEFAULT_MAX_UNDO_BYTES,
    ) -> None:
        if mask is None:
            if shape is None:
                raise ValueError("MaskDocument needs a mask or a shape.")
            # written, not calloc'ed: its memory is mapped in here (the loading thread for
            # a big photo), not at the first edit on the window's thread (1 s for 400 MB)
            self._mask = np.full(shape, BACKGROUND, np.uint8)
        else:
            self._mask = np.ascontiguousarray(binary_mask(mask))
        self._view = self._mask.view()
        self._view.flags.writeable = False
        self.max_steps = max(1, int(max_steps))
        self.max_undo_bytes = int(max_undo_bytes)
        self._undo: deque[_UndoRecord] = deque()
        self._redo: list[_UndoRecord] = []
        self._undo_bytes = 0
        self._ids = itertools.count(1)
        self._state = 0
        self._saved_state = 0
        self._stroke: list[tuple[Region, np.ndarray]] | None = None
        self._stroke_label = ""
        self._listeners: list[Callable[[MaskChange], None]] = []
        self._snapshots: list[MaskSnapshot] = []  # copies being made on other threads

    # ------------------------------------------------------------------ properties
    @property
    def mask(self) -> np.ndarray:
        """The live mask, read-only (changes through this document only)."""
        return self._view

    @property
    def shape(self) -> tuple[int, int]:
        return self._mask.shape  # type: ignore[return-value]

    @property
    def height(self) -> int:
        return self._mask.shape[0]

    @property
    def width(self) -> int:
        return self._mask.shape[1]

    @property
    def dirty(self) -> bool:
        """True when the mask differs from the last saved (or loaded) state."""
        return self._state != self._saved_state or bool(self._stroke)

    @property
    def state_id(self) -> int:
        """Identifies the current content; undoing back to a state gives its id again."""
        return self._state

    def mark_saved(self, state: int | None = None) -> None:
        """The file now holds the current content, or the content ``state`` had (a copy
        written in the background while the user kept editing)."""
        self._saved_state = self._state if state is None else int(state)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or bool(self._stroke)

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
    def undo_nbytes(self) -> int:
        """Memory held by the undo and redo history."""
        return self._undo_bytes + sum(r.nbytes for r in self._redo)

    # ------------------------------------------------------------------ listeners
    def add_listener(self, fn: Callable[[MaskChange], None]) -> None:
        if fn not in self._listeners:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[MaskChange], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _notify(self, region: Region, final: bool, label: str) -> None:
        change = MaskChange(region, final, label)
        for fn in list(self._listeners):
            fn(change)

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> MaskSnapshot:
        """The mask as it is now, to be copied on another thread (``MaskSnapshot.copy``)
        while this document goes on changing: costs nothing here until an edit touches
        rows not yet copied. (A stroke in progress is in it as painted so far.)"""
        snap = MaskSnapshot(self._mask, self._state, self._snapshots)
        self._snapshots.append(snap)
        return snap

    def _before_write(self, region: Region) -> None:
        for snap in list(self._snapshots):
            snap.before_write(region.top, region.bottom)

    # ------------------------------------------------------------------ strokes
    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def begin_stroke(self, label: str = "Brush") -> None:
        """Group the following changes into one undo step (one mouse drag)."""
        if self._stroke is not None:
            self.end_stroke()
        self._stroke = []
        self._stroke_label = label

    def end_stroke(self) -> Region | None:
        """Close the current stroke; returns the region it changed (None if nothing)."""
        pieces, self._stroke = self._stroke, None
        if not pieces:
            return None
        union = pieces[0][0]
        for region, _ in pieces[1:]:
            union = union.union(region)
        old = self._mask[union.slices].copy()
        for region, before in reversed(pieces):  # newest first: ends at the pre-stroke state
            old[region.relative_to(union).slices] = before
        tight = changed_region(old, self._mask[union.slices], offset=union)
        if tight is None:
            # painted over what was there: nothing to undo, but views may need a repaint
            self._notify(union, True, self._stroke_label)
            return None
        old = old[tight.relative_to(union).slices]
        self._push(tight, old, self._stroke_label)
        self._notify(tight, True, self._stroke_label)
        return tight

    def _change(self, region: Region, new_block: np.ndarray, label: str) -> Region | None:
        """Write ``new_block`` into ``region``; inside a stroke, keep the old pixels for undo."""
        region = region.clipped(self.height, self.width)
        if region.empty:
            return None
        target = self._mask[region.slices]
        if self._stroke is not None:
            if np.array_equal(target, new_block):
                return None
            self._stroke.append((region, target.copy()))
            self._before_write(region)
            target[...] = new_block
            self._notify(region, False, self._stroke_label)
            return region
        tight = changed_region(target, new_block, offset=region)
        if tight is None:
            return None
        inner = tight.relative_to(region)
        old_bits = _pack(target[inner.slices])  # packed before the write: no copy of it
        self._before_write(tight)
        target[inner.slices] = new_block[inner.slices]
        self._push(tight, old_bits, label)
        self._notify(tight, True, label)
        return tight

    # ------------------------------------------------------------------ history
    def _push(self, region: Region, old: np.ndarray | Packed, label: str) -> None:
        """A step: ``old`` is the region's content before it, as pixels or packed bits."""
        new_id = next(self._ids)
        record = _UndoRecord(
            region=region,
            old_bits=old if isinstance(old, tuple) else _pack(old),
            new_bits=_pack(self._mask[region.slices]),
            label=label,
            state_before=self._state,
            state_after=new_id,
        )
        self._state = new_id
        self._redo.clear()
        self._undo.append(record)
        self._undo_bytes += record.nbytes
        while len(self._undo) > 1 and (
            len(self._undo) > self.max_steps or self._undo_bytes > self.max_undo_bytes
        ):
            dropped = self._undo.popleft()
            self._undo_bytes -= dropped.nbytes

    def undo(self) -> Region | None:
        """Undo the last whole step (a stroke in progress is closed first)."""
        if self._stroke is not None:
            self.end_stroke()
        if not self._undo:
            return None
        record = self._undo.pop()
        self._undo_bytes -= record.nbytes
        self._before_write(record.region)
        _unpack_into(record.old_bits, record.region, self._mask)
        self._state = record.state_before
        self._redo.append(record)
        self._notify(record.region, True, f"Undo {record.label}")
        return record.region

    def redo(self) -> Region | None:
        if self._stroke is not None:
            self.end_stroke()
        if not self._redo:
            return None
        record = self._redo.pop()
        self._before_write(record.region)
        _unpack_into(record.new_bits, record.region, self._mask)
        self._state = record.state_after
        self._undo.append(record)
        self._undo_bytes += record.nbytes
        self._notify(record.region, True, f"Redo {record.label}")
        return record.region

    # ------------------------------------------------------------------ brush
    def paint_line(
        self, start: Point, end: Point, radius: float, value: int = STONE, label: str = "Brush"
    ) -> Region | None:
        """Paint a round-ended segment: every pixel whose centre lies within ``radius``.

        A radius below 1 paints the pixels the segment crosses (a one-pixel pen).
        """
        value = STONE if value else BACKGROUND
        (x0, y0), (x1, y1) = start, end
        if radius < 1.0:
            return self._thin_line(start, end, value, label)
        pad = radius + 1
        region = Region(
            int(np.floor(min(y0, y1) - pad)),
            int(np.floor(min(x0, x1) - pad)),
            int(np.ceil(max(y0, y1) + pad)) + 1,
            int(np.ceil(max(x0, x1) + pad)) + 1,
        ).clipped(self.height, self.width)
        if region.empty:
            return None
        ys = np.arange(region.top, region.bottom, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(region.left, region.right, dtype=np.float32)[None, :] + 0.5
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        if length2 < 1e-12:
            dist2 = (xs - x0) ** 2 + (ys - y0) ** 2
        else:
            t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
            dist2 = (xs - (x0 + t * dx)) ** 2 + (ys - (y0 + t * dy)) ** 2
        inside = dist2 <= radius * radius
        if not inside.any():
            return None
        block = self._mask[region.slices].copy()
        block[inside] = value
        return self._change(region, block, label)

    def _thin_line(self, start: Point, end: Point, value: int, label: str) -> Region | None:
        c0, r0 = int(np.floor(start[0])), int(np.floor(start[1]))
        c1, r1 = int(np.floor(end[0])), int(np.floor(end[1]))
        region = Region(min(r0, r1), min(c0, c1), max(r0, r1) + 1, max(c0, c1) + 1)
        clipped = region.clipped(self.height, self.width)
        if clipped.empty:
            return None
        canvas = np.zeros((region.height, region.width), np.uint8)
        cv2.line(
            canvas,
            (c0 - region.left, r0 - region.top),
            (c1 - region.left, r1 - region.top),
            1,
            1,
            cv2.LINE_8,
        )
        inner = clipped.relative_to(region)
        block = self._mask[clipped.slices].copy()
        block[canvas[inner.slices] > 0] = value
        return self._change(clipped, block, label)

    def paint_disc(
        self, center: Point, radius: float, value: int = STONE, label: str = "Brush"
    ) -> Region | None:
        return self.paint_line(center, center, radius, value, label)

    def paint_stroke(
        self, points: Sequence[Point], radius: float, value: int = STONE, label: str = "Brush"
    ) -> Region | None:
        """A whole stroke through ``points`` as one undo step."""
        if not points:
            return None
        self.begin_stroke(label)
        self.paint_disc(points[0], radius, value, label)
        for a, b in itertools.pairwise(points):
            self.paint_line(a, b, radius, value, label)
        return self.end_stroke()

    # ------------------------------------------------------------------ fills
    def fill_region(
        self, point: Point, value: int = STONE, label: str = "Fill region"
    ) -> Region | None:
        """Set the connected area under ``point`` (all pixels of its value) to ``value``.

        Clicking inside an outline fills it with stone; with ``value=0`` clicking a stone
        removes it. Background areas connect through edges only (4-connectivity), so a
        one-pixel diagonal outline still closes a region; stones connect through corners too.
        """
        value = STONE if value else BACKGROUND
        col, row = int(np.floor(point[0])), int(np.floor(point[1]))
        if not (0 <= row < self.height and 0 <= col < self.width):
            return None
        current = int(self._mask[row, col])
        if current == value:
            return None
        connectivity = 8 if current == STONE else 4
        flood = np.zeros((self.height + 2, self.width + 2), np.uint8)
        flags = connectivity | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
        _, _, flood, rect = cv2.floodFill(self._mask, flood, (col, row), 0, 0, 0, flags)
        x, y, w, h = rect
        region = Region(y, x, y + h, x + w)
        selected = flood[1 + y : 1 + y + h, 1 + x : 1 + x + w] > 0
        block = self._mask[region.slices].copy()
        block[selected] = value
        return self._change(region, block, label)

    def fill_holes(self, label: str = "Fill holes") -> Region | None:
        """Make stone every background area that does not reach the image border."""
        padded = cv2.copyMakeBorder(self._mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=BACKGROUND)
        cv2.floodFill(padded, None, (0, 0), STONE)
        holes = padded[1:-1, 1:-1] == BACKGROUND
        if not holes.any():
            return None
        rows = np.flatnonzero(holes.any(axis=1))
        cols = np.flatnonzero(holes.any(axis=0))
        region = Region(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        block = self._mask[region.slices].copy()
        block[holes[region.slices]] = STONE
        return self._change(region, block, label)

    def fill_polygon(
        self, points: Iterable[Point], value: int = STONE, label: str | None = None
    ) -> Region | None:
        """Fill (or, with ``value=0``, erase) the pixels whose centres lie inside the polygon."""
        value = STONE if value else BACKGROUND
        pts = np.asarray(list(points), dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3:
            return None
        label = label or ("Lasso fill" if value else "Lasso erase")
        region = Region(
            int(np.floor(pts[:, 1].min())) - 1,
            int(np.floor(pts[:, 0].min())) - 1,
            int(np.ceil(pts[:, 1].max())) + 2,
            int(np.ceil(pts[:, 0].max())) + 2,
        ).clipped(self.height, self.width)
        if region.empty:
            return None
        inside = polygon_pixels(pts, region)
        block = self._mask[region.slices].copy()
        block[inside] = value
        return self._change(region, block, label)

    def clear(self, label: str = "Clear") -> Region | None:
        return self.replace(np.zeros_like(self._mask), label)

    def invert(self, label: str = "Invert") -> Region | None:
        return self.replace(cv2.bitwise_not(self._mask), label)

    def replace(self, mask: np.ndarray, label: str = "Replace mask") -> Region | None:
        """Replace the whole mask as one undo step (e.g. accepting a prediction).

        Done a band of rows at a time (nonzero = stone), so that a 20000 x 20000 mask needs
        no full-size temporary: compared, then the changed box packed for undo and written."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"A mask must be a 2-D array, got shape {mask.shape}.")
        if mask.shape != self._mask.shape:
            raise ValueError(
                f"The new mask is {mask.shape[1]}x{mask.shape[0]} pixels but this image is "
                f"{self.width}x{self.height}."
            )
        if self._stroke is not None:
            self.end_stroke()
        tight = changed_region(self._mask, mask, convert=binary_mask)
        if tight is None:
            return None
        w = self.width
        old_bits = _pack(self._mask[tight.slices])
        self._before_write(tight)
        left, right = tight.left, tight.right
        for r0, r1 in _bands(tight.height, w):
            a, b = tight.top + r0, tight.top + r1
            self._mask[a:b, left:right] = binary_mask(mask[a:b, left:right])
        self._push(tight, old_bits, label)
        self._notify(tight, True, label)
        return tight
