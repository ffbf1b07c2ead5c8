"""Editing a binary stone mask: brush, eraser, fills, polygons, with undo and redo.

``MaskDocument`` owns one ``uint8`` mask (0 = background, 255 = stone) and changes it in
place, so a view can share the array and repaint only what changed. Every change reports
the ``Region`` (``editing.region``) it touched. Undo keeps, per step, only the changed
bounding box, old and new pixels packed to one bit each (``editing.undo_history``): a full
copy of a 6000x4000 mask is never made for a brush stroke. One mouse drag is one undo step
(``begin_stroke``/``end_stroke``). Another thread copies the mask while it is edited through
a ``MaskSnapshot`` (``editing.snapshot``).

Coordinates are continuous image coordinates: x to the right, y down; the pixel in row
``r`` and column ``c`` covers ``[c, c+1) x [r, r+1)``, so its centre is ``(c+0.5, r+0.5)``.
This module never imports Qt.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from stoneseg_core.editing.bands import changed_region, row_bands
from stoneseg_core.editing.polygon import polygon_pixels
from stoneseg_core.editing.region import Region
from stoneseg_core.editing.snapshot import MaskSnapshot
from stoneseg_core.editing.undo_history import Packed, UndoHistory, UndoStep, pack, unpack_into
from stoneseg_core.io.images import BACKGROUND, STONE

Point = tuple[float, float]

DEFAULT_MAX_STEPS = 200
DEFAULT_MAX_UNDO_BYTES = 256 * 1024 * 1024


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


def binary_mask(mask: np.ndarray) -> np.ndarray:
    """A contiguous uint8 0/255 copy of any 2-D mask (nonzero = stone)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"A mask must be a 2-D array, got shape {mask.shape}.")
    if mask.dtype == np.uint8:
        return cv2.threshold(np.ascontiguousarray(mask), 0, STONE, cv2.THRESH_BINARY)[1]
    return np.where(mask > 0, np.uint8(STONE), np.uint8(BACKGROUND))


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
        self._history = UndoHistory(max_steps, max_undo_bytes)
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
    def max_steps(self) -> int:
        """The most undo steps kept (the oldest are dropped)."""
        return self._history.max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self._history.max_steps = value

    @property
    def max_undo_bytes(self) -> int:
        """The most bytes of undo steps kept (the oldest are dropped, never the last one)."""
        return self._history.max_bytes

    @max_undo_bytes.setter
    def max_undo_bytes(self, value: int) -> None:
        self._history.max_bytes = value

    @property
    def can_undo(self) -> bool:
        return self._history.can_undo or bool(self._stroke)

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    @property
    def undo_label(self) -> str:
        return self._history.undo_label

    @property
    def redo_label(self) -> str:
        return self._history.redo_label

    @property
    def undo_steps(self) -> int:
        return self._history.undo_steps

    @property
    def undo_nbytes(self) -> int:
        """Memory held by the undo and redo history."""
        return self._history.nbytes

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

    def begin_stroke(self, label: str = "Brush stroke") -> None:
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
        old_bits = pack(target[inner.slices])  # packed before the write: no copy of it
        self._before_write(tight)
        target[inner.slices] = new_block[inner.slices]
        self._push(tight, old_bits, label)
        self._notify(tight, True, label)
        return tight

    # ------------------------------------------------------------------ history
    def _push(self, region: Region, old: np.ndarray | Packed, label: str) -> None:
        """A step: ``old`` is the region's content before it, as pixels or packed bits."""
        new_id = next(self._ids)
        step = UndoStep(
            region=region,
            old_bits=old if isinstance(old, tuple) else pack(old),
            new_bits=pack(self._mask[region.slices]),
            label=label,
            state_before=self._state,
            state_after=new_id,
        )
        self._state = new_id
        self._history.push(step)

    def undo(self) -> Region | None:
        """Undo the last whole step (a stroke in progress is closed first)."""
        if self._stroke is not None:
            self.end_stroke()
        step = self._history.take_undo()
        if step is None:
            return None
        self._before_write(step.region)
        unpack_into(step.old_bits, step.region, self._mask)
        self._state = step.state_before
        self._notify(step.region, True, f"Undo {step.label}")
        return step.region

    def redo(self) -> Region | None:
        if self._stroke is not None:
            self.end_stroke()
        step = self._history.take_redo()
        if step is None:
            return None
        self._before_write(step.region)
        unpack_into(step.new_bits, step.region, self._mask)
        self._state = step.state_after
        self._notify(step.region, True, f"Redo {step.label}")
        return step.region

    # ------------------------------------------------------------------ brush
    def paint_line(
        self,
        start: Point,
        end: Point,
        radius: float,
        value: int = STONE,
        label: str = "Brush stroke",
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
        self, center: Point, radius: float, value: int = STONE, label: str = "Brush stroke"
    ) -> Region | None:
        return self.paint_line(center, center, radius, value, label)

    def paint_stroke(
        self,
        points: Sequence[Point],
        radius: float,
        value: int = STONE,
        label: str = "Brush stroke",
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

    def paint_pixels(
        self, region: Region, pixels: np.ndarray, value: int = STONE, label: str = "Paint"
    ) -> Region | None:
        """Set to ``value`` the pixels of ``region`` where ``pixels`` (a bool array of the
        region's shape) is True: a stone the smart tools found. One undo step, or part of
        the stroke in progress (a drag over many stones)."""
        value = STONE if value else BACKGROUND
        pixels = np.asarray(pixels, dtype=bool)
        if pixels.shape != (region.height, region.width):
            raise ValueError(f"{pixels.shape} pixels for a {region.height}x{region.width} region.")
        inside = region.clipped(self.height, self.width)
        if inside.empty:
            return None
        pixels = pixels[inside.relative_to(region).slices]
        block = self._mask[inside.slices].copy()
        block[pixels] = value
        return self._change(inside, block, label)

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
        old_bits = pack(self._mask[tight.slices])
        self._before_write(tight)
        left, right = tight.left, tight.right
        for r0, r1 in row_bands(tight.height, w):
            a, b = tight.top + r0, tight.top + r1
            self._mask[a:b, left:right] = binary_mask(mask[a:b, left:right])
        self._push(tight, old_bits, label)
        self._notify(tight, True, label)
        return tight
