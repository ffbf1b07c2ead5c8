"""Grains of a mask too big to split at once: split and measure it window by window.

Splitting a 20000 x 20000 mask whole needs its int32 labels, float distance transform,
markers and watershed buffers together, about 60 bytes a pixel (24 GB). Here the mask is cut
into square *cores* (``window_px``, a multiple of 64) and each core is split with a *margin*
of mask around it (the extended window), by the same ``split_stones`` as a whole photo:

- **Ownership**: a stone is kept only by the window whose core holds the top-left corner of
  its bounding box: that point lies in exactly one core, so a stone cut by a core border
  is counted once, whole, with its full size.
- **Cut stones are dropped**: a stone touching the extended window's edge (where that edge
  is not the photo's) is cut by the window; when its corner lies in another core it is
  whole in that window. When its corner lies in this core it is larger than the margin:
  the window is split again with the margin doubled, up to ``max_margin_px``; a stone still
  cut then is kept, flagged excluded ("cut by a processing window"), and counted.
- **Stitching**: stones get global ids window after window (row of windows by row, left to
  right; in reading order inside a window), their pixels are written into a band of rows
  that is handed, 256-row strip after strip, to a thread writing a tiled deflate TIFF
  (``io.tiff_writer``), so the label image is never whole in memory. It is written 32-bit
  and rewritten 16-bit at the end when the ids fit (<= 65535), since the count is known
  only then.
- **Measurements** are ``measure_stones``'s (the same fields and formulas, computed for all
  of a window's stones at once: ``regionprops`` costs about a millisecond a stone), in the
  photo's coordinates; the edge flag and the exclusions are the photo's. CSV rows and
  GeoJSON outlines (the photo's CRS when georeferenced) are written as the windows go.

The result equals the whole-mask split where the watershed sees the same landscape: for
stones apart from each other, always (a test checks it); in packed gravel the split of
touching stones near a window's edge can differ (the distance transform and the merging
of pieces see only the window), which ``TiledGrains.overlap_px`` and ``unlabelled_px``
betray and tests/benchmarks/bench_grains_tiled.py counts. The margin should exceed the
largest stone; with about twice that, kept stones see all the context they need.

Everything is written to temporary files beside the outputs and moved into place at the
end, so a cancelled or failed run leaves the folder as it was. No torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.analyse import GrainOptions, ImageGrains
from stoneseg_core.grains.io import MAX_INSTANCES_PNG, geojson_header
from stoneseg_core.grains.measure import Stone, check_min_size_scale, check_mm_per_px
from stoneseg_core.grains.outlines import label_polygons
from stoneseg_core.grains.split import split_stones
from stoneseg_core.grains.tiled_measure import measure_window
from stoneseg_core.grains.tiled_outputs import AnalysisFiles
from stoneseg_core.grains.tiled_windows import (
    LabelBand,
    MaskWindows,
    WindowGrid,
    open_mask,
    window_sizes,
)
from stoneseg_core.io.geo import Georeference, georeference_or_none, is_tiff
from stoneseg_core.io.images import describe_os_error

TILED_ABOVE_PX = 50_000_000  # ``grains`` splits masks larger than this (50 MP) window by window
DEFAULT_WINDOW_PX = 2048


@dataclass(frozen=True)
class TiledEvent:
    """Progress of ``iter_grains_tiled``: ``window`` of ``windows`` done."""

    window: int
    windows: int
    stones: int  # stones kept so far
    seconds: float


@dataclass(frozen=True)
class TiledGrains:
    """What ``iter_grains_tiled`` measured and wrote (no paths when ``cancelled``)."""

    grains: ImageGrains
    shape: tuple[int, int]  # (height, width)
    window_px: int
    margin_px: int
    windows: int
    instances_path: Path | None = None
    csv_path: Path | None = None
    geojson_path: Path | None = None
    label_dtype: str = ""  # "uint16" or "uint32"
    widened_windows: int = 0  # windows split again with a wider margin (a stone was cut)
    cut_stones: int = 0  # stones larger than the widest margin: kept, flagged excluded
    overlap_px: int = 0  # pixels two windows' stones both claimed (the first one kept them)
    unlabelled_px: int = 0  # stone pixels no window's stones covered (whole split: 0)
    seconds: float = 0.0
    cancelled: bool = False


# ------------------------------------------------------------------------------ the job


def _tiff_tile(window_px: int) -> int:
    return next(t for t in (256, 128, 64) if window_px % t == 0)


@dataclass
class _Job:
    """One mask split and measured window by window: its stones so far (ids 1..len, in
    order) and the counts ``TiledGrains`` reports."""

    source: MaskWindows
    grid: WindowGrid
    probability: np.ndarray | None
    boundary: np.ndarray | None
    options: GrainOptions
    min_stone_px: float
    mm_per_px: float | None
    stones: list[Stone] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {"widened": 0, "cut": 0, "overlap": 0, "unlabelled": 0}
    )

    def run(
        self, files: AnalysisFiles, should_stop, start: float, strip: int
    ) -> Generator[TiledEvent, None, bool]:
        """Every window, row of windows by row; yields a ``TiledEvent`` after each. Returns
        False when ``should_stop`` ended it."""
        grid = self.grid
        labels = LabelBand(grid)
        done = 0
        for band in range(grid.bands):
            r0, r1 = grid.band_rows(band)
            labels.start(r0, r1)
            for col in range(grid.across):
                if should_stop is not None and should_stop():
                    return False
                self._window(grid.core(band, col), labels, files)
                done += 1
                yield TiledEvent(done, grid.total, len(self.stones), time.perf_counter() - start)
            self.counts["unlabelled"] += labels.hand_over(files.labels, r1, strip)
        return True

    def _window(self, core, labels: LabelBand, files: AnalysisFiles) -> None:
        """One core split, its kept stones measured, painted and written to the tables."""
        r0, c0, r1, c1 = core
        grid, options, counts = self.grid, self.options, self.counts
        cut_flags, local, origin, fg = _split_window(
            self.source,
            self.probability,
            self.boundary,
            options,
            self.min_stone_px,
            core,
            grid.margin,
            grid.widest,
            counts,
        )
        er0, ec0 = origin
        labels.foreground[:, c0:c1] = fg[r0 - er0 : r1 - er0, c0 - ec0 : c1 - ec0]
        first_id = len(self.stones) + 1
        shape = (grid.height, grid.width)
        new = measure_window(
            local, cut_flags, origin, first_id, shape, self.mm_per_px, options, counts
        )
        counts["overlap"] += labels.paint(local, first_id, len(cut_flags), core, origin)
        files.tables.add(new, label_polygons(local, offset=origin), options)
        self.stones.extend(new)

    def result(self, name: str, paths: dict[str, Path], start: float) -> TiledGrains:
        """What was measured and written (``paths``: the files)."""
        grid, counts = self.grid, self.counts
        return TiledGrains(
            grains=ImageGrains(name, self.mm_per_px, tuple(self.stones)),
            shape=(grid.height, grid.width),
            window_px=grid.window_px,
            margin_px=grid.margin,
            windows=grid.total,
            instances_path=paths["instances"],
            csv_path=paths["csv"],
            geojson_path=paths["geojson"],
            label_dtype="uint16" if len(self.stones) <= MAX_INSTANCES_PNG else "uint32",
            widened_windows=counts["widened"],
            cut_stones=counts["cut"],
            overlap_px=counts["overlap"],
            unlabelled_px=counts["unlabelled"],
            seconds=time.perf_counter() - start,
        )

    def cancelled(self, name: str, start: float) -> TiledGrains:
        """Stopped before the end: nothing written, no stones."""
        grid = self.grid
        return TiledGrains(
            grains=ImageGrains(name, self.mm_per_px),
            shape=(grid.height, grid.width),
            window_px=grid.window_px,
            margin_px=grid.margin,
            windows=grid.total,
            seconds=time.perf_counter() - start,
            cancelled=True,
        )


def iter_grains_tiled(
    mask,
    output_dir: str | Path,
    stem: str,
    *,
    probability: np.ndarray | None = None,
    boundary: np.ndarray | None = None,
    mm_per_px: float | None = None,
    options: GrainOptions | None = None,
    georef: Georeference | None = None,
    scale_source: str | None = None,
    name: str | None = None,
    window_px: int = DEFAULT_WINDOW_PX,
    margin_px: int | None = None,
    max_margin_px: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    min_stone_px: float = 0.0,
) -> Generator[TiledEvent, None, TiledGrains]:
    """Split and measure a big stone mask window by window; write ``<stem>_instances.tif``,
    ``<stem>_stones.csv`` and ``<stem>_stones.geojson`` in ``output_dir``.

    ``mask``: a TIFF path (read tile by tile: a tiled GeoTIFF mask as ``geo.write_geotiff_mask``
    writes it), another image path (read whole, 1 byte a pixel) or a 2-D array.
    ``probability``/``boundary``: the model's maps (arrays of the mask's size), used as the
    whole-photo split uses them; ``min_stone_px`` the speck floor of a predicted mask
    (``split_stones``). ``georef``: coordinates of the GeoJSON and tags of the
    label TIFF; None takes the mask file's own when it is a GeoTIFF. ``margin_px`` (default
    ``window_px // 8``) should exceed the largest stone; a window holding a larger stone
    is split again with the margin doubled, up to ``max_margin_px`` (default 4 x margin).
    Yields a ``TiledEvent`` per window; ``should_stop`` ends it at the next window,
    writing nothing (returns ``cancelled=True``). Peak memory is about 60 bytes a pixel of
    one extended window plus 4 bytes a pixel of a band of rows, whatever the mask's size.
    """
    options = options or GrainOptions()
    check_mm_per_px(mm_per_px)
    check_min_size_scale(mm_per_px, options.min_size_mm)
    window_px, margin, widest = window_sizes(window_px, margin_px, max_margin_px)
    output_dir = Path(output_dir)
    if name is None:
        name = Path(mask).name if isinstance(mask, (str, Path)) else f"{stem}.png"
    if georef is None and isinstance(mask, (str, Path)) and is_tiff(mask):
        georef = georeference_or_none(mask)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, output_dir)) from exc

    source = open_mask(mask, name, probability, boundary)
    if not options.use_probability:
        probability = boundary = None
    grid = WindowGrid(*source.shape, window_px, margin, widest)
    job = _Job(source, grid, probability, boundary, options, min_stone_px, mm_per_px)
    tile = _tiff_tile(window_px)
    start = time.perf_counter()
    blank = ImageGrains(name, mm_per_px)  # for the rows' image and scale columns
    paths = {
        "instances": output_dir / f"{stem}_instances.tif",
        "csv": output_dir / f"{stem}_stones.csv",
        "geojson": output_dir / f"{stem}_stones.geojson",
    }
    files: AnalysisFiles | None = None
    finished = False
    try:
        header = geojson_header(blank, georef, scale_source)
        files = AnalysisFiles(paths, source.shape, tile, georef, blank, header)
        if not (yield from job.run(files, should_stop, start, tile)):
            return job.cancelled(name, start)
        files.commit(len(job.stones))
        finished = True
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, output_dir)) from exc
    finally:
        source.close()
        if files is not None and not finished:
            files.abort()
    return job.result(name, paths, start)


def _split_window(
    source, probability, boundary, options, min_stone_px, core, margin, widest, counts
):
    """Split one core with its margin: (kept local labels, local labels renumbered 1..k for
    the kept stones and 0 elsewhere, the extended window's top-left, its foreground)."""
    r0, c0, r1, c1 = core
    height, width = source.shape
    while True:
        er0, ec0 = max(0, r0 - margin), max(0, c0 - margin)
        er1, ec1 = min(height, r1 + margin), min(width, c1 + margin)
        fg = source.read(er0, ec0, er1, ec1)
        window = (slice(er0, er1), slice(ec0, ec1))
        labels = split_stones(
            fg,
            None if probability is None else probability[window],
            options.min_separation_px,
            options.neck_ratio,
            boundary=None if boundary is None else boundary[window],
            min_stone_px=min_stone_px,
        )
        n = int(labels.max())
        box = np.zeros((n + 1, 4), np.int64)
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is not None:
                box[i] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        box = box[1:]
        h, w = er1 - er0, ec1 - ec0
        cut = (
            ((box[:, 0] == 0) & (er0 > 0))
            | ((box[:, 1] == 0) & (ec0 > 0))
            | ((box[:, 2] == h) & (er1 < height))
            | ((box[:, 3] == w) & (ec1 < width))
        )
        owned = (
            (box[:, 0] + er0 >= r0)
            & (box[:, 0] + er0 < r1)
            & (box[:, 1] + ec0 >= c0)
            & (box[:, 1] + ec0 < c1)
        )
        if (owned & cut).any() and margin < widest:
            margin = min(widest, 2 * margin)
            counts["widened"] += 1
            continue
        kept_mask = owned & ~cut
        too_big = owned & cut  # larger than the widest margin: kept, flagged
        keep = kept_mask | too_big
        kept = np.flatnonzero(keep) + 1  # labels in reading order, as split_stones numbers them
        lut = np.zeros(n + 1, np.int32)
        lut[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
        cut_flags = too_big[kept - 1]
        counts["cut"] += int(np.count_nonzero(cut_flags))
        return cut_flags, lut[labels], (er0, ec0), fg


def grains_tiled(*args, **kwargs) -> TiledGrains:
    """``iter_grains_tiled`` run to its end, for callers that show no progress."""
    gen = iter_grains_tiled(*args, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def is_big(shape: tuple[int, ...]) -> bool:
    """Whether a mask of this (height, width) is split window by window by ``grains``."""
    return math.prod(int(v) for v in shape[:2]) > TILED_ABOVE_PX
