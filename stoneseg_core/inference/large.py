"""Photos of any size in bounded memory: segmentation window by window (no torch here).

``iter_segment_large`` segments a photo too large to hold at full size -- a drone orthomosaic
of 20000 x 20000 pixels -- by reading it in windows (``io.raster_sources``: a tiled or
striped TIFF through ``geo``'s window reader, an uncompressed one through a memory map;
never whole) and writing the 0/255 mask band by band into a tiled, deflate-compressed TIFF
(BigTIFF past 4 GB) that carries the photo's georeference and CRS, from a writer thread
(``io.tiff_writer``). A ``.png`` output holds the mask whole (1 byte per pixel) and is
written at the end.

The result is the whole-photo result at the same scale (``segment_whole``, which holds every
plane at full size), not an approximation of it:

- Each side's ratio is a fraction p/q, the photo cells of q pixels that become p working
  pixels, so a window on cell edges resizes to exactly the pixels the whole photo's resize
  has there, and back (``exact_resize``, with the figures).
- The network's tiles are those of the whole working image, in the same batches and the same
  order, added into a band of the blending accumulators that rolls down the image: every
  pixel's blend is the same sum (``window_pass``, with the memory it takes: about 0.5 GB
  for a 20000-pixel-wide orthomosaic at scale 1, whatever its height).

A photo that cannot be read by windows (a PNG or JPEG, a TIFF in one compressed strip...)
is read whole when that fits in the memory available, else refused before anything is
written, with a message naming the file and how to save it tiled (``io.raster_sources``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.exact_resize import (
    READ_SIDE,
    check_scale,
    pad_edge,
    resize_to_photo,
    resize_to_work,
    scaled_side,
)
from stoneseg_core.inference.window_pass import WindowPass, WindowSegmenter
from stoneseg_core.io import geo
from stoneseg_core.io.images import describe_os_error, write_mask
from stoneseg_core.io.raster_sources import LazyPhoto, PhotoSource, open_photo, photo_shape
from stoneseg_core.io.tiff_writer import TiledTiffWriter

log = logging.getLogger(__name__)

# photos with more pixels than this go through the windowed path in the folder loops
LARGE_PIXELS = 50_000_000


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


def segment_whole(segmenter: WindowSegmenter, image: np.ndarray, scale: float) -> np.ndarray:
    """The 0/255 mask of ``image`` (uint8 RGB) segmented whole at ``scale``: the same cells,
    resizes and tiles as ``iter_segment_large``, with every plane at full size. For photos
    that fit in memory; the result the windowed path gives too."""
    h, w = image.shape[:2]
    rows, cols = scaled_side(h, scale), scaled_side(w, scale)
    padded_height = rows.cells * rows.q if rows.padded else h
    padded = pad_edge(image, padded_height, cols.cells * cols.q if cols.padded else w)
    work = resize_to_work(padded, rows, cols)
    del padded
    assert work.shape[:2] == (rows.work, cols.work), (work.shape, rows, cols)
    prob = segmenter.probabilities_at_work_scale(work)[0]
    up = pad_edge(resize_to_photo(prob, rows, cols)[:h, :w], h, w)
    mask = (up >= segmenter.config.threshold).view(np.uint8)
    mask *= 255
    return mask


class _WholeMask:
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


def needs_windows(path: str | Path, limit: int | None = None) -> bool:
    """True for a photo of more than ``limit`` pixels (default LARGE_PIXELS): the folder
    loops segment it window by window instead of reading it whole. False when its header
    cannot be read (the reader then names the problem)."""
    try:
        h, w = photo_shape(path)
    except Exception:
        return False
    return h * w > (LARGE_PIXELS if limit is None else limit)


def choose_scale(
    segmenter: WindowSegmenter,
    source: PhotoSource,
    mm_per_px: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """The working scale for a photo when none is given: the model's own policy
    (``Segmenter.work_scale``: long side, the training photos', a stone size in mm, or the
    network's estimate, which reads only central windows of the photo)."""
    work_scale = getattr(segmenter, "work_scale", None)
    if work_scale is None:  # a Segmenter without scale policies: the long side
        return segmenter.info.work_size / max(source.shape)
    return float(work_scale(LazyPhoto(source), mm_per_px, should_stop))


def _working_scale(segmenter, source, scale, mm_per_px, should_stop) -> float:
    """``scale`` checked, or when None the model's own for the photo (``choose_scale``;
    1.0 when cancelled during the estimate: nothing is segmented then)."""
    if scale is None:
        try:
            scale = choose_scale(segmenter, source, mm_per_px, should_stop)
        except StonesegError:
            if not should_stop():
                raise
            scale = 1.0  # cancelled during the estimate: nothing to do below
    return check_scale(scale)


def _events(job: WindowPass, should_stop, start: float):
    """``job.run`` with its progress as ``LargeEvent``\\ s; returns (tiles run, cancelled)."""
    progress = job.run(should_stop)
    while True:
        try:
            done, total = next(progress)
        except StopIteration as stop:
            return stop.value
        yield LargeEvent(done, total, job.rows_done, job.height, time.perf_counter() - start)


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
    if not source.windowed:
        log.info("%s: read whole (%s)", src.name, source.why)
    try:
        h, w = source.shape
        georef = geo.georeference_or_none(src) if geo.is_tiff(src) else None
        if mm_per_px is None and georef is not None:
            mm_per_px = georef.mm_per_px()[0]
        scale = _working_scale(segmenter, source, scale, mm_per_px, stopping)
        if stopping():
            seconds = time.perf_counter() - start
            return LargeSummary(None, (h, w), scale, 0, seconds, source.windowed, True)
        if geo.is_tiff(dst):
            sink = TiledTiffWriter(dst, (h, w), np.uint8, georef=georef)
        else:
            sink = _WholeMask(dst, h, w)
        log.info(
            "%s: %d x %d at scale %g, %s", src.name, w, h, scale,
            "read by windows" if source.windowed else "read whole",
        )  # fmt: skip
        try:
            job = WindowPass(segmenter, source, scale, sink, max(1, int(read_side)))
            tiles, cancelled = yield from _events(job, stopping, start)
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
