"""Stones painted into a label image: polygons by pixel centres, RLEs and bitmaps as they are.

A pixel belongs to a polygon when its centre lies inside; the polygons are rasterised by
pycocotools (``frPyObjects``: COCO's own rule, the pixel centres tested on a grid of a fifth
of a pixel), on the stone's bounding box only, so a stone costs its size, not the photo's.
For a polygon along pixel edges (StoneSeg's exports: ``grains.outlines``) no centre lies on
an edge, and the pixels come back exactly (the round trips in ``tests/test_formats.py`` and
``bench_formats.py`` check it). A part's holes are taken out of it; the parts of a stone are
added together.

``StoneCanvas`` paints a photo's stones one after the other: where two overlap, the later
one wins (COCO's and labelme's own rule), and the canvas counts the pixels taken over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stoneseg_core.formats.rle import runs_to_crop
from stoneseg_core.formats.shapes import Part, StoneShape

Box = tuple[int, int, int, int]  # row0, col0, row1, col1, end exclusive


def ring_box(ring: np.ndarray, height: int, width: int) -> Box:
    """The pixels whose centres may lie inside ``ring``, within the photo."""
    x0, y0 = ring.min(axis=0)
    x1, y1 = ring.max(axis=0)
    c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    c1, r1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    return r0, c0, max(r0, r1), max(c0, c1)


def fill_rings(rings: Sequence[np.ndarray], box: Box) -> np.ndarray:
    """The union of ``rings`` rasterised by pixel centres over ``box`` (a bool crop)."""
    from pycocotools import mask as coco_mask  # ~0.1 s to import: at the first polygon

    r0, c0, r1, c1 = box
    h, w = r1 - r0, c1 - c0
    if h <= 0 or w <= 0 or not rings:
        return np.zeros((max(h, 0), max(w, 0)), bool)
    shifted = [(ring - (c0, r0)).ravel().tolist() for ring in rings]
    # a flat list of four numbers is a box to pycocotools: repeat a vertex to keep a polygon
    shifted = [xy + xy[:2] if len(xy) == 4 else xy for xy in shifted]
    rles = coco_mask.frPyObjects(shifted, h, w)
    rle = rles[0] if len(rles) == 1 else coco_mask.merge(rles)
    return coco_mask.decode(rle).astype(bool)


def rasterise_part(part: Part, height: int, width: int) -> tuple[Box, np.ndarray]:
    """A polygon (its holes taken out) as (box, bool crop) over the photo."""
    box = ring_box(part.exterior, height, width)
    inside = fill_rings([part.exterior], box)
    if part.holes and inside.any():
        inside &= ~fill_rings(list(part.holes), box)
    return box, inside


def rasterise_parts(parts: Sequence[Part], height: int, width: int) -> tuple[Box, np.ndarray]:
    """The union of ``parts`` as (box, bool crop); an empty crop when none covers a centre."""
    pieces = [rasterise_part(p, height, width) for p in parts]
    pieces = [(b, m) for b, m in pieces if m.size]
    if not pieces:
        return (0, 0, 0, 0), np.zeros((0, 0), bool)
    if len(pieces) == 1:
        return pieces[0]
    r0 = min(b[0] for b, _ in pieces)
    c0 = min(b[1] for b, _ in pieces)
    r1 = max(b[2] for b, _ in pieces)
    c1 = max(b[3] for b, _ in pieces)
    out = np.zeros((r1 - r0, c1 - c0), bool)
    for (br0, bc0, br1, bc1), m in pieces:
        out[br0 - r0 : br1 - r0, bc0 - c0 : bc1 - c0] |= m
    return (r0, c0, r1, c1), out


def outside_photo(parts: Sequence[Part], height: int, width: int) -> bool:
    """Whether any vertex of ``parts`` lies outside the photo (the stone will be clipped)."""
    for part in parts:
        ring = part.exterior
        if ring[:, 0].min() < 0 or ring[:, 1].min() < 0:
            return True
        if ring[:, 0].max() > width or ring[:, 1].max() > height:
            return True
    return False


class StoneCanvas:
    """A photo's label image, its stones painted one by one (ids 1, 2, ... in order)."""

    def __init__(self, height: int, width: int) -> None:
        self.labels = np.zeros((height, width), np.int32)
        self.count = 0
        self.taken_over = 0  # pixels a later stone painted over an earlier one's

    @property
    def size(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]

    def stone_pixels(self, stone: StoneShape) -> tuple[Box, np.ndarray]:
        """Where ``stone`` lies, as (box, bool crop), clipped to the photo; ValueError for an
        RLE of another size than the photo."""
        h, w = self.size
        if stone.runs is not None:
            if stone.runs_size != (h, w):
                rh, rw = stone.runs_size or (0, 0)
                raise ValueError(f"its RLE is {rw}x{rh} pixels but the photo is {w}x{h}")
            found = runs_to_crop(stone.runs, h)
            if found is None:
                return (0, 0, 0, 0), np.zeros((0, 0), bool)
            r0, c0, crop = found
            return (r0, c0, r0 + crop.shape[0], c0 + crop.shape[1]), crop
        if stone.bitmap is not None:
            r0, c0 = stone.origin
            bitmap = np.asarray(stone.bitmap, bool)
            rr0, cc0 = max(0, r0), max(0, c0)
            rr1, cc1 = min(h, r0 + bitmap.shape[0]), min(w, c0 + bitmap.shape[1])
            if rr1 <= rr0 or cc1 <= cc0:
                return (0, 0, 0, 0), np.zeros((0, 0), bool)
            crop = bitmap[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0]
            return (rr0, cc0, rr1, cc1), crop
        return rasterise_parts(stone.parts, h, w)

    def paint(self, box: Box, crop: np.ndarray, label: int | None = None) -> int:
        """Paint ``crop`` at ``box`` as a new stone (or as ``label``); returns its id, or 0
        when it covers no pixel."""
        if crop.size == 0 or not crop.any():
            return 0
        if label is None:
            self.count += 1
            label = self.count
        r0, c0, r1, c1 = box
        window = self.labels[r0:r1, c0:c1]
        under = window[crop]
        self.taken_over += int(np.count_nonzero((under != 0) & (under != label)))
        window[crop] = label
        return label

    def compact(self) -> tuple[np.ndarray, int]:
        """(labels renumbered 1..N in the order painted, N): stones painted over whole by
        later ones are gone."""
        top = self.count
        present = np.bincount(self.labels.ravel(), minlength=top + 1) > 0
        present[0] = False
        lut = np.zeros(top + 1, np.int32)
        n = int(present.sum())
        lut[present] = np.arange(1, n + 1, dtype=np.int32)
        return lut[self.labels], n


def stone_crops(labels: np.ndarray) -> dict[int, tuple[Box, np.ndarray]]:
    """{label: (box, bool crop)} of every stone of ``labels`` (ids 1..N)."""
    from scipy import ndimage as ndi

    out = {}
    for i, found in enumerate(ndi.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        box = (rows.start, cols.start, rows.stop, cols.stop)
        out[i] = (box, labels[found] == i)
    return out


def exact_polygons(
    parts: Sequence[Part], box: Box, crop: np.ndarray, height: int, width: int
) -> bool:
    """Whether ``parts`` without holes give back exactly the stone ``crop`` at ``box`` when
    rasterised (formats whose polygons cannot hold a hole write such stones as RLEs or
    bitmaps instead)."""
    if any(p.holes for p in parts):
        return False
    got_box, got = rasterise_parts(parts, height, width)
    return got_box == box and got.shape == crop.shape and bool(np.array_equal(got, crop))
