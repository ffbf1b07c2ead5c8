"""The smart tools: a model's stone by a click, a stone by a box, the magic wand. No Qt.

Like the painting tools (``editing.tools``) they turn pointer events into ``MaskDocument``
edits, one undo step per click, drag or box. Beside the mask they read a ``SmartContext``
that the window keeps up to date: the photo's pixels (``smart_regions.PhotoPixels``) and
the model's stones (``stone_layer.StoneLayer``, None until a prediction is split). The left
button adds stone; Shift or the right button removes it.

- ``ClickStoneTool``: a click adds the predicted stone under the pointer, a drag every
  stone it crosses; without stones yet the click waits (``wants_stones``) and is applied by
  ``apply_pending`` once the window has predicted the photo. Removing takes the predicted
  stone under the pointer, or where there is none the mask's own piece there.
- ``BoxStoneTool``: a box drawn round one stone gives the predicted stone in it, clipped
  to the box, or where there is none GrabCut's (``smart_regions.grabcut_box``); a box round
  a predicted stone that is in the mask already redraws it with GrabCut (a second box on
  a stone refines its outline).
- ``MagicWandTool``: the area of like colour round the pointer (``smart_regions.wand_fill``),
  outlined while hovering; the wheel changes the tolerance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import cv2
import numpy as np

from stoneseg_core.editing.mask_document import MaskDocument, Point
from stoneseg_core.editing.region import Region
from stoneseg_core.editing.smart_regions import (
    DEFAULT_TOLERANCE,
    MAX_TOLERANCE,
    MAX_WAND_WINDOW,
    MIN_TOLERANCE,
    LabCache,
    PhotoPixels,
    WandFill,
    grabcut_box,
    grabcut_crop,
    wand_fill,
)
from stoneseg_core.editing.stone_layer import MaskPieces, Stone, StoneLayer
from stoneseg_core.editing.tool_base import PointerEvent, Tool, ToolKind
from stoneseg_core.io.images import BACKGROUND, STONE

MIN_BOX = 3  # pixels: a smaller box is a slip, not a stone
TOLERANCE_STEP = 2.0  # Delta E per notch of the wheel
MAX_OUTLINES = 400  # the wand's preview draws at most this many outlines (the longest)
OUTLINE_SIDE = 1024  # a bigger fill is outlined at this size


@dataclass
class SmartContext:
    """What the smart tools read beside the mask, kept by the canvas: the photo shown, the
    model's stones for it (None until there are), the wand's tolerance (kept from tool to
    tool) and the Lab of the window it last read."""

    photo: PhotoPixels | None = None
    stones: StoneLayer | None = None
    wand_tolerance: float = DEFAULT_TOLERANCE
    lab_cache: LabCache = field(default_factory=LabCache)

    def set_photo(self, photo: PhotoPixels | None) -> None:
        """A new photo: its stones are not known yet."""
        self.photo, self.stones = photo, None
        self.lab_cache = LabCache()


def _pixel(point: Point) -> tuple[int, int]:
    return int(np.floor(point[0])), int(np.floor(point[1]))


def _removing(ev: PointerEvent) -> bool:
    return ev.secondary or ev.shift


class ClickStoneTool(Tool):
    """Adds the model's stones a click or drag touches; Shift/right button removes stones."""

    kind = ToolKind.CLICK_STONE

    def __init__(self, context: SmartContext) -> None:
        self.context = context
        self._removing = False
        self._last: Point | None = None  # a drag in progress (applied as it goes)
        self._pending: list[list[Point]] = []  # clicks and drags waiting for the stones
        self._recording = False  # the drag in progress is one of them
        self._seen: set[int] = set()
        self._changed = False
        self._painted = 0
        self._message = ""

    @property
    def busy(self) -> bool:
        """A drag in progress, or a click waiting for the stones (Escape drops it)."""
        return self._last is not None or bool(self._pending)

    @property
    def erasing(self) -> bool:
        return self._removing

    @property
    def wants_stones(self) -> bool:
        return bool(self._pending) and self.context.stones is None

    def take_message(self) -> str:
        message, self._message = self._message, ""
        return message

    def press(self, doc: MaskDocument, ev: PointerEvent) -> None:
        self._removing = _removing(ev)
        if not self._removing and self.context.stones is None:
            self._pending.append([ev.point])  # applied by apply_pending once there are stones
            self._recording = True
            return
        self._begin(doc)
        self._apply(doc, ev.point, ev.point)
        self._last = ev.point

    def move(self, doc: MaskDocument, ev: PointerEvent) -> None:
        if self._last is not None:
            self._apply(doc, self._last, ev.point)
            self._last = ev.point
        elif self._recording:
            self._pending[-1].append(ev.point)

    def release(self, doc: MaskDocument, ev: PointerEvent) -> None:
        self.move(doc, ev)
        self._recording = False
        if self._last is not None:
            self._last = None
            self._end(doc)
        elif self._pending and self.context.stones is not None:
            self.apply_pending(doc)  # the stones came during the drag

    def double_click(self, doc: MaskDocument, ev: PointerEvent) -> None:
        """The first click of a double-click has done it all."""

    def apply_pending(self, doc: MaskDocument) -> None:
        """Each click or drag that waited, now: one undo step each."""
        if not self._pending or self.context.stones is None or self._recording:
            return
        strokes, self._pending = self._pending, []
        self._removing = False
        for points in strokes:
            self._begin(doc)
            self._apply(doc, points[0], points[0])
            for a, b in itertools.pairwise(points):
                self._apply(doc, a, b)
            self._end(doc)

    def cancel(self, doc: MaskDocument) -> None:
        self._pending = []
        self._recording = False
        if self._last is not None:
            self._last = None
            doc.end_stroke()

    def _begin(self, doc: MaskDocument) -> None:
        self._seen = set()
        self._changed = False
        self._painted = 0  # stones added or removed by this click or drag
        doc.begin_stroke("Remove stone" if self._removing else "Add stone")

    def _end(self, doc: MaskDocument) -> None:
        doc.end_stroke()
        if self._changed:
            n = self._painted
            self._message = (
                f"{'Removed' if self._removing else 'Added'} {n} stone{'s' if n != 1 else ''} "
                f"({'Shift+click removes one' if not self._removing else 'click adds one'}; "
                "Ctrl+Z undoes)."
            )
            return
        if self._removing:
            self._message = "No stone there to remove."
        else:
            self._message = (
                "No predicted stone there: the model found none (draw it with Box a stone, "
                "the magic wand or the brush)."
            )

    def _apply(self, doc: MaskDocument, start: Point, end: Point) -> None:
        if self._removing:
            self._remove_along(doc, start, end)
            return
        stones = self.context.stones
        if stones is None:
            return
        for stone in stones.stones_along(start, end, self._seen):
            self._paint(doc, stone, STONE)

    def _remove_along(self, doc: MaskDocument, start: Point, end: Point) -> None:
        """The predicted stone under each pixel of the segment that is stone in the mask;
        where the model has none, the mask's own 8-connected piece."""
        stones = self.context.stones
        mask = doc.mask
        x0, y0 = _pixel(start)
        x1, y1 = _pixel(end)
        n = max(abs(x1 - x0), abs(y1 - y0)) + 1
        for t in np.linspace(0.0, 1.0, n):
            x, y = round(x0 + t * (x1 - x0)), round(y0 + t * (y1 - y0))
            if not (0 <= y < doc.height and 0 <= x < doc.width) or not mask[y, x]:
                continue
            stone = stones.stone_at(x, y) if stones is not None else None
            if stone is None:
                stone = MaskPieces(mask).stone_at(x, y)
            if stone is not None:
                self._paint(doc, stone, BACKGROUND)

    def _paint(self, doc: MaskDocument, stone: Stone, value: int) -> None:
        label = "Remove stone" if value == BACKGROUND else "Add stone"
        if doc.paint_pixels(stone.region, stone.pixels, value, label) is not None:
            self._changed = True
            self._painted += 1


class BoxStoneTool(Tool):
    """Drag a box round one stone: the model's stone in it, else GrabCut's; Shift/right
    button removes that stone instead."""

    kind = ToolKind.BOX_STONE

    def __init__(self, context: SmartContext) -> None:
        self.context = context
        self._start: Point | None = None
        self._end: Point | None = None
        self._removing = False
        self._message = ""

    @property
    def busy(self) -> bool:
        return self._start is not None

    @property
    def erasing(self) -> bool:
        return self._removing

    def take_message(self) -> str:
        message, self._message = self._message, ""
        return message

    def press(self, doc: MaskDocument, ev: PointerEvent) -> None:
        self._start = self._end = ev.point
        self._removing = _removing(ev)

    def move(self, doc: MaskDocument, ev: PointerEvent) -> None:
        if self._start is not None:
            self._end = ev.point

    def release(self, doc: MaskDocument, ev: PointerEvent) -> None:
        if self._start is None:
            return
        self._end = ev.point
        box = self.box()
        self._start = self._end = None
        if box is None or box.height < MIN_BOX or box.width < MIN_BOX:
            self._message = "Drag a box round one stone."
            return
        box = box.clipped(doc.height, doc.width)
        if not self._removing and self._refine(doc, box):
            return
        pixels, how = self.stone_in(box)
        if pixels is None or not pixels.any():
            self._message = f"No stone found in the box ({how})."
            return
        value = BACKGROUND if self._removing else STONE
        label = "Remove boxed stone" if self._removing else "Add boxed stone"
        doc.paint_pixels(box, pixels, value, label)
        self._message = f"{'Removed' if self._removing else 'Added'} the stone {how}."

    def double_click(self, doc: MaskDocument, ev: PointerEvent) -> None:
        """A double-click draws no box."""

    def cancel(self, doc: MaskDocument) -> None:
        self._start = self._end = None

    def box(self) -> Region | None:
        """The box being drawn: the pixels it covers."""
        if self._start is None or self._end is None:
            return None
        (xa, ya), (xb, yb) = self._start, self._end
        return Region(
            int(np.floor(min(ya, yb))),
            int(np.floor(min(xa, xb))),
            int(np.ceil(max(ya, yb))),
            int(np.ceil(max(xa, xb))),
        )

    def _refine(self, doc: MaskDocument, box: Region) -> bool:
        """A box round a stone the model drew that is in the mask already: GrabCut redraws
        it (the model's outline replaced by GrabCut's in the box, one undo step). False when
        the model's stone there is not in the mask yet (the box adds it)."""
        stones, photo = self.context.stones, self.context.photo
        stone = stones.stone_in_box(box) if stones is not None else None
        if stone is None or photo is None or not doc.mask[box.slices][stone.pixels].all():
            return False
        probability = stones.probability_in(grabcut_crop(box, photo.height, photo.width))
        pixels = grabcut_box(photo, box, probability, seed=stone.pixels)
        if pixels is None or not pixels.any():
            self._message = "GrabCut found no stone in the box: the model's outline stays."
            return True
        label = "Redraw boxed stone"
        doc.begin_stroke(label)
        doc.paint_pixels(box, stone.pixels & ~pixels, BACKGROUND, label)
        doc.paint_pixels(box, pixels, STONE, label)
        doc.end_stroke()
        self._message = "Redrew the stone's outline with GrabCut, starting from the model's."
        return True

    def stone_in(self, box: Region) -> tuple[np.ndarray | None, str]:
        """The stone's pixels in ``box`` (bool, the box's shape) and where they came from."""
        stones, photo = self.context.stones, self.context.photo
        if stones is not None:
            stone = stones.stone_in_box(box)
            if stone is not None:
                return stone.pixels, "the model predicted"
        if photo is None:
            return None, "no photo"
        probability = None
        if stones is not None:
            probability = stones.probability_in(grabcut_crop(box, photo.height, photo.width))
        how = (
            "GrabCut found, from the model's probability"
            if probability is not None
            else ("GrabCut found")
        )
        return grabcut_box(photo, box, probability), how

    def preview(self) -> list[Point]:
        box = self.box()
        if box is None:
            return []
        return [
            (box.left, box.top),
            (box.right, box.top),
            (box.right, box.bottom),
            (box.left, box.bottom),
        ]


class MagicWandTool(Tool):
    """Click an area of like colour to make it stone (Shift/right button: background); the
    area is outlined while the pointer hovers; the wheel changes the tolerance."""

    kind = ToolKind.MAGIC_WAND

    def __init__(self, context: SmartContext) -> None:
        self.context = context
        self._at: tuple[int, int] | None = None  # the pixel hovered
        self._fill: WandFill | None = None  # what a click there fills
        self._fill_key: tuple | None = None
        self._outlines: list[list[Point]] | None = None
        self._message = ""

    @property
    def tolerance(self) -> float:
        return self.context.wand_tolerance

    def set_tolerance(self, value: float) -> None:
        self.context.wand_tolerance = float(np.clip(value, MIN_TOLERANCE, MAX_TOLERANCE))

    def take_message(self) -> str:
        message, self._message = self._message, ""
        return message

    def fill_at(self, x: int, y: int) -> WandFill | None:
        """What a click at pixel (x, y) fills: the fill shown while (x, y) is in it (the
        same photo and tolerance: what you see is what the click does, and hovering over a
        big area costs nothing), else the fill from (x, y)."""
        photo = self.context.photo
        if photo is None:
            return None
        key = (id(photo), self.tolerance)
        fill = self._fill
        if fill is not None and key == self._fill_key:
            r, c = y - fill.region.top, x - fill.region.left
            if 0 <= r < fill.region.height and 0 <= c < fill.region.width and fill.pixels[r, c]:
                return fill
        self._fill = wand_fill(photo, x, y, self.tolerance, self.context.lab_cache)
        self._fill_key, self._outlines = key, None
        return self._fill

    def hover(self, ev: PointerEvent) -> None:
        self._at = _pixel(ev.point)
        self.fill_at(*self._at)

    def press(self, doc: MaskDocument, ev: PointerEvent) -> None:
        self._at = _pixel(ev.point)
        fill = self.fill_at(*self._at)
        if fill is None:
            return
        removing = _removing(ev)
        value = BACKGROUND if removing else STONE
        label = "Magic wand erase" if removing else "Magic wand fill"
        changed = doc.paint_pixels(fill.region, fill.pixels, value, label) is not None
        n = int(np.count_nonzero(fill.pixels))
        if changed:
            self._message = (
                f"{'Erased' if removing else 'Filled'} {n:,} pixels of like colour "
                f"(tolerance {self.tolerance:.0f}; the wheel changes it, Ctrl+Z undoes)."
            )
        else:
            self._message = f"Those {n:,} pixels already were {'ground' if removing else 'stone'}."
        if fill.cut:
            self._message = (
                f"The fill reached {MAX_WAND_WINDOW} pixels across and was cut there: lower "
                "the tolerance, or click again beyond it."
            )

    def wheel(self, steps: float) -> bool:
        self.set_tolerance(self.tolerance + TOLERANCE_STEP * steps)
        if self._at is not None:
            self.fill_at(*self._at)
        self._message = (
            f"Magic wand tolerance {self.tolerance:.0f} (colour distance, Lab); "
            "the wheel changes it, Ctrl+wheel zooms."
        )
        return True

    def preview_outlines(self) -> list[list[Point]]:
        fill = self._fill
        if fill is None or self._at is None:
            return []
        if self._outlines is None:
            self._outlines = outlines(fill.region, fill.pixels)
        return self._outlines


def outlines(region: Region, pixels: np.ndarray, most: int = MAX_OUTLINES) -> list[list[Point]]:
    """The outlines (outer and holes) of ``pixels`` in image coordinates, through the pixel
    centres; the ``most`` longest. A fill over ``OUTLINE_SIDE`` pixels across is outlined
    at that size (a preview, drawn at the screen's resolution or less)."""
    h, w = pixels.shape
    block = pixels.astype(np.uint8)
    scale = min(1.0, OUTLINE_SIDE / max(h, w, 1))
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        block = cv2.resize(block * 255, size, interpolation=cv2.INTER_AREA)
        block = (block > 127).astype(np.uint8)
    contours, _ = cv2.findContours(block, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=len, reverse=True)[:most]
    sx, sy = w / block.shape[1], h / block.shape[0]
    scale_xy = np.array([sx, sy])
    offset = np.array([0.5 * sx + region.left, 0.5 * sy + region.top])
    return [list(map(tuple, (c.reshape(-1, 2) * scale_xy + offset).tolist())) for c in contours]
