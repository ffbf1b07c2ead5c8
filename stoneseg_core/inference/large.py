"""Photos of any size in bounded memory: segmentation window by window (no torch here).

``iter_segment_large`` segments a photo too large to hold at full size -- a drone orthomosaic
of 20000 x 20000 pixels -- by reading it in windows (a tiled or striped TIFF through ``geo``'s
window reader, an uncompressed one through a memory map; never whole) and writing the 0/255
mask band by band into a tiled, deflate-compressed TIFF (BigTIFF past 4 GB) that carries the
photo's georeference and CRS, from a writer thread. A ``.png`` output holds the mask whole
(1 byte per pixel) and is written at the end.

The result is the whole-photo result at the same scale (``segment_whole``, which holds every
plane at full size), not an approximation of it:

- Each side of n photo pixels becomes round(n x scale) working pixels, as in any resize
  (``work_scale.scaled_size``), and its ratio is taken as the fraction p/q (q <= 1024)
  nearest that: the photo is seen as cells of q photo pixels that become p. A window whose
  edges lie on cell edges resizes (OpenCV's area averaging to shrink, bilinear in float to
  enlarge) to exactly the pixels the whole photo's resize has there (the last, partial cell
  included); bilinear needs one cell of margin. The probability goes back to the photo's
  size the same way. (Where a side's rounding lands on a half, the photo is padded to whole
  cells instead, in both paths.) Against a resize straight to round(n x scale), pixels
  are placed a few hundredths of a working pixel apart across a 2000-pixel photo, a
  quarter at most across a 20000-pixel one (less than that resize's own rounding).
- The network's tiles are those of the whole working image, in the same batches and the same
  order, added into a band of the blending accumulators that rolls down the image: every
  pixel's blend is the same sum. (On a GPU the whole-photo pass blends on the device; the
  windowed one on the CPU, so the two agree to float rounding rather than bit for bit.)

Memory, beside the model: a band of the working image one tile (and a batch) high and its
accumulators (4 + 4 x channels bytes per working pixel), one window of the photo
(``read_side``\\ :sup:`2` x 3 bytes) and a band of 256 mask rows: about 0.5 GB for a
20000-pixel-wide orthomosaic at scale 1, whatever its height.

Limits: a photo the window reader cannot read by windows -- a PNG or JPEG, a TIFF in one
compressed strip (or strips of more than 64 MB decoded), a TIFF in a colour space other than
grey/RGB(A), of more than 8 bits or rotated by its Orientation tag -- is read whole (as
``imageio.read_image`` reads it: uint8 RGB) when that fits in the memory available, about
6 bytes per pixel plus the file; otherwise it is refused before anything is written, with
a message naming the file and how to save it tiled.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.tiling import blend_window, pad_to, tile_starts
from stoneseg_core.io import geo
from stoneseg_core.io.images import (
    describe_os_error,
    image_size,
    new_file_mode,
    read_image,
    write_mask,
)
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.info import ModelInfo

log = logging.getLogger(__name__)


class WindowSegmenter(Protocol):
    """What segmenting window by window needs of a model: the Segmenter of
    ``inference.segmenter`` is one. Named here so that this module needs neither torch nor
    the Segmenter (a policy-free one without ``work_scale`` works at its long side)."""

    config: InferenceConfig  # its threshold
    info: ModelInfo  # its working size

    @property
    def classes(self) -> int: ...  # output channels

    def probabilities_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray: ...

    def add_tiles(
        self,
        image: np.ndarray,
        coords: Sequence[tuple[int, int]],
        acc: np.ndarray,
        norm: np.ndarray,
        weight: np.ndarray,
    ) -> None: ...


# photos with more pixels than this go through the windowed path in the folder loops
LARGE_PIXELS = 50_000_000
# the side of the photo windows read and resized at a time (photo pixels, rounded to cells)
READ_SIDE = 2048
# a TIFF whose tiles or strips decode to more than this is not read by windows
MAX_SEGMENT_BYTES = 64 * 2**20
MAX_DENOMINATOR = 1024
# the central window a scale is estimated on (photo pixels)
ESTIMATE_SIDE = 4096
BAND = geo.TILE  # mask rows per band handed to the writer: one row of the output's tiles


@dataclass(frozen=True)
class LargeEvent:
    """Progress of ``iter_segment_large``, after each batch of the network's tiles."""

    tiles_done: int
    tiles_total: int
    rows_done: int  # mask rows finished
    height: int
    seconds: float

    @property
    def fraction(self) -> float:
        return self.tiles_done / self.tiles_total if self.tiles_total else 1.0


@dataclass(frozen=True)
class LargeSummary:
    output: Path | None  # None when cancelled
    size: tuple[int, int]  # the photo's (H, W)
    scale: float  # the working scale used: p / q
    tiles: int  # network tiles run
    seconds: float
    windowed: bool  # read by windows (False: read whole, it could not be)
    cancelled: bool = False


def _check_scale(scale) -> float:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise StonesegError(f"The working scale must be a positive number, got {scale!r}.")
    return float(scale)


@dataclass(frozen=True)
class Axis:
    """One side of the photo at the working scale: ``n`` photo pixels become ``work``; cells
    of ``q`` photo pixels become ``p`` working pixels. ``padded``: the photo is padded (its
    edge pixels repeated) to whole cells, ``cells`` x ``q`` pixels."""

    n: int
    p: int
    q: int
    work: int
    padded: bool

    @property
    def cells(self) -> int:
        return -(-self.n // self.q)

    @property
    def ratio(self) -> float:
        return self.p / self.q


def axis(n: int, scale: float) -> Axis:
    """A side of ``n`` photo pixels at ``scale``: its working size is round(n x scale), as
    any whole-photo resize makes it (``work_scale.scaled_size``), and its ratio the
    fraction p/q (q <= 1024; enlarging, 3 p <= READ_SIDE) nearest that size / n, so that
    cells of q pixels resize to exactly p (module docstring). Where n p/q is within 1e-6 of a half (a window's resize
    could round the other way) the photo is padded to whole cells instead."""
    target = max(1, round(n * _check_scale(scale)))
    # enlarging, a window has a cell of margin on each side, in float: cells kept small
    # enough that three of them span at most READ_SIDE working pixels
    most = MAX_DENOMINATOR if target <= n else max(1, int(READ_SIDE * n / (3 * target)))
    f = Fraction(target, n).limit_denominator(min(MAX_DENOMINATOR, most))
    p, q = max(1, f.numerator), f.denominator
    if n % q == 0:
        return Axis(n, p, q, n // q * p, False)
    x = n * (p / q)
    back = round(x) * (q / p)
    if round(x) >= 1 and min(abs(x % 1 - 0.5), abs(back % 1 - 0.5)) > 1e-6:
        return Axis(n, p, q, int(round(x)), False)
    return Axis(n, p, q, -(-n // q) * p, True)


# ------------------------------------------------------------------------------ resizing


def _resize_photo(window: np.ndarray, ay: Axis, ax: Axis) -> np.ndarray:
    """A window on cell edges at the working scale (uint8): area averaging to shrink,
    bilinear (in float, rounded) to enlarge; exact on cell edges (module docstring)."""
    if ay.p == ay.q and ax.p == ax.q:
        return window
    fx, fy = ax.ratio, ay.ratio
    if ay.p <= ay.q and ax.p <= ax.q:
        return cv2.resize(window, None, fx=fx, fy=fy, interpolation=cv2.INTER_AREA)
    big = cv2.resize(window.astype(np.float32), None, fx=fx, fy=fy, interpolation=cv2.INTER_LINEAR)
    return cv2.convertScaleAbs(big)


def _resize_back(prob: np.ndarray, ay: Axis, ax: Axis) -> np.ndarray:
    """Working-scale probability on cell edges -> photo pixels (bilinear, float32)."""
    if ay.p == ay.q and ax.p == ax.q:
        return prob
    return cv2.resize(prob, None, fx=1 / ax.ratio, fy=1 / ay.ratio, interpolation=cv2.INTER_LINEAR)


def _pad_edge(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height and w == width:
        return image
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)


def segment_whole(segmenter: WindowSegmenter, image: np.ndarray, scale: float) -> np.ndarray:
    """The 0/255 mask of ``image`` (uint8 RGB) segmented whole at ``scale``: the same cells,
    resizes and tiles as ``iter_segment_large``, with every plane at full size. For photos
    that fit in memory; the result the windowed path gives too."""
    h, w = image.shape[:2]
    ay, ax = axis(h, scale), axis(w, scale)
    rows = ay.cells * ay.q if ay.padded else h
    padded = _pad_edge(image, rows, ax.cells * ax.q if ax.padded else w)
    work = _resize_photo(padded, ay, ax)
    del padded
    assert work.shape[:2] == (ay.work, ax.work), (work.shape, ay, ax)
    prob = segmenter.probabilities_at_work_scale(work)[0]
    up = _pad_edge(_resize_back(prob, ay, ax)[:h, :w], h, w)
    mask = (up >= segmenter.config.threshold).view(np.uint8)
    mask *= 255
    return mask


# ------------------------------------------------------------------------------- sources


class _ArraySource:
    """A photo held whole (uint8 RGB)."""

    windowed = False

    def __init__(self, image: np.ndarray):
        self.image = image
        self.shape = image.shape[:2]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.image[y0:y1, x0:x1]

    def central(self, side: int) -> np.ndarray:
        return _central(self, side)

    def close(self) -> None:
        self.image = None


class _TiffSource:
    """A TIFF's first image read by windows; each window converted to uint8 RGB."""

    windowed = True

    def __init__(self, path: Path, tif, page, memmap: np.ndarray | None):
        self.path, self.tif, self.page, self.memmap = path, tif, page, memmap
        self.shape = (int(page.imagelength), int(page.imagewidth))
        self.strips = memmap is None and not page.is_tiled

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self.memmap is not None:
            arr = np.asarray(self.memmap[y0:y1, x0:x1])
        else:
            try:
                arr = geo.read_tiff_window(self.page, self.tif.filehandle, y0, x0, y1 - y0, x1 - x0)
            except StonesegError as exc:
                raise StonesegError(f"Cannot read {self.path.name}: {exc}") from None
            except Exception as exc:
                raise StonesegError(geo.decode_error_message(self.path, self.page, exc)) from None
        if arr.ndim == 2:
            return np.repeat(arr[:, :, None], 3, axis=2)
        if arr.shape[2] == 1:
            return np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr[:, :, :3])

    def central(self, side: int) -> np.ndarray:
        return _central(self, side)

    def close(self) -> None:
        self.memmap = None
        self.tif.close()


def _central(source, side: int) -> np.ndarray:
    h, w = source.shape
    hh, ww = min(h, side), min(w, side)
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    return source.read(y0, y0 + hh, x0, x0 + ww)


def _why_not_windowed(page) -> str | None:
    """Why a TIFF page cannot be read by windows here, or None when it can."""
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    samples = int(page.samplesperpixel)
    if int(getattr(page, "imagedepth", 1) or 1) > 1:
        return "it is a 3-D (volumetric) TIFF"
    if dtype != np.uint8:
        return f"its pixels are {dtype} (only 8-bit photos are read by windows)"
    if int(page.photometric) not in (1, 2) or samples not in (1, 3, 4):
        return f"its colour space ({page.photometric.name}, {samples} samples) is not grey or RGB"
    orientation = page.tags.get(geo.ORIENTATION)
    if orientation is not None and int(orientation.value) not in (0, 1):
        return "it is rotated by its Orientation tag"
    if page.is_tiled:
        rows, cols = int(page.tilelength), int(page.tilewidth)
        what = f"its tiles of {cols} x {rows} pixels"
    else:
        rows, cols = (
            min(int(page.rowsperstrip or page.imagelength), int(page.imagelength)),
            int(page.imagewidth),
        )
        what = "its one strip" if rows >= int(page.imagelength) else f"its strips of {rows} rows"
    if _memmappable(page):
        return None
    if rows * cols * samples > MAX_SEGMENT_BYTES:
        size = rows * cols * samples / 1e6
        return f"{what} each decode to {size:.0f} MB"
    return None


def _memmappable(page) -> bool:
    contig = int(page.samplesperpixel) == 1 or int(page.planarconfig) == 1
    return bool(page.is_memmappable) and contig and int(page.compression) == 1


def _header_size(path: Path) -> tuple[int, int]:
    """(H, W) of a PNG or any other photo from its header (PIL refuses to open photos past
    ~179 MP; a PNG's IHDR is read directly)."""
    if path.suffix.lower() == ".png":
        try:
            with open(path, "rb") as fh:
                head = fh.read(24)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(h), int(w)
        except OSError:
            pass
    w, h = image_size(path)
    return h, w


def photo_shape(path: str | Path) -> tuple[int, int]:
    """(H, W) of a photo from its header, without decoding it."""
    path = Path(path)
    if geo.is_tiff(path):
        shape = geo.tiff_shape(path)
        return int(shape[0]), int(shape[1])
    return _header_size(path)


def needs_windows(path: str | Path, limit: int | None = None) -> bool:
    """True for a photo of more than ``limit`` pixels (default LARGE_PIXELS): the folder
    loops segment it window by window instead of reading it whole. False when its header
    cannot be read (the reader then names the problem)."""
    try:
        h, w = photo_shape(path)
    except Exception:
        return False
    return h * w > (LARGE_PIXELS if limit is None else limit)


def _available_memory() -> int | None:
    """MemAvailable (bytes) on Linux; None where it is not known."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def open_photo(path: str | Path, memory_limit: int | None = None):
    """A source of uint8 RGB windows of the photo at ``path``: by windows where it can be
    read so, else the photo read whole if about 6 bytes per pixel plus the file fit in
    ``memory_limit`` (default: the memory available now). StonesegError naming the file
    otherwise."""
    path = Path(path)
    if not path.is_file():
        raise StonesegError(f"Image not found: {path}")
    if geo.is_tiff(path):
        tif = geo.open_tiff(path)
        try:
            page = tif.pages[0]
            why = _why_not_windowed(page)
            h, w = int(page.imagelength), int(page.imagewidth)
            if why is None:
                memmap = None
                if _memmappable(page):
                    memmap = geo.import_tifffile().memmap(path, page=0, mode="r")
                    memmap = memmap.reshape(h, w, -1)
                source = _TiffSource(path, tif, page, memmap)
                tif = None  # the source owns it now
                return source
        except StonesegError:
            raise
        except Exception as exc:
            raise StonesegError(f"Cannot read {path.name}: damaged TIFF header ({exc}).") from None
        finally:
            if tif is not None:
                tif.close()
    else:
        h, w = _header_size(path)
        why = f"a {path.suffix.lstrip('.').upper()} file cannot be read by windows"
    need = 6 * h * w + path.stat().st_size
    limit = _available_memory() if memory_limit is None else memory_limit
    if limit is not None and need > limit:
        raise StonesegError(
            f"Cannot segment {path.name} ({w} x {h} pixels): it cannot be read window by "
            f"window ({why}) and reading it whole needs about {need / 1e9:.1f} GB, with "
            f"{limit / 1e9:.1f} GB available. Save it as a tiled TIFF (for example "
            "gdal_translate -co TILED=YES -co COMPRESS=DEFLATE) and segment that."
        )
    log.info("%s: read whole (%s)", path.name, why)
    return _ArraySource(read_image(path))


# --------------------------------------------------------------------------------- sinks


class _Aborted(Exception):
    pass


_ABORT = object()


class _TiffSink:
    """The mask written band by band into a tiled TIFF by a writer thread: to a temporary
    file beside ``dst``, moved into place by ``finish``, removed by ``abort``."""

    def __init__(self, dst: Path, height: int, width: int, georef: geo.Georeference | None):
        tifffile = geo.import_tifffile()
        self.dst, self.height, self.width, self.georef = dst, height, width, georef
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, dst)) from exc
        os.close(fd)
        self.tmp = Path(tmp)
        self.rows: list[np.ndarray] = []
        self.count = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(
            target=self._write, args=(tifffile,), name="stoneseg-mask-writer", daemon=True
        )
        self.thread.start()

    def _tiles(self) -> Iterator[np.ndarray]:
        while True:
            band = self.queue.get()
            if band is None:
                return
            if band is _ABORT:
                raise _Aborted
            for x in range(0, self.width, BAND):
                yield np.ascontiguousarray(band[:, x : x + BAND])

    def _write(self, tifffile) -> None:
        try:
            tifffile.imwrite(
                self.tmp,
                self._tiles(),
                shape=(self.height, self.width),
                dtype=np.uint8,
                photometric="minisblack",
                tile=(BAND, BAND),
                compression="zlib",
                predictor=None,
                extratags=geo.geotiff_extratags(self.georef),
                metadata=None,
                software="StoneSeg",
                bigtiff=self.height * self.width > 2**32 - 2**25,
            )
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except BaseException as exc:  # _Aborted, a full disk...
            self.error = exc

    def _put(self, item) -> None:
        while True:
            if not self.thread.is_alive():
                self._raise()
                if item is _ABORT:
                    return
                raise StonesegError(f"Cannot write {self.dst}: the writer stopped.")
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise(self) -> None:
        exc = self.error
        if exc is None or isinstance(exc, _Aborted):
            return
        if isinstance(exc, OSError):
            raise StonesegError(describe_os_error(exc, self.dst)) from exc
        raise StonesegError(f"Cannot write {self.dst}: {exc}") from exc

    def push(self, rows: np.ndarray) -> None:
        self.rows.append(rows)
        self.count += len(rows)
        while self.count >= BAND:
            band = np.concatenate(self.rows) if len(self.rows) > 1 else self.rows[0]
            self._put(band[:BAND])
            rest = band[BAND:]
            self.rows, self.count = ([rest] if len(rest) else []), len(rest)

    def finish(self) -> None:
        if self.count:
            self._put(np.concatenate(self.rows))
            self.rows, self.count = [], 0
        self._put(None)
        self.thread.join()
        try:
            self._raise()
            os.chmod(self.tmp, new_file_mode(self.dst))
            os.replace(self.tmp, self.dst)
        except OSError as exc:
            self._unlink()
            raise StonesegError(describe_os_error(exc, self.dst)) from exc
        except BaseException:
            self._unlink()
            raise

    def abort(self) -> None:
        if self.thread.is_alive():
            try:
                self._put(_ABORT)
            except StonesegError:
                pass
            self.thread.join()
        self._unlink()

    def _unlink(self) -> None:
        try:
            self.tmp.unlink()
        except OSError:
            pass


class _ArraySink:
    """The mask held whole, written as a PNG by ``finish`` (atomically)."""

    def __init__(self, dst: Path, height: int, width: int):
        self.dst = dst
        self.mask = np.empty((height, width), np.uint8)
        self.count = 0

    def push(self, rows: np.ndarray) -> None:
        self.mask[self.count : self.count + len(rows)] = rows
        self.count += len(rows)

    def finish(self) -> None:
        try:
            write_mask(self.dst, self.mask)
        except StonesegError:
            raise
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, self.dst)) from exc

    def abort(self) -> None:
        self.mask = None


# ------------------------------------------------------------------------------- the pass


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    """[k0, k1) spans of ``step`` covering range(n), a last span of one merged into the one
    before (so the last, partial cell of a side never comes alone)."""
    spans = [(k, min(n, k + step)) for k in range(0, n, step)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
        spans[-2:] = [(spans[-2][0], n)]
    return spans


class _Pass:
    """One photo, window by window: photo cells -> working band -> tiles -> probability
    band -> mask rows (module docstring)."""

    def __init__(self, segmenter: WindowSegmenter, source, scale: float, sink, read_side: int):
        self.seg, self.source, self.sink = segmenter, source, sink
        self.h, self.w = source.shape
        self.ay, self.ax = ay, ax = axis(self.h, scale), axis(self.w, scale)
        self.wh, self.ww = ay.work, ax.work  # the working image
        # cells per window side: read_side pixels, photo or working, whichever is larger
        self.group_h = max(1, read_side // max(ay.p, ay.q))
        self.group_w = max(1, read_side // max(ax.p, ax.q))
        # a striped TIFF decodes whole strips: its windows span its width, fewer rows
        if getattr(source, "strips", False):
            self.group_w = ax.cells
            rows = read_side * read_side // max(1, self.w, self.ww)
            self.group_h = max(1, min(self.group_h, rows // max(ay.p, ay.q)))
        self.linear = ay.p > ay.q or ax.p > ax.q
        # the probability band, rows [prob0, prob0 + len) of the working image
        self.prob = np.zeros((0, self.ww), np.float32)
        self.prob0 = 0
        self.next_cell = 0  # the first photo cell row whose mask is not written yet
        self.rows_done = 0

    # photo -> working scale ------------------------------------------------------------
    def _read_cells(self, c0: int, c1: int, k0: int, k1: int) -> np.ndarray:
        """Photo cells rows [c0, c1) x columns [k0, k1), padded past the photo's edge
        where the photo is padded to whole cells."""
        ay, ax = self.ay, self.ax
        y0, y1, x0, x1 = c0 * ay.q, c1 * ay.q, k0 * ax.q, k1 * ax.q
        y2, x2 = min(y1, self.h), min(x1, self.w)
        win = self.source.read(y0, y2, x0, x2)
        return _pad_edge(win, (y1 if ay.padded else y2) - y0, (x1 if ax.padded else x2) - x0)

    def work_rows(self, a: int, b: int) -> np.ndarray:
        """Rows [a, b) of the working image (uint8, (b - a, W, 3)), read window by window."""
        ay, ax = self.ay, self.ax
        py, px = ay.p, ax.p
        m = 1 if self.linear else 0
        out = np.empty((b - a, self.ww, 3), np.uint8)
        for c0 in range(a // py, -(-b // py), self.group_h):
            c1 = min(-(-b // py), c0 + self.group_h)
            ca, cb = max(0, c0 - m), min(ay.cells, c1 + m)
            r0, r1 = max(a, c0 * py), min(b, c1 * py)
            for k0 in range(0, ax.cells, self.group_w):
                k1 = min(ax.cells, k0 + self.group_w)
                ka, kb = max(0, k0 - m), min(ax.cells, k1 + m)
                work = _resize_photo(self._read_cells(ca, cb, ka, kb), ay, ax)
                out[r0 - a : r1 - a, k0 * px : k1 * px] = work[
                    r0 - ca * py : r1 - ca * py, (k0 - ka) * px : (k1 - ka) * px
                ]
        return out

    # probability -> mask ---------------------------------------------------------------
    def add_probability(self, rows: np.ndarray) -> None:
        """The next final rows of the working-scale probability; writes the mask rows that
        they complete."""
        self.prob = np.concatenate([self.prob, rows]) if len(self.prob) else rows
        end = self.prob0 + len(self.prob)
        ay, ax = self.ay, self.ax
        (py, qy), (px, qx) = (ay.p, ay.q), (ax.p, ax.q)
        last = ay.cells if end >= self.wh else end // py - 1  # cells done: [.., last)
        thr = self.seg.config.threshold
        while self.next_cell < last:
            c0 = self.next_cell
            c1 = min(last, c0 + max(1, BAND // qy))
            c1 = last if last - c1 == 1 else c1  # never the last, partial cell alone
            ca, cb = max(0, c0 - 1), min(ay.cells, c1 + 1)
            y1 = min(self.h, c1 * qy)
            mask = np.empty((y1 - c0 * qy, self.w), np.uint8)
            band = self.prob[ca * py - self.prob0 : cb * py - self.prob0]
            for k0, k1 in _spans(ax.cells, self.group_w):
                ka, kb = max(0, k0 - 1), min(ax.cells, k1 + 1)
                up = _resize_back(band[:, ka * px : kb * px], ay, ax)
                x1 = min(self.w, k1 * qx)
                y, x = (c0 - ca) * qy, (k0 - ka) * qx
                part = up[y : y + len(mask), x : x + x1 - k0 * qx]
                # resized back a few pixels short of the photo's edge: the last ones repeated
                part = _pad_edge(part, len(mask), x1 - k0 * qx)
                mask[:, k0 * qx : x1] = part >= thr
            mask *= 255
            self.sink.push(mask)
            self.rows_done += len(mask)
            self.next_cell = c1
        # keep one cell of margin above the next cell row
        keep = max(0, (self.next_cell - 1) * py) - self.prob0
        if keep > 0:
            self.prob = self.prob[keep:]
            self.prob0 += keep

    # the network ------------------------------------------------------------------------
    def run(
        self, should_stop: Callable[[], bool], start: float
    ) -> Generator[LargeEvent, None, tuple[int, bool]]:
        """Yields progress; returns (tiles run, cancelled)."""
        seg = self.seg
        cfg = seg.config
        tile, wh, ww = cfg.tile, self.wh, self.ww
        if wh <= tile and ww <= tile:  # one pass over the whole (small) working image
            if should_stop():
                return 0, True
            try:
                probs = seg.probabilities_at_work_scale(self.work_rows(0, wh), should_stop)
            except StonesegError:
                if should_stop():
                    return 0, True
                raise
            self.add_probability(np.ascontiguousarray(probs[0]))
            yield LargeEvent(1, 1, self.rows_done, self.h, time.perf_counter() - start)
            return 1, False
        ph, pw = max(wh, tile), max(ww, tile)
        ys, xs = tile_starts(ph, tile, cfg.overlap), tile_starts(pw, tile, cfg.overlap)
        weight = blend_window(tile, cfg.overlap)
        coords = [(y, x) for y in ys for x in xs]
        n, step = len(coords), cfg.batch_tiles
        work = np.zeros((0, ww, 3), np.uint8)  # working rows [r0, r0 + len)
        acc = np.zeros((seg.classes, 0, pw), np.float32)  # rows [r0, r0 + width)
        norm = np.zeros((0, pw), np.float32)
        r0 = 0
        for i in range(0, n, step):
            if should_stop():
                return i, True
            chunk = coords[i : i + step]
            hi = max(y for y, _ in chunk) + tile
            have = r0 + len(work)
            if min(hi, wh) > have:
                work = np.concatenate([work, self.work_rows(have, min(hi, wh))])
            if hi - r0 > norm.shape[0]:
                grow = hi - r0 - norm.shape[0]
                acc = np.concatenate([acc, np.zeros((seg.classes, grow, pw), np.float32)], 1)
                norm = np.concatenate([norm, np.zeros((grow, pw), np.float32)])
            image = pad_to(work, hi - r0, pw) if (hi - r0 > len(work) or pw > ww) else work
            seg.add_tiles(image, [(y - r0, x) for y, x in chunk], acc, norm, weight)
            del image
            lo = coords[i + step][0] if i + step < n else ph  # rows above it are final
            if lo > r0:
                k = min(lo, wh) - r0
                if k > 0:
                    self.add_probability(acc[0, :k, :ww] / np.maximum(norm[:k, :ww], 1e-6))
                work, acc, norm = work[lo - r0 :], acc[:, lo - r0 :], norm[lo - r0 :]
                r0 = lo
            done = min(i + step, n)
            yield LargeEvent(done, n, self.rows_done, self.h, time.perf_counter() - start)
        return n, False


class _LazyPhoto:
    """The photo of a source as far as a scale estimate looks at it: its shape, and the
    windows it slices (read when sliced), never the whole."""

    def __init__(self, source):
        self.source = source
        self.shape = (*source.shape, 3)

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key
        h, w = self.source.shape
        y0, y1, _ = rows.indices(h)
        x0, x1, _ = cols.indices(w)
        return self.source.read(y0, y1, x0, x1)


def choose_scale(
    segmenter: WindowSegmenter,
    source,
    mm_per_px: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """The working scale for a photo when none is given: the model's own policy
    (``Segmenter.work_scale``: long side, the training photos', a stone size in mm, or the
    network's estimate, which reads only central windows of the photo)."""
    work_scale = getattr(segmenter, "work_scale", None)
    if work_scale is None:  # a Segmenter without scale policies: the long side
        return segmenter.info.work_size / max(source.shape)
    return float(work_scale(_LazyPhoto(source), mm_per_px, should_stop))


def iter_segment_large(
    segmenter: WindowSegmenter,
    src_path: str | Path,
    dst_path: str | Path,
    scale: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    read_side: int = READ_SIDE,
    memory_limit: int | None = None,
    mm_per_px: float | None = None,
) -> Generator[LargeEvent, None, LargeSummary]:
    """Segment the photo at ``src_path`` window by window into ``dst_path``: a tiled 0/255
    TIFF for a ``.tif``/``.tiff`` (with the photo's georeference and CRS, if it has them),
    else a PNG (module docstring).

    ``scale``: working pixels per photo pixel; None: the model's own (``choose_scale``),
    with ``mm_per_px`` (default: from the photo's georeference).
    ``read_side``: the photo windows' side in photo pixels (smaller: less memory, more
    overhead). ``memory_limit``: bytes a photo that cannot be read by windows may take when
    read whole (default: the memory available). Yields ``LargeEvent`` after each batch of
    tiles; ``should_stop`` is asked before each. Returns a ``LargeSummary``; cancelled or
    failed (StonesegError naming the file), nothing is left at ``dst_path`` (an existing
    file there is kept) and no temporary file beside it.
    """
    src, dst = Path(src_path), Path(dst_path)
    start = time.perf_counter()
    stopping = (lambda: False) if should_stop is None else should_stop
    source = open_photo(src, memory_limit)
    try:
        h, w = source.shape
        georef = geo.georeference_or_none(src) if geo.is_tiff(src) else None
        if mm_per_px is None and georef is not None:
            mm_per_px = georef.mm_per_px()[0]
        if scale is None:
            try:
                scale = choose_scale(segmenter, source, mm_per_px, stopping)
            except StonesegError:
                if not stopping():
                    raise
                scale = 1.0  # cancelled during the estimate: nothing to do below
        scale = _check_scale(scale)
        if stopping():
            seconds = time.perf_counter() - start
            return LargeSummary(None, (h, w), scale, 0, seconds, source.windowed, True)
        sink = _TiffSink(dst, h, w, georef) if geo.is_tiff(dst) else _ArraySink(dst, h, w)
        log.info(
            "%s: %d x %d at scale %g, %s", src.name, w, h, scale,
            "read by windows" if source.windowed else "read whole",
        )  # fmt: skip
        try:
            job = _Pass(segmenter, source, scale, sink, max(1, int(read_side)))
            tiles, cancelled = yield from job.run(stopping, start)
            if not cancelled:
                assert job.rows_done == h, (job.rows_done, h)
                sink.finish()
        except BaseException:
            sink.abort()
            raise
        if cancelled:
            sink.abort()
        return LargeSummary(
            output=None if cancelled else dst,
            size=(h, w),
            scale=scale,
            tiles=tiles,
            seconds=time.perf_counter() - start,
            windowed=source.windowed,
            cancelled=cancelled,
        )
    finally:
        source.close()


def segment_large_photo(
    segmenter: WindowSegmenter,
    src_path: str | Path,
    dst_path: str | Path,
    should_stop: Callable[[], bool] | None = None,
    scale: float | None = None,
    on_scale: Callable[[float], None] | None = None,
) -> tuple[str, str]:
    """``iter_segment_large`` run to its end for the folder loops, its progress logged:
    ("written" | "failed" | "cancelled", message). ``on_scale`` is given the working scale
    the photo was segmented at."""
    src = Path(src_path)
    gen = iter_segment_large(segmenter, src, dst_path, scale, should_stop)
    shown = -1
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                summary: LargeSummary = stop.value
                break
            tenth = int(10 * event.fraction)
            if tenth > shown:
                shown = tenth
                log.info(
                    "%s: %d %% (%d of %d tiles, %.0f s)",
                    src.name,
                    100 * event.fraction,
                    event.tiles_done,
                    event.tiles_total,
                    event.seconds,
                )
    except StonesegError as exc:
        return "failed", str(exc)
    except MemoryError:
        return "failed", f"{src.name}: out of memory while segmenting it window by window"
    finally:
        gen.close()
    if summary.cancelled:
        return "cancelled", ""
    if on_scale is not None:
        on_scale(summary.scale)
    return "written", ""
