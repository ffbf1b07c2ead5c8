"""A tiled image pyramid for showing photos far larger than the screen (orthomosaics).

No Qt, no torch. The window draws a big photo as square tiles (``TILE`` px) at power-of-two
levels: level 0 is full size, level L is 1/2**L of it. Only the tiles on screen are built,
at the level that the zoom needs, on worker threads (``TileLoader``), and kept in an LRU
cache bounded in bytes (``TileCache``), so neither the photo nor any large part of it is
ever held whole:

- ``PyramidGrid``: the tile maths (level sizes, which tiles a rectangle touches, the level
  for a zoom);
- ``TiffTileSource``: builds a tile from windows of a tiled (or striped) TIFF, from the
  file's own overview levels (SubIFDs or reduced pages) when it has them, else decimated
  from windows of the nearest finer level, a band of rows at a time (bounded memory);
- ``mask_tile`` / ``update_mask_tile``: the same tiles of a full-size uint8 mask, as
  coverage 0..255, updated in place where an edit touched them;
- ``build_coarse_levels`` / ``load_coarse_levels`` / ``save_coarse_levels``: for a file
  without overview levels, where a coarse tile costs decoding a large part of the photo
  (the fitted view of a 20000-px orthomosaic: all of it), levels ``coarse_from_level`` and
  up (1/4 of the photo, or coarser for a photo whose 1/4 would pass ``COARSE_MAX_BYTES``)
  are made once, in one pass over the file by bands of rows, and kept in the user's cache
  folder (``coarse_cache_dir``), keyed by the file's path, size and modification time and
  checked by a SHA-256 of their bytes (a damaged or stale entry is built again). They are
  held in memory (100 MB at most: 100 MB for 20000 x 20000) and a tile at those levels is
  a slice of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from stoneseg_core.errors import ImageReadError, StonesegError
from stoneseg_core.io import geo
from stoneseg_core.io.cache import user_cache_root

log = logging.getLogger(__name__)

TILE = 512
BIG_PHOTO_PIXELS = 16_000_000  # TIFFs above this are shown through the pyramid
BAND_BYTES = 48 * 1024 * 1024  # the most source pixels one decimation step reads at once
COARSE_MIN_LEVEL = 2  # coarse levels: from 1/4 of the photo (a fitted view on a big screen)
COARSE_MAX_BYTES = 96 * 1024 * 1024  # ...or from the first level that fits in this (RGB)
COARSE_FORMAT = "stoneseg-coarse-levels-1"  # change when the levels change: old ones go unused
COARSE_CACHE_DIR: Path | None = None  # where coarse levels are kept (None: coarse_cache_dir())


class TileKey(NamedTuple):
    level: int
    col: int
    row: int


# ------------------------------------------------------------------------------ the grid
class PyramidGrid:
    """Tiles of ``tile`` px over a ``width`` x ``height`` photo at levels 0 .. ``top``.

    Level L has ceil(width / 2**L) x ceil(height / 2**L) pixels; ``top`` is the first level
    that fits in one tile. Rectangles are (x0, y0, x1, y1), end exclusive.
    """

    def __init__(self, width: int, height: int, tile: int = TILE) -> None:
        if width < 1 or height < 1 or tile < 1:
            raise ValueError("A pyramid needs a positive size and tile.")
        self.width, self.height, self.tile = int(width), int(height), int(tile)
        top = 0
        while max(self.level_size(top)) > self.tile:
            top += 1
        self.top = top

    def level_size(self, level: int) -> tuple[int, int]:
        f = 1 << level
        return -(-self.width // f), -(-self.height // f)

    def tile_counts(self, level: int) -> tuple[int, int]:
        w, h = self.level_size(level)
        return -(-w // self.tile), -(-h // self.tile)

    def tile_size(self, key: TileKey) -> tuple[int, int]:
        """(width, height) of a tile in its level's pixels (edge tiles are smaller)."""
        w, h = self.level_size(key.level)
        t = self.tile
        return min(t, w - key.col * t), min(t, h - key.row * t)

    def image_rect(self, key: TileKey) -> tuple[int, int, int, int]:
        """The full-size pixels a tile shows, clipped to the photo."""
        f, t = 1 << key.level, self.tile
        x0, y0 = key.col * t * f, key.row * t * f
        return x0, y0, min(self.width, x0 + t * f), min(self.height, y0 + t * f)

    def level_for_scale(self, scale: float) -> int:
        """The coarsest level with at least one pixel per screen pixel at ``scale`` (screen
        pixels per photo pixel)."""
        if not scale > 0:
            return self.top
        level = math.floor(math.log2(1.0 / scale) + 0.01)
        return max(0, min(self.top, level))

    def tiles_in(self, level: int, rect: tuple[float, float, float, float]) -> list[TileKey]:
        """Tiles of ``level`` that meet ``rect`` (full-size coordinates), from its centre out."""
        x0, y0, x1, y1 = rect
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(self.width), x1), min(float(self.height), y1)
        if x1 <= x0 or y1 <= y0:
            return []
        span = self.tile << level
        c0, r0 = int(x0 // span), int(y0 // span)
        c1, r1 = int(math.ceil(x1 / span)), int(math.ceil(y1 / span))
        cx, cy = (x0 + x1) / 2 / span - 0.5, (y0 + y1) / 2 / span - 0.5
        keys = [TileKey(level, c, r) for r in range(r0, r1) for c in range(c0, c1)]
        keys.sort(key=lambda k: (k.col - cx) ** 2 + (k.row - cy) ** 2)
        return keys

    def parent(self, key: TileKey) -> TileKey | None:
        if key.level >= self.top:
            return None
        return TileKey(key.level + 1, key.col // 2, key.row // 2)


# ----------------------------------------------------------------------------- the cache
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


# ------------------------------------------------------------------------- mask tiles
def _block_mean(block: np.ndarray, f: int) -> np.ndarray:
    """Mean of each f x f block of a uint8 array whose origin is a multiple of f (the last
    partial blocks, at the photo's edge, are padded by repeating the edge). Rows and columns
    are first sampled every f/4 pixels for f > 4, so a coarse level costs 16 samples per
    output pixel, not f*f."""
    if f == 1:
        return np.array(block, copy=True)
    step = max(1, f // 4)
    sub = np.ascontiguousarray(block[::step, ::step])
    k = f // step
    h, w = sub.shape
    ph, pw = -h % k, -w % k
    if ph or pw:  # the edge repeated (as np.pad's "edge", several times quicker)
        sub = cv2.copyMakeBorder(sub, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    out_w, out_h = sub.shape[1] // k, sub.shape[0] // k
    return cv2.resize(sub, (out_w, out_h), interpolation=cv2.INTER_AREA)


def blocks_any(part: np.ndarray, b: int) -> np.ndarray:
    """Whether each b x b block of ``part`` (the last ones may be partial) holds a nonzero
    pixel: a maximum over each block's rows, then over its columns (4x quicker than
    ``reshape(...).any(axis=(1, 3))``, and no padded copy at the photo's edge)."""
    h, w = part.shape
    nr, nc, hf, wf = -(-h // b), -(-w // b), h // b, w // b
    rows = np.empty((nr, w), np.uint8)
    if hf:
        rows[:hf] = part[: hf * b].reshape(hf, b, w).max(axis=1)
    if nr > hf:
        rows[hf] = part[hf * b :].max(axis=0)
    blocks = np.empty((nr, nc), np.uint8)
    if wf:
        blocks[:, :wf] = rows[:, : wf * b].reshape(nr, wf, b).max(axis=2)
    if nc > wf:
        blocks[:, wf] = rows[:, wf * b :].max(axis=1)
    return blocks > 0


class MaskOccupancy:
    """Which ``block`` x ``block`` blocks of a mask hold any stone: a mask tile over empty
    blocks is zeros without reading the mask (at a coarse level a tile covers up to
    16384 x 16384 pixels). Kept up to date with ``update(region)`` after each edit."""

    def __init__(self, mask: np.ndarray, block: int = 64) -> None:
        self.mask, self.block = mask, int(block)
        h, w = mask.shape
        self.any = np.zeros((-(-h // self.block), -(-w // self.block)), bool)
        self.update((0, 0, w, h))

    def update(self, region: tuple[int, int, int, int]) -> None:
        """Look again at the blocks that the full-size ``region`` (x0, y0, x1, y1) touches."""
        b = self.block
        h, w = self.mask.shape
        c0, r0 = max(0, region[0]) // b, max(0, region[1]) // b
        c1, r1 = -(-min(w, region[2]) // b), -(-min(h, region[3]) // b)
        for r in range(r0, r1, 64):  # 64 block rows at a time: bounded temporaries
            rr = min(r1, r + 64)
            rows = self.mask[r * b : min(h, rr * b)]
            for c in range(c0, c1, 256):
                cc = min(c1, c + 256)
                part = rows[:, c * b : min(w, cc * b)]
                self.any[r:rr, c:cc] = blocks_any(part, b)

    def any_in(self, rect: tuple[int, int, int, int]) -> bool:
        b = self.block
        x0, y0, x1, y1 = rect
        return bool(self.any[y0 // b : -(-y1 // b), x0 // b : -(-x1 // b)].any())


def mask_tile(
    mask: np.ndarray, grid: PyramidGrid, key: TileKey, occupancy: MaskOccupancy | None = None
) -> np.ndarray:
    """A tile of a 0/255 mask at its level: the fraction of stone under each pixel, 0..255."""
    rect = grid.image_rect(key)
    if occupancy is not None and not occupancy.any_in(rect):
        w, h = grid.tile_size(key)
        return np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = rect
    return _block_mean(mask[y0:y1, x0:x1], 1 << key.level)


def update_mask_tile(
    tile: np.ndarray,
    mask: np.ndarray,
    grid: PyramidGrid,
    key: TileKey,
    region: tuple[int, int, int, int],
) -> bool:
    """Recompute, in place, the pixels of ``tile`` that the full-size ``region`` (x0, y0,
    x1, y1) touches. False when the region misses the tile."""
    tx0, ty0, tx1, ty1 = grid.image_rect(key)
    f = 1 << key.level
    rx0, ry0 = max(region[0], tx0), max(region[1], ty0)
    rx1, ry1 = min(region[2], tx1), min(region[3], ty1)
    if rx1 <= rx0 or ry1 <= ry0:
        return False
    c0, r0 = (rx0 - tx0) // f, (ry0 - ty0) // f
    c1, r1 = -(-(rx1 - tx0) // f), -(-(ry1 - ty0) // f)
    block = mask[ty0 + r0 * f : min(ty1, ty0 + r1 * f), tx0 + c0 * f : min(tx1, tx0 + c1 * f)]
    tile[r0:r1, c0:c1] = _block_mean(block, f)
    return True


# ------------------------------------------------------------------------ TIFF source
@dataclass(frozen=True)
class _Level:
    index: int  # position in the series' levels
    width: int
    height: int
    factor: float  # full width / this level's width


def _rgb8(arr: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Grey/RGB/RGBA, any depth -> RGB uint8 (h, w, 3)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] > 3:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        lo, hi = value_range if value_range is not None else (0.0, 255.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        data = np.nan_to_num((arr.astype(np.float32) - lo) * scale, nan=0.0)
        arr = np.clip(data + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr)


class TiffTileSource:
    """The tiles of a TIFF photo, read by window. Safe to use from several threads (each
    has its own file handle). Raises ImageReadError, naming the file, when the file cannot
    be shown: not a TIFF, damaged or truncated, a compression that cannot be decoded, or a
    layout (planes, volumes, channels) that is not a photo."""

    def __init__(self, path: str | Path, tile: int = TILE) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()
        self.window_reads = 0  # windows read from the file (for tests and benchmarks)
        self.pixels_read = 0  # source pixels those windows held
        self.largest_read = 0  # the largest window, in pixels
        try:
            tif = self._tif()
            series = tif.series[0]
            pages = [lvl.pages[0] for lvl in series.levels]
            first = pages[0]
            shape = tuple(int(v) for v in first.shape)
            if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
                raise ImageReadError(
                    f"Cannot show {self.path.name}: its layout {shape} is not a grey or colour photo."
                )
            self.height, self.width = shape[0], shape[1]
            self._levels: list[_Level] = []
            for i, page in enumerate(pages):
                h, w = int(page.shape[0]), int(page.shape[1])
                if i and not (w < self.width and h < self.height):
                    continue
                self._levels.append(_Level(i, w, h, self.width / w))
            self._check_readable(tif, first)
            self.value_range = None if first.dtype == np.uint8 else self._sample_range()
        except StonesegError as exc:
            self.close()
            raise ImageReadError(str(exc)) from None
        except Exception as exc:
            self.close()
            raise ImageReadError(
                f"Cannot read {self.path.name}: it is damaged or not a TIFF/BigTIFF file ({exc})."
            ) from None
        self.grid = PyramidGrid(self.width, self.height, tile)
        # levels made here (``build_coarse_levels``), RGB uint8 by pyramid level: a file
        # without overviews gets them once they are built or loaded from the cache
        self.coarse: dict[int, np.ndarray] = {}

    def set_coarse_levels(self, levels: dict[int, np.ndarray]) -> None:
        """Use ``levels`` (pyramid level -> RGB uint8 of that level's size) for the tiles
        of those levels and for thumbnails."""
        for level, arr in levels.items():
            if arr.shape != (*self.grid.level_size(level)[::-1], 3) or arr.dtype != np.uint8:
                raise ValueError(f"Coarse level {level} has shape {arr.shape}.")
        self.coarse = dict(levels)

    # --------------------------------------------------------------- file handles
    def _tif(self):
        tif = getattr(self._local, "tif", None)
        if tif is None:
            tif = geo.open_tiff(self.path)
            self._local.tif = tif
            with self._lock:
                self._handles.append(tif)
        return tif

    def _page(self, level: _Level):
        return self._tif().series[0].levels[level.index].pages[0]

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for tif in handles:
            try:
                tif.close()
            except Exception:
                pass

    @property
    def overview_count(self) -> int:
        """Reduced-resolution levels stored in the file (0: every level is decimated here)."""
        return len(self._levels) - 1

    def _check_readable(self, tif, page) -> None:
        """Fail now, not tile by tile: every segment must lie inside the file, and the first
        one must decode (the compression is supported)."""
        size = getattr(tif.filehandle, "size", None)
        for level in self._levels:
            p = tif.series[0].levels[level.index].pages[0]
            offsets = np.asarray(p.dataoffsets, np.int64)
            counts = np.asarray(p.databytecounts, np.int64)
            if size is not None and offsets.size and int((offsets + counts).max()) > size:
                raise ImageReadError(
                    f"Cannot read {self.path.name}: the file is truncated (its image data "
                    f"runs past the end of the file, {size} bytes); copy it again."
                )
        try:
            geo.read_tiff_window(page, tif.filehandle, 0, 0, 1, 1)
        except StonesegError:
            raise
        except Exception as exc:
            raise ImageReadError(geo.decode_error_message(self.path, page, exc)) from None

    def _sample_range(self) -> tuple[float, float]:
        """The 0.1-99.9 percentile range of a high-bit-depth photo, from a few windows."""
        samples = []
        for fy in (0.2, 0.5, 0.8):
            for fx in (0.2, 0.5, 0.8):
                r, c = int(self.height * fy), int(self.width * fx)
                samples.append(self._window(self._levels[-1], r, c, 128, 128).ravel())
        data = np.concatenate(samples).astype(np.float64)
        data = data[np.isfinite(data)]
        if data.size == 0:
            return (0.0, 1.0)
        lo, hi = np.percentile(data, (0.1, 99.9))
        return float(lo), float(hi)

    def _window(self, level: _Level, row: int, col: int, height: int, width: int) -> np.ndarray:
        page = self._page(level)
        try:
            arr = geo.read_tiff_window(page, self._tif().filehandle, row, col, height, width)
        except StonesegError:
            raise
        except Exception as exc:
            raise ImageReadError(geo.decode_error_message(self.path, page, exc)) from None
        pixels = arr.shape[0] * arr.shape[1]
        with self._lock:
            self.window_reads += 1
            self.pixels_read += pixels
            self.largest_read = max(self.largest_read, pixels)
        return arr

    # --------------------------------------------------------------- tiles
    def read_region(
        self,
        rect: tuple[int, int, int, int],
        out_size: tuple[int, int],
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray | None:
        """Full-size pixels ``rect`` (x0, y0, x1, y1) as an RGB uint8 array of ``out_size``
        (width, height); None when ``should_stop`` said stop. Reads the coarsest stored level
        that is still at least as fine as the output, a band of rows at a time."""
        x0, y0, x1, y1 = rect
        out_w, out_h = out_size
        step = min((x1 - x0) / out_w, (y1 - y0) / out_h)
        level = self._levels[0]
        for candidate in self._levels:
            if candidate.factor <= step * 1.001:
                level = candidate
        fx, fy = level.width / self.width, level.height / self.height
        lx0, ly0 = int(math.floor(x0 * fx)), int(math.floor(y0 * fy))
        lx1 = min(level.width, max(lx0 + 1, int(math.ceil(x1 * fx))))
        ly1 = min(level.height, max(ly0 + 1, int(math.ceil(y1 * fy))))
        lw, lh = lx1 - lx0, ly1 - ly0
        ratio = max(1, int(round(lh / out_h)))  # source rows per output row
        page = self._page(level)
        seg_h = int(page.tilelength) if page.is_tiled else int(page.rowsperstrip or lh)
        seg_h = max(1, min(seg_h, 4096))
        # bands of whole file tiles (none decoded twice), of whole output rows when it can be
        unit = math.lcm(ratio, seg_h)
        if unit > 4 * max(ratio, seg_h):
            unit = -(-max(ratio, seg_h) // seg_h) * seg_h
        itemsize = page.dtype.itemsize * max(1, int(page.samplesperpixel))
        band = max(unit, (BAND_BYTES // max(1, lw * itemsize)) // unit * unit)
        if lh <= band:
            arr = _rgb8(self._window(level, ly0, lx0, lh, lw), self.value_range)
            if arr.shape[:2] == (out_h, out_w):
                return arr
            return cv2.resize(arr, (out_w, out_h), interpolation=cv2.INTER_AREA)
        pieces = []
        for r in range(ly0, ly1, band):
            if should_stop is not None and should_stop():
                return None
            h = min(band, ly1 - r)
            piece = _rgb8(self._window(level, r, lx0, h, lw), self.value_range)
            rows = max(1, round(h * out_h / lh))
            pieces.append(cv2.resize(piece, (out_w, rows), interpolation=cv2.INTER_AREA))
        arr = np.concatenate(pieces, axis=0)
        if arr.shape[0] != out_h:
            arr = cv2.resize(arr, (out_w, out_h), interpolation=cv2.INTER_AREA)
        return arr

    def read_tile(
        self, key: TileKey, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray | None:
        """The RGB uint8 tile ``key`` of ``self.grid``; None when stopped."""
        level = self.coarse.get(key.level)
        if level is not None:
            t = self.grid.tile
            w, h = self.grid.tile_size(key)
            x0, y0 = key.col * t, key.row * t
            return np.array(level[y0 : y0 + h, x0 : x0 + w], copy=True)
        return self.read_region(self.grid.image_rect(key), self.grid.tile_size(key), should_stop)

    def thumbnail(
        self,
        size: int,
        max_segments: int = 16,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray | None:
        """The whole photo with its long side ``size`` px (or less), bounded in memory.

        From the smallest stored level when the file has overviews; else, for a file of
        more than ``max_segments`` tiles across, from a sample of its tiles (every k-th in
        each direction, each stretched over its k x k neighbours), so that a preview does
        not cost a decoding of the whole orthomosaic. None when ``should_stop`` said stop."""
        scale = min(1.0, size / max(self.width, self.height))
        w, h = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        if self.coarse:
            top = self.coarse[max(self.coarse)]
            return cv2.resize(top, (w, h), interpolation=cv2.INTER_AREA)
        coarsest = self._levels[-1]
        page = self._page(coarsest)
        if page.is_tiled and coarsest.index == 0:
            seg_h, seg_w = int(page.tilelength), int(page.tilewidth)
            k = -(-max(-(-self.width // seg_w), -(-self.height // seg_h)) // max_segments)
            if k > 1:
                return self._sampled_thumbnail(seg_w, seg_h, k, (w, h), should_stop)
        return self.read_region((0, 0, self.width, self.height), (w, h), should_stop)

    def _sampled_thumbnail(
        self, seg_w: int, seg_h: int, k: int, size, should_stop
    ) -> np.ndarray | None:
        w, h = size
        out = np.zeros((h, w, 3), np.uint8)
        fx, fy = w / self.width, h / self.height
        for r in range(0, self.height, seg_h * k):
            if should_stop is not None and should_stop():
                return None
            for c in range(0, self.width, seg_w * k):
                # the sampled tile is the one in the middle of its k x k block
                mr = min(r + seg_h * (k // 2), (self.height - 1) // seg_h * seg_h)
                mc = min(c + seg_w * (k // 2), (self.width - 1) // seg_w * seg_w)
                tile = _rgb8(self._window(self._levels[0], mr, mc, seg_h, seg_w), self.value_range)
                x0, y0 = int(c * fx), int(r * fy)
                x1 = max(x0 + 1, min(w, int(round(min(self.width, c + seg_w * k) * fx))))
                y1 = max(y0 + 1, min(h, int(round(min(self.height, r + seg_h * k) * fy))))
                out[y0:y1, x0:x1] = cv2.resize(
                    tile, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA
                )
        return out


# ------------------------------------------------------------------------ coarse levels
def _halve(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mean of 2 x 2 blocks to ``size`` (width, height) = ceil of half (the edge repeated)."""
    h, w = arr.shape[:2]
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def coarse_from_level(grid: PyramidGrid) -> int:
    """The finest level kept as coarse levels: ``COARSE_MIN_LEVEL``, or the first coarser
    one within ``COARSE_MAX_BYTES``."""
    level = COARSE_MIN_LEVEL
    while level < grid.top and math.prod(grid.level_size(level)) * 3 > COARSE_MAX_BYTES:
        level += 1
    return min(level, grid.top)


def build_coarse_levels(
    source: TiffTileSource,
    from_level: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[int, np.ndarray] | None:
    """Levels ``from_level`` (default ``coarse_from_level``) .. ``grid.top`` of the photo,
    RGB uint8, in one pass over its full-size pixels by bands of rows (at most
    ``BAND_BYTES`` read at once): each band is reduced to ``from_level`` (means of
    2**from_level blocks), the coarser levels are halvings of that. ``progress(fraction)``
    after each band; None when stopped."""
    grid = source.grid
    if from_level is None:
        from_level = coarse_from_level(grid)
    from_level = max(0, min(int(from_level), grid.top))
    f = 1 << from_level
    width, height = source.width, source.height
    out_w, out_h = grid.level_size(from_level)
    out = np.empty((out_h, out_w, 3), np.uint8)
    full = source._levels[0]
    page = source._page(full)
    seg_h = int(page.tilelength) if page.is_tiled else int(page.rowsperstrip or height)
    unit = math.lcm(f, max(1, min(seg_h, 4096)))
    itemsize = page.dtype.itemsize * max(1, int(page.samplesperpixel))
    band = max(unit, (BAND_BYTES // max(1, width * itemsize)) // unit * unit)
    for r in range(0, height, band):
        if should_stop is not None and should_stop():
            return None
        rows = min(band, height - r)
        piece = _rgb8(source._window(full, r, 0, rows, width), source.value_range)
        ph, pw = -rows % f, -width % f
        if ph or pw:
            piece = np.pad(piece, ((0, ph), (0, pw), (0, 0)), mode="edge")
        o0 = r // f
        n = piece.shape[0] // f
        out[o0 : o0 + n] = cv2.resize(piece, (out_w, n), interpolation=cv2.INTER_AREA)
        if progress is not None:
            progress(min(1.0, (r + rows) / height))
    levels = {from_level: out}
    for level in range(from_level + 1, grid.top + 1):
        levels[level] = _halve(levels[level - 1], grid.level_size(level))
    return levels


def coarse_cache_dir() -> Path:
    """Where coarse levels are kept: ``COARSE_CACHE_DIR`` if set, else beside the ONNX
    cache (``STONESEG_CACHE_DIR`` wins, else the user's cache folder)."""
    if COARSE_CACHE_DIR is not None:
        return Path(COARSE_CACHE_DIR)
    return user_cache_root() / "pyramid"


def _coarse_key(path: Path) -> tuple[str, dict]:
    st = path.stat()
    ident = {
        "format": COARSE_FORMAT,
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
    return digest, ident


def _coarse_files(path: Path, folder: Path | None) -> tuple[Path, Path, dict]:
    digest, ident = _coarse_key(Path(path))
    folder = coarse_cache_dir() if folder is None else Path(folder)
    return folder / f"{digest}.bin", folder / f"{digest}.json", ident


def save_coarse_levels(
    path: str | Path, levels: dict[int, np.ndarray], folder: str | Path | None = None
) -> Path | None:
    """Keep ``levels`` of the photo at ``path`` in the cache (atomically: the data, then the
    description that names its SHA-256). None (logged) when the cache cannot be written."""
    from stoneseg_core.io.images import atomic_write_bytes

    try:
        data_path, meta_path, ident = _coarse_files(Path(path), folder)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        chunks = [np.ascontiguousarray(levels[k]).reshape(-1).data for k in sorted(levels)]
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        meta = {
            **ident,
            "levels": [[k, *levels[k].shape] for k in sorted(levels)],
            "sha256": h.hexdigest(),
        }
        atomic_write_bytes(data_path, chunks)
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        return data_path
    except OSError as exc:
        log.warning("Cannot keep the coarse levels of %s in the cache: %s", Path(path).name, exc)
        return None


def load_coarse_levels(
    path: str | Path, grid: PyramidGrid, folder: str | Path | None = None
) -> dict[int, np.ndarray] | None:
    """The cached coarse levels of the photo at ``path`` when they are there, for this very
    file (path, size, modification time) and this grid, and their bytes check; else None
    (a damaged or stale entry is removed, to be built again)."""
    try:
        data_path, meta_path, ident = _coarse_files(Path(path), folder)
    except OSError:
        return None
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if any(meta.get(k) != v for k, v in ident.items()):
            raise ValueError("made from another file")
        shapes = [tuple(int(v) for v in entry) for entry in meta["levels"]]
        for level, h, w, c in shapes:
            if (w, h) != grid.level_size(level) or c != 3:
                raise ValueError(f"level {level} is {w} x {h}")
        data = data_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ValueError("its bytes do not match their checksum")
        levels, offset = {}, 0
        for level, h, w, c in shapes:
            n = h * w * c
            levels[level] = np.frombuffer(data, np.uint8, n, offset).reshape(h, w, c)
            offset += n
        if offset != len(data):
            raise ValueError("its size is wrong")
        return levels
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("Cached coarse levels of %s not used (%s): building them again",
                    Path(path).name, exc)  # fmt: skip
        for stale in (meta_path, data_path):
            try:
                stale.unlink()
            except OSError:
                pass
        return None


def tiff_pixels(path: str | Path) -> int:
    """Width x height of a TIFF from its header; 0 when it is not a readable TIFF."""
    if not geo.is_tiff(path):
        return 0
    try:
        shape = geo.tiff_shape(path)
    except StonesegError:
        return 0
    return int(shape[0]) * int(shape[1]) if len(shape) >= 2 else 0


def is_big_tiff_photo(path: str | Path, threshold: int = BIG_PHOTO_PIXELS) -> bool:
    """A TIFF too big to hold whole for display: shown through the pyramid instead."""
    return tiff_pixels(path) > threshold


# ------------------------------------------------------------------------ the loader
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
