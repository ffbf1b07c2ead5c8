"""A model's stones for the smart tools: the stone under the pointer, along a drag, in a box.

The window builds a layer from a prediction (``grains`` splits it into stones, on a worker)
and hands it to the tools; ``editing`` never imports ``grains`` or ``inference``. Two kinds:

- ``LabelledStones``: int32 labels of the whole photo (0 = no stone, 1..N the stones), each
  stone's bounding box (``scipy.ndimage.find_objects``) and area, found once when the layer
  is made: a click then reads only its stone's box, never the whole photo.
- ``MaskPieces``: a 0/255 mask whose 8-connected pieces are the stones, each found in a
  window round the pointer that grows only while the piece touches the window's edge. For
  a prediction too big to split whole (an orthomosaic's, over 50 MP: touching stones stay
  one piece) and for the user's own mask (the piece a Shift+click removes).

No Qt, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from stoneseg_core.editing.mask_document import Point
from stoneseg_core.editing.region import Region

PIECE_WINDOW = 1024  # the first window a mask piece is looked for in (pixels a side)
MAX_PIECE_WINDOW = 8192  # the window stops growing here: a piece larger is cut there
INSIDE_FRACTION = 0.5  # a stone at least this much inside a box is "in" it


@dataclass(frozen=True)
class Stone:
    """One stone: its bounding box and its pixels in that box (bool, the box's shape).
    ``key`` names it in its layer (a drag adds each stone once)."""

    region: Region
    pixels: np.ndarray
    key: int

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.pixels))


def line_pixels(start: Point, end: Point, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels the segment ``start``-``end`` crosses, inside ``shape``,
    one sample a pixel of its length."""
    (x0, y0), (x1, y1) = start, end
    n = int(np.ceil(max(abs(x1 - x0), abs(y1 - y0)))) + 1
    t = np.linspace(0.0, 1.0, n)
    cols = np.floor(x0 + t * (x1 - x0)).astype(np.int64)
    rows = np.floor(y0 + t * (y1 - y0)).astype(np.int64)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return rows[inside], cols[inside]


class StoneLayer:
    """What the smart tools ask of a model's stones (``LabelledStones``, ``MaskPieces``).

    ``probability``: the model's stone probability at the photo's size, when there is one
    (GrabCut starts from it).
    """

    shape: tuple[int, int]
    probability: np.ndarray | None = None

    def stone_at(self, x: int, y: int) -> Stone | None:
        """The stone covering pixel (column ``x``, row ``y``); None where there is none."""
        raise NotImplementedError

    def stones_along(self, start: Point, end: Point, seen: set[int]) -> list[Stone]:
        """The stones the segment crosses whose keys are not in ``seen`` (added to it)."""
        raise NotImplementedError

    def stone_in_box(self, box: Region) -> Stone | None:
        """The stone a box was drawn round, clipped to the box (its region is ``box``);
        None when no stone is in it."""
        raise NotImplementedError

    def probability_in(self, region: Region) -> np.ndarray | None:
        """The probability of ``region`` (clipped to the photo), or None."""
        if self.probability is None:
            return None
        return self.probability[region.clipped(*self.shape).slices]


class LabelledStones(StoneLayer):
    """The stones of a split prediction: labels 1..N (0 = none), made on a worker thread
    (finding the boxes is one pass over the labels, ~0.1 s for 24 MP)."""

    def __init__(self, labels: np.ndarray, probability: np.ndarray | None = None) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise ValueError(f"Stone labels must be 2-D, got shape {labels.shape}.")
        if probability is not None and probability.shape != labels.shape:
            raise ValueError("The probability and the stone labels must have the same size.")
        self.labels = labels.astype(np.int32, copy=False)
        self.shape = (int(labels.shape[0]), int(labels.shape[1]))
        self.probability = probability
        self.boxes = ndi.find_objects(self.labels)  # box of label i at index i - 1
        self.areas = np.bincount(self.labels.ravel())

    @property
    def count(self) -> int:
        return sum(box is not None for box in self.boxes)

    def stone(self, label: int) -> Stone | None:
        """Stone ``label``, read from its box only."""
        if label <= 0 or label > len(self.boxes) or self.boxes[label - 1] is None:
            return None
        rows, cols = self.boxes[label - 1]
        region = Region(rows.start, cols.start, rows.stop, cols.stop)
        return Stone(region, self.labels[region.slices] == label, int(label))

    def stone_at(self, x: int, y: int) -> Stone | None:
        if not (0 <= y < self.shape[0] and 0 <= x < self.shape[1]):
            return None
        return self.stone(int(self.labels[y, x]))

    def stones_along(self, start: Point, end: Point, seen: set[int]) -> list[Stone]:
        rows, cols = line_pixels(start, end, self.shape)
        found = []
        for label in dict.fromkeys(self.labels[rows, cols].tolist()):  # in the drag's order
            if label > 0 and label not in seen:
                seen.add(label)
                stone = self.stone(label)
                if stone is not None:
                    found.append(stone)
        return found

    def stone_in_box(self, box: Region) -> Stone | None:
        """The stone with the most pixels in ``box`` among those at least half inside it;
        else the one covering at least half the box (a box drawn on part of a big stone)."""
        box = box.clipped(*self.shape)
        if box.empty:
            return None
        block = self.labels[box.slices]
        counts = np.bincount(block.ravel(), minlength=1)
        counts[0] = 0
        if not counts.any():
            return None
        inside = counts / np.maximum(self.areas[: counts.size], 1)
        candidates = np.where(inside >= INSIDE_FRACTION, counts, 0)
        label = int(np.argmax(candidates))
        if candidates[label] == 0:
            label = int(np.argmax(counts))
            if counts[label] < INSIDE_FRACTION * box.area:
                return None
        return Stone(box, block == label, label)


class MaskPieces(StoneLayer):
    """The 8-connected pieces of a 0/255 mask as stones, each looked for in a window round
    the pointer (``window`` pixels a side, doubled while the piece reaches the window's
    edge, up to ``max_window``): a click never reads the whole of a big mask."""

    def __init__(
        self,
        mask: np.ndarray,
        probability: np.ndarray | None = None,
        window: int = PIECE_WINDOW,
        max_window: int = MAX_PIECE_WINDOW,
    ) -> None:
        if mask.ndim != 2:
            raise ValueError(f"A mask must be 2-D, got shape {mask.shape}.")
        self.mask = mask
        self.shape = (int(mask.shape[0]), int(mask.shape[1]))
        self.probability = probability
        self.window = int(window)
        self.max_window = int(max(window, max_window))

    def stone_at(self, x: int, y: int) -> Stone | None:
        h, w = self.shape
        if not (0 <= y < h and 0 <= x < w) or not self.mask[y, x]:
            return None
        size = self.window
        while True:
            half = size // 2
            region = Region(y - half, x - half, y + half + 1, x + half + 1).clipped(h, w)
            block = self.mask[region.slices].copy()  # OpenCV wants it writable
            flood = np.zeros((region.height + 2, region.width + 2), np.uint8)
            flags = 8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
            _, _, _, rect = cv2.floodFill(
                block, flood, (x - region.left, y - region.top), 0, 0, 0, flags
            )
            rx, ry, rw, rh = rect
            cut = (
                (rx == 0 and region.left > 0)
                or (ry == 0 and region.top > 0)
                or (rx + rw == region.width and region.right < w)
                or (ry + rh == region.height and region.bottom < h)
            )
            if not cut or size >= self.max_window:
                break
            size *= 2
        pixels = flood[1 + ry : 1 + ry + rh, 1 + rx : 1 + rx + rw] > 0
        top, left = region.top + ry, region.left + rx
        first = int(np.argmax(pixels[0]))  # the piece's first pixel, in reading order
        return Stone(Region(top, left, top + rh, left + rw), pixels, top * w + left + first)

    def stones_along(self, start: Point, end: Point, seen: set[int]) -> list[Stone]:
        rows, cols = line_pixels(start, end, self.shape)
        found: list[Stone] = []
        for r, c in zip(rows.tolist(), cols.tolist()):
            if not self.mask[r, c] or any(_covers(s, r, c) for s in found):
                continue
            stone = self.stone_at(c, r)
            if stone is not None and stone.key not in seen:
                seen.add(stone.key)
                found.append(stone)
        return found

    def stone_in_box(self, box: Region) -> Stone | None:
        """The largest piece of the mask inside ``box`` (pieces cut by the box)."""
        box = box.clipped(*self.shape)
        if box.empty:
            return None
        block = (self.mask[box.slices] > 0).astype(np.uint8)
        n, pieces, stats, _ = cv2.connectedComponentsWithStats(block, connectivity=8)
        if n <= 1:
            return None
        label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        return Stone(box, pieces == label, label)


def _covers(stone: Stone, row: int, col: int) -> bool:
    r, c = row - stone.region.top, col - stone.region.left
    return 0 <= r < stone.region.height and 0 <= c < stone.region.width and bool(stone.pixels[r, c])
