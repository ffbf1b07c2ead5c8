"""Display tiles of a big TIFF photo, read by window (``TiffTileSource``): from the file's
own overview levels (SubIFDs or reduced pages) when it has them, else decimated from windows
of the nearest finer level, a band of rows at a time (bounded memory), or sliced from coarse
levels made once (``display.coarse``); and which TIFFs are big enough to be shown this way
(``is_big_tiff_photo``). No Qt, no torch.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.display.grid import TILE, PyramidGrid, TileKey
from stoneseg_core.errors import ImageReadError, StonesegError
from stoneseg_core.io import geo

BIG_PHOTO_PIXELS = 16_000_000  # TIFFs above this are shown through the pyramid
BAND_BYTES = 48 * 1024 * 1024  # the most source pixels one decimation step reads at once


@dataclass(frozen=True)
class StoredLevel:
    """One resolution stored in the file: the full-size image or one of its overviews."""

    index: int  # position in the series' levels
    width: int
    height: int
    factor: float  # full width / this level's width


def rgb8(arr: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
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
            # the file's own levels, full size first, then its overviews (finest first)
            self.stored_levels: list[StoredLevel] = []
            for i, page in enumerate(pages):
                h, w = int(page.shape[0]), int(page.shape[1])
                if i and not (w < self.width and h < self.height):
                    continue
                self.stored_levels.append(StoredLevel(i, w, h, self.width / w))
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

    def page(self, level: StoredLevel):
        """The file's page of ``level``, through this thread's handle."""
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
        return len(self.stored_levels) - 1

    def _check_readable(self, tif, page) -> None:
        """Fail now, not tile by tile: every segment must lie inside the file, and the first
        one must decode (the compression is supported)."""
        size = getattr(tif.filehandle, "size", None)
        for level in self.stored_levels:
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
                samples.append(self.read_window(self.stored_levels[-1], r, c, 128, 128).ravel())
        data = np.concatenate(samples).astype(np.float64)
        data = data[np.isfinite(data)]
        if data.size == 0:
            return (0.0, 1.0)
        lo, hi = np.percentile(data, (0.1, 99.9))
        return float(lo), float(hi)

    def read_window(
        self, level: StoredLevel, row: int, col: int, height: int, width: int
    ) -> np.ndarray:
        """Pixels ``row:row+height``, ``col:col+width`` of ``level`` as stored (any depth,
        grey or colour: ``rgb8`` makes them displayable); counted in ``window_reads``,
        ``pixels_read`` and ``largest_read``."""
        page = self.page(level)
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
        level = self.stored_levels[0]
        for candidate in self.stored_levels:
            if candidate.factor <= step * 1.001:
                level = candidate
        fx, fy = level.width / self.width, level.height / self.height
        lx0, ly0 = int(math.floor(x0 * fx)), int(math.floor(y0 * fy))
        lx1 = min(level.width, max(lx0 + 1, int(math.ceil(x1 * fx))))
        ly1 = min(level.height, max(ly0 + 1, int(math.ceil(y1 * fy))))
        lw, lh = lx1 - lx0, ly1 - ly0
        ratio = max(1, int(round(lh / out_h)))  # source rows per output row
        page = self.page(level)
        seg_h = int(page.tilelength) if page.is_tiled else int(page.rowsperstrip or lh)
        seg_h = max(1, min(seg_h, 4096))
        # bands of whole file tiles (none decoded twice), of whole output rows when it can be
        unit = math.lcm(ratio, seg_h)
        if unit > 4 * max(ratio, seg_h):
            unit = -(-max(ratio, seg_h) // seg_h) * seg_h
        itemsize = page.dtype.itemsize * max(1, int(page.samplesperpixel))
        band = max(unit, (BAND_BYTES // max(1, lw * itemsize)) // unit * unit)
        if lh <= band:
            arr = rgb8(self.read_window(level, ly0, lx0, lh, lw), self.value_range)
            if arr.shape[:2] == (out_h, out_w):
                return arr
            return cv2.resize(arr, (out_w, out_h), interpolation=cv2.INTER_AREA)
        pieces = []
        for r in range(ly0, ly1, band):
            if should_stop is not None and should_stop():
                return None
            h = min(band, ly1 - r)
            piece = rgb8(self.read_window(level, r, lx0, h, lw), self.value_range)
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
        coarsest = self.stored_levels[-1]
        page = self.page(coarsest)
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
                tile = rgb8(
                    self.read_window(self.stored_levels[0], mr, mc, seg_h, seg_w), self.value_range
                )
                x0, y0 = int(c * fx), int(r * fy)
                x1 = max(x0 + 1, min(w, int(round(min(self.width, c + seg_w * k) * fx))))
                y1 = max(y0 + 1, min(h, int(round(min(self.height, r + seg_h * k) * fy))))
                out[y0:y1, x0:x1] = cv2.resize(
                    tile, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA
                )
        return out


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
