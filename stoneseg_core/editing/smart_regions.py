"""The photo-reading halves of the smart tools: GrabCut in a box, the magic wand's fill.

Both read the photo through ``PhotoPixels`` (``ArrayPhoto`` for a photo held whole; the
window gives its tiled photos the same two members) and only a window of it: GrabCut the
box and a margin, brought down to ``GRABCUT_SIDE`` pixels a side so it answers in tens of
milliseconds; the wand a window round the click (``WAND_WINDOW``), grown only while its
fill reaches the window's edge, its CIE Lab kept (``LabCache``) while the pointer hovers.
No Qt, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from stoneseg_core.editing.region import Region

GRABCUT_SIDE = 128  # a box's crop is brought down to this many pixels a side for GrabCut
GRABCUT_ITERATIONS = 3
GRABCUT_MARGIN = 0.15  # background read round the box, a fraction of its longer side
WAND_WINDOW = 1024  # the wand's first window round the click, pixels a side
MAX_WAND_WINDOW = 2048  # it grows up to this; a fill larger is cut there (4096: ~0.3 s)
DEFAULT_TOLERANCE = 12.0  # the wand's colour distance in CIE Lab (Delta E)
MIN_TOLERANCE, MAX_TOLERANCE = 1.0, 100.0


class PhotoPixels(Protocol):
    """A photo the smart tools read by window."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def read(self, region: Region, step: int = 1) -> np.ndarray:
        """RGB uint8 pixels of ``region`` (inside the photo): full size, or about every
        ``step``-th pixel each way (a smaller copy, for GrabCut's big boxes)."""
        ...


class ArrayPhoto:
    """``PhotoPixels`` of a photo held whole as an (H, W, 3) array (grey: (H, W))."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def read(self, region: Region, step: int = 1) -> np.ndarray:
        return as_rgb(self.rgb[region.slices][::step, ::step])


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """A contiguous (h, w, 3) uint8 copy or view of grey, RGB or RGBA pixels."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    if pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels, dtype=np.uint8)


# ----------------------------------------------------------------------------- GrabCut
def grabcut_box(
    photo: PhotoPixels,
    box: Region,
    probability: np.ndarray | None = None,
    side: int = GRABCUT_SIDE,
    iterations: int = GRABCUT_ITERATIONS,
    seed: np.ndarray | None = None,
) -> np.ndarray:
    """The stone inside ``box`` by OpenCV's GrabCut: a bool array of the box's shape.

    GrabCut sees the box and a margin round it (background), brought down to ``side``
    pixels on its longer side. ``probability`` (the model's, of the same crop: see
    ``grabcut_crop``) starts it where it has stone in the box (probable stone above 0.5,
    probable background below: ``GC_INIT_WITH_MASK``); else it starts from the box alone
    (``GC_INIT_WITH_RECT``). ``seed`` (bool, the box's shape: a stone drawn already, to
    redraw) starts it instead: probable stone on the seed, sure stone on its middle, probable
    background in the rest of the box, so that on a bed of like stones (whose margin tells
    GrabCut little) it refines the outline rather than losing the stone. The answer is its
    largest piece, holes filled.
    """
    box = box.clipped(photo.height, photo.width)
    if box.height < 2 or box.width < 2:
        return np.zeros((max(box.height, 0), max(box.width, 0)), bool)
    crop = grabcut_crop(box, photo.height, photo.width)
    scale = min(1.0, side / max(crop.height, crop.width))
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    step = max(1, int(1 / (2 * scale)))  # read every step-th pixel, then average down
    rgb = photo.read(crop, step)
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    inner = box.relative_to(crop)
    x0, y0 = int(inner.left * scale), int(inner.top * scale)
    x1 = max(x0 + 1, min(size[0], round(inner.right * scale)))
    y1 = max(y0 + 1, min(size[1], round(inner.bottom * scale)))
    init = np.full((size[1], size[0]), cv2.GC_BGD, np.uint8)
    init[y0:y1, x0:x1] = cv2.GC_PR_FGD
    mode = cv2.GC_INIT_WITH_RECT
    if probability is not None and probability.shape == (crop.height, crop.width):
        prob = np.ascontiguousarray(probability[::step, ::step], dtype=np.float32)
        prob = cv2.resize(prob, size, interpolation=cv2.INTER_AREA)
        inside = prob[y0:y1, x0:x1] > 0.5
        if inside.any():
            init[y0:y1, x0:x1] = np.where(inside, cv2.GC_PR_FGD, cv2.GC_PR_BGD)
            mode = cv2.GC_INIT_WITH_MASK
    if seed is not None and seed.shape == (box.height, box.width) and seed.any():
        _seed_init(init, seed, (x0, y0, x1, y1))
        mode = cv2.GC_INIT_WITH_MASK
    if not (init == cv2.GC_BGD).any():  # a box over the whole photo: its frame is background
        init[[0, -1], :] = init[:, [0, -1]] = cv2.GC_BGD
        mode = cv2.GC_INIT_WITH_MASK
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    rect = (x0, y0, x1 - x0, y1 - y0)
    try:
        cv2.grabCut(small, init, rect, bgd, fgd, iterations, mode)
    except cv2.error:  # a box with nothing to tell stone from background by
        return np.zeros((box.height, box.width), bool)
    found = largest_piece((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD))  # at GrabCut's size
    if scale >= 1:
        return found[inner.slices]
    # back to the photo's pixels, the edges smoothed
    up = cv2.resize(
        found.astype(np.uint8) * 255, (crop.width, crop.height), interpolation=cv2.INTER_LINEAR
    )
    return up[inner.slices] > 127


def _seed_init(init: np.ndarray, seed: np.ndarray, corners: tuple[int, int, int, int]) -> None:
    """Mark ``init``'s box from a stone drawn already (see ``grabcut_box``)."""
    x0, y0, x1, y1 = corners
    small = cv2.resize(seed.view(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    inside = small > 0
    if not inside.any():
        return
    depth = cv2.distanceTransform(np.pad(small, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    core = depth >= 0.5 * depth.max()
    init[y0:y1, x0:x1] = np.where(core, cv2.GC_FGD, np.where(inside, cv2.GC_PR_FGD, cv2.GC_PR_BGD))


def grabcut_crop(box: Region, height: int, width: int) -> Region:
    """The part of the photo GrabCut reads for ``box``: the box and a margin round it."""
    pad = max(4, round(GRABCUT_MARGIN * max(box.height, box.width)))
    return Region(box.top - pad, box.left - pad, box.bottom + pad, box.right + pad).clipped(
        height, width
    )


def largest_piece(pixels: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of ``pixels`` (bool), its holes filled."""
    block = pixels.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(block, connectivity=8)
    if n <= 1:
        return np.zeros(pixels.shape, bool)
    keep = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    padded = cv2.copyMakeBorder(keep, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(padded, None, (0, 0), 2)
    return padded[1:-1, 1:-1] != 2


# ----------------------------------------------------------------------------- the wand
class LabCache:
    """The CIE Lab (OpenCV's 8-bit: L x 2.55, a and b + 128) of the last window read, so
    a hovering wand converts a window once, not at every pointer move."""

    def __init__(self) -> None:
        self.photo: PhotoPixels | None = None
        self.region: Region | None = None
        self.size = 0  # the window size it was read for
        self.lab: np.ndarray | None = None
        self.reads = 0  # windows read and converted (for tests and benchmarks)

    def lab_window(
        self, photo: PhotoPixels, x: int, y: int, size: int
    ) -> tuple[Region, np.ndarray]:
        """A window round (x, y) and its Lab pixels: the cached one while it was read for
        a window at least ``size`` wide and the click is at least a quarter of that inside
        it (or by the photo's edge); else one of ``size`` centred on the click, read and
        converted."""
        h, w = photo.height, photo.width
        r, quarter = self.region, size // 4
        if (
            photo is self.photo
            and r is not None
            and self.lab is not None
            and self.size >= size
            and (r.left == 0 or x - r.left >= quarter)
            and (r.top == 0 or y - r.top >= quarter)
            and (r.right == w or r.right - x > quarter)
            and (r.bottom == h or r.bottom - y > quarter)
        ):
            return r, self.lab
        half = size // 2
        region = Region(y - half, x - half, y - half + size, x - half + size).clipped(h, w)
        self.lab = cv2.cvtColor(as_rgb(photo.read(region)), cv2.COLOR_RGB2Lab)
        self.photo, self.region, self.size = photo, region, size
        self.reads += 1
        return region, self.lab


@dataclass(frozen=True)
class WandFill:
    """What the wand selects: the box of the fill, its pixels (bool), whether it was cut at
    the largest window (it went on beyond), and that window's size."""

    region: Region
    pixels: np.ndarray
    cut: bool = False
    window: int = WAND_WINDOW


def wand_fill(
    photo: PhotoPixels,
    x: int,
    y: int,
    tolerance: float,
    cache: LabCache | None = None,
    window: int = WAND_WINDOW,
    max_window: int = MAX_WAND_WINDOW,
) -> WandFill | None:
    """The pixels connected to (x, y) (4-connected) whose colour is within ``tolerance`` of
    the click's (the 3 x 3 mean round it) on each CIE Lab axis (Delta E units;
    ``cv2.floodFill`` with a fixed range), in a window round the click that doubles
    while the fill reaches its edge, up to ``max_window``. None off the photo."""
    if not (0 <= x < photo.width and 0 <= y < photo.height):
        return None
    cache = cache if cache is not None else LabCache()
    size = window
    while True:
        region, lab = cache.lab_window(photo, x, y, size)
        found = _flood(lab, x - region.left, y - region.top, tolerance)
        rx, ry, rw, rh = found[1]
        cut = (
            (rx == 0 and region.left > 0)
            or (ry == 0 and region.top > 0)
            or (rx + rw == region.width and region.right < photo.width)
            or (ry + rh == region.height and region.bottom < photo.height)
        )
        if not cut or size >= max_window:
            break
        size *= 2
    flood = found[0]
    pixels = flood[1 + ry : 1 + ry + rh, 1 + rx : 1 + rx + rw] > 0
    top, left = region.top + ry, region.left + rx
    return WandFill(Region(top, left, top + rh, left + rw), pixels, cut, size)


def _flood(lab: np.ndarray, col: int, row: int, tolerance: float):
    """(fill mask with a 1-pixel frame, rect) of the fixed-range flood fill from (col, row)."""
    seed = lab[max(0, row - 1) : row + 2, max(0, col - 1) : col + 2].reshape(-1, 3)
    sample = np.round(seed.mean(axis=0)).astype(np.uint8)
    t = float(np.clip(tolerance, MIN_TOLERANCE, MAX_TOLERANCE))
    diff = (t * 2.55, t, t, 0.0)  # OpenCV's 8-bit L is L* x 2.55
    kept = lab[row, col].copy()
    lab[row, col] = sample  # the fill compares with the seed pixel: make it the 3 x 3 mean
    try:
        flood = np.zeros((lab.shape[0] + 2, lab.shape[1] + 2), np.uint8)
        flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
        _, _, flood, rect = cv2.floodFill(lab, flood, (col, row), 0, diff, diff, flags)
    finally:
        lab[row, col] = kept
    return flood, rect
