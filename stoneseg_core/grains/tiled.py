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

import contextlib
import csv
import json
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from stoneseg_core.errors import MaskError, StonesegError
from stoneseg_core.grains.analyse import GrainOptions, ImageGrains
from stoneseg_core.grains.io import (
    CSV_COLUMNS,
    MAX_INSTANCES_PNG,
    csv_cell,
    csv_row,
    geojson_header,
    stone_feature,
)
from stoneseg_core.grains.measure import (
    PIXEL_MOMENT,
    Stone,
    check_min_size_scale,
    check_mm_per_px,
    exclusion_reasons,
)
from stoneseg_core.grains.outlines import label_polygons
from stoneseg_core.grains.split import split_stones
from stoneseg_core.io.geo import (
    Georeference,
    decode_error_message,
    georeference_or_none,
    is_tiff,
    open_tiff,
    read_tiff_window,
)
from stoneseg_core.io.images import describe_os_error, read_mask
from stoneseg_core.io.staged import StagedFile
from stoneseg_core.io.tiff_writer import TiledTiffWriter, rewrite_tiled_tiff

TILED_ABOVE_PX = 50_000_000  # ``grains`` splits masks larger than this (50 MP) window by window
DEFAULT_WINDOW_PX = 2048
CUT_BY_WINDOW = "cut by a processing window (larger than the margin)"


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


# ------------------------------------------------------------------------------ reading


class _MaskWindows:
    """Windows of a stone mask as booleans: a TIFF decoded tile by tile, an array, or another
    image file (a PNG cannot be read by window) read whole as uint8."""

    def __init__(self, mask, name: str) -> None:
        self.name = name
        self._tif = None
        self._array: np.ndarray | None = None
        if isinstance(mask, (str, Path)):
            path = Path(mask)
            self.path = path
            if is_tiff(path):
                self._tif = open_tiff(path)
                page = self._tif.pages[0]
                separate, depth, length, width, contig = (int(v) for v in page.shaped[-5:])
                if depth != 1:
                    self.close()
                    raise MaskError(f"{path.name}: 3-D (volumetric) TIFFs are not masks.")
                if page.dtype not in (np.uint8, np.bool_):
                    self.close()
                    raise MaskError(
                        f"{path.name} holds {page.dtype} pixels: a mask split by windows must be "
                        "8-bit 0/255 (as stoneseg segment writes it)."
                    )
                self._page = page
                self.shape = (length, width)
                return
            mask = read_mask(path)
        a = np.asarray(mask)
        if a.ndim == 3:
            a = a.max(axis=2)
        if a.ndim != 2:
            raise MaskError(f"A mask must be a 2-D image, got an array of shape {a.shape}.")
        self._array = a
        top = a.max() if a.size else 0
        self._cut = (
            0 if a.dtype == np.bool_ or top <= 1 else (127 if a.dtype == np.uint8 else top / 2)
        )
        self.shape = a.shape

    def read(self, r0: int, c0: int, r1: int, c1: int) -> np.ndarray:
        if self._array is not None:
            return self._array[r0:r1, c0:c1] > self._cut
        try:
            w = read_tiff_window(self._page, self._tif.filehandle, r0, c0, r1 - r0, c1 - c0)
        except StonesegError:
            raise
        except Exception as exc:
            raise StonesegError(decode_error_message(self.path, self._page, exc)) from None
        if w.ndim == 3:
            w = w.max(axis=2)
        if w.dtype == np.bool_:
            return w
        if w.size and w.max() == 1:
            raise MaskError(
                f"{self.path.name} holds 0 and 1: save the mask with 0 and 255 (as stoneseg "
                "segment writes it) to split it by windows."
            )
        return w > 127

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None


# ------------------------------------------------------------------------------ writing


class _StoneTables:
    """The stones' CSV rows and GeoJSON features, written to temporary files beside
    ``csv_path`` and ``geojson_path`` as the windows go (``commit`` moves them into place)."""

    def __init__(self, csv_path: Path, geojson_path: Path, blank: ImageGrains, georef, header):
        self.blank, self.georef = blank, georef
        self._staged: list[StagedFile] = []
        self._files: list = []  # the CSV's, the GeoJSON's
        try:
            self._staged += [StagedFile(csv_path), StagedFile(geojson_path)]
            self._files.append(open(self._staged[0].temporary, "w", newline="", encoding="utf-8"))
            self._files.append(open(self._staged[1].temporary, "w", encoding="utf-8"))
        except BaseException:
            self.discard()
            raise
        self._rows = csv.writer(self._files[0], lineterminator="\n")
        self._rows.writerow(CSV_COLUMNS)
        self._files[1].write(
            "{"
            + "".join(
                f"{json.dumps(k)}: {json.dumps(v, allow_nan=False)}, " for k, v in header.items()
            )
            + '"features": [\n'
        )
        self._first_feature = True

    def add(self, stones: list[Stone], outlines: dict, options: GrainOptions) -> None:
        """A window's stones (``outlines``: their rings by local label 1..k)."""
        for k, s in enumerate(stones, start=1):
            self._rows.writerow([csv_cell(v) for v in csv_row(self.blank, s, options)])
            feature = stone_feature(self.blank, s, outlines[k], options, self.georef)
            self._files[1].write(
                ("" if self._first_feature else ",\n") + json.dumps(feature, allow_nan=False)
            )
            self._first_feature = False

    def close(self) -> None:
        """Every stone added: the GeoJSON's feature list ended, both files closed."""
        self._files[1].write("\n]}\n")
        self._close_files()

    def _close_files(self) -> None:
        for f in self._files:
            f.close()

    def commit(self) -> None:
        for staged in self._staged:
            staged.commit()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._close_files()
        for staged in self._staged:
            staged.discard()


class _AnalysisFiles:
    """The three outputs of a tiled analysis (``paths``: "instances", "csv", "geojson"),
    written beside their places as the windows go and moved into place together by
    ``commit``: the label TIFF streamed as uint32 (``TiledTiffWriter``), the tables."""

    def __init__(self, paths: dict[str, Path], shape, tile: int, georef, blank, header):
        self.paths, self.georef = paths, georef
        self.labels: TiledTiffWriter | None = None
        self.tables = _StoneTables(paths["csv"], paths["geojson"], blank, georef, header)
        try:
            self.labels = TiledTiffWriter(
                paths["instances"], shape, np.uint32, tile=tile, georef=georef
            )
        except BaseException:
            self.tables.discard()
            raise

    def commit(self, top_id: int) -> None:
        """All windows done, ``top_id`` the last stone's: the labels rewritten uint16 when
        every id fits (``MAX_INSTANCES_PNG``), then every file moved into place."""
        self.tables.close()
        self.labels.close()
        if top_id <= MAX_INSTANCES_PNG:
            narrowed = StagedFile(self.paths["instances"])
            try:
                rewrite_tiled_tiff(
                    self.labels.temporary, narrowed.temporary, np.uint16, self.georef
                )
                self.labels.abort()  # the uint32 file is not needed any more
                narrowed.commit()
            except BaseException:
                narrowed.discard()
                raise
        else:
            self.labels.commit()
        self.tables.commit()

    def abort(self) -> None:
        """Cancelled or failed: every temporary file removed, the folder as it was."""
        if self.labels is not None:
            self.labels.abort()
        self.tables.discard()


class _LabelBand:
    """Rows [r0, r0 + len(rows)) of the stone labels, r0 the top of the row of windows being
    split: a core's stones spill below it by at most the widest margin, into the next
    band's rows, so the band's rows are handed to the writer when its windows are done."""

    def __init__(self, grid: _Windows) -> None:
        self.grid = grid
        self.rows = np.zeros(
            (min(grid.window_px + grid.widest, grid.height), grid.width), np.uint32
        )
        self.foreground = np.zeros((0, grid.width), bool)  # the band's mask, for unlabelled_px

    def start(self, r0: int, r1: int) -> None:
        self.foreground = np.zeros((r1 - r0, self.grid.width), bool)

    def paint(self, local: np.ndarray, first_id: int, count: int, core, origin) -> int:
        """Paint a window's ``count`` kept stones (``local``: labels 1..count; they lie right
        of and below the core's corner) with ids from ``first_id``; where a pixel is
        claimed already the first claim stays. Returns the pixels claimed twice."""
        r0, c0 = core[:2]
        er0, ec0 = origin
        ids = np.zeros(count + 1, np.uint32)
        ids[1:] = np.arange(first_id, first_id + count, dtype=np.uint32)
        part = ids[local[r0 - er0 :, c0 - ec0 :]]
        target = self.rows[: part.shape[0], c0 : c0 + part.shape[1]]
        claimed = part > 0
        clash = claimed & (target > 0)
        np.copyto(target, part, where=claimed & ~clash)
        return int(np.count_nonzero(clash))

    def hand_over(self, writer: TiledTiffWriter, r1: int, strip: int) -> int:
        """The band done (its rows end at ``r1``): its rows pushed to ``writer``, ``strip``
        rows at a time (copies: the buffer is reused), the rows below carried into the next
        band's. Returns the band's stone pixels that no stone covers."""
        rows_here = len(self.foreground)
        unlabelled = int(np.count_nonzero(self.foreground & (self.rows[:rows_here] == 0)))
        for s0 in range(0, rows_here, strip):
            writer.push(self.rows[s0 : min(rows_here, s0 + strip)].copy())
        carry = self.rows[rows_here:]
        grid = self.grid
        below = max(0, grid.height - r1)
        self.rows = np.zeros((min(grid.window_px + grid.widest, below), grid.width), np.uint32)
        self.rows[: min(len(carry), len(self.rows))] = carry[: len(self.rows)]
        return unlabelled


# ------------------------------------------------------------------------------ the job


def _tiff_tile(window_px: int) -> int:
    return next(t for t in (256, 128, 64) if window_px % t == 0)


@dataclass(frozen=True)
class _Windows:
    """The cores (``window_px`` square, row of windows by row) over a mask of (height,
    width), each split with ``margin`` around it, widened up to ``widest``."""

    height: int
    width: int
    window_px: int
    margin: int
    widest: int

    @property
    def bands(self) -> int:
        return -(-self.height // self.window_px)

    @property
    def across(self) -> int:
        return -(-self.width // self.window_px)

    @property
    def total(self) -> int:
        return self.bands * self.across

    def band_rows(self, band: int) -> tuple[int, int]:
        r0 = band * self.window_px
        return r0, min(self.height, r0 + self.window_px)

    def core(self, band: int, col: int) -> tuple[int, int, int, int]:
        """(r0, c0, r1, c1) of a core."""
        r0, r1 = self.band_rows(band)
        c0 = col * self.window_px
        return r0, c0, r1, min(self.width, c0 + self.window_px)


def _window_sizes(window_px, margin_px, max_margin_px) -> tuple[int, int, int]:
    """(window, margin, widest margin) in pixels, checked (``iter_grains_tiled``)."""
    window_px = int(window_px)
    if window_px < 64 or window_px % 64:
        raise StonesegError(f"The window must be a multiple of 64 pixels, got {window_px}.")
    margin = window_px // 8 if margin_px is None else int(margin_px)
    if margin < 1:
        raise StonesegError(f"The window margin must be at least 1 pixel, got {margin}.")
    widest = 4 * margin if max_margin_px is None else max(margin, int(max_margin_px))
    return window_px, margin, widest


def _open_mask(mask, name: str, probability, boundary) -> _MaskWindows:
    """The mask's windows, its probability and boundary maps checked to be of its size."""
    source = _MaskWindows(mask, name)
    height, width = source.shape
    for what, m in (("probability", probability), ("boundary", boundary)):
        if m is not None and np.shape(m)[:2] != (height, width):
            source.close()
            raise StonesegError(
                f"The {what} map is {np.shape(m)[1]}x{np.shape(m)[0]} pixels but the mask is "
                f"{width}x{height}: they must come from the same photo."
            )
    return source


@dataclass
class _Job:
    """One mask split and measured window by window: its stones so far (ids 1..len, in
    order) and the counts ``TiledGrains`` reports."""

    source: _MaskWindows
    grid: _Windows
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
        self, files: _AnalysisFiles, should_stop, start: float, strip: int
    ) -> Generator[TiledEvent, None, bool]:
        """Every window, row of windows by row; yields a ``TiledEvent`` after each. Returns
        False when ``should_stop`` ended it."""
        grid = self.grid
        labels = _LabelBand(grid)
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

    def _window(self, core, labels: _LabelBand, files: _AnalysisFiles) -> None:
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
        new = _measure_window(
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
    window_px, margin, widest = _window_sizes(window_px, margin_px, max_margin_px)
    output_dir = Path(output_dir)
    if name is None:
        name = Path(mask).name if isinstance(mask, (str, Path)) else f"{stem}.png"
    if georef is None and isinstance(mask, (str, Path)) and is_tiff(mask):
        georef = georeference_or_none(mask)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, output_dir)) from exc

    source = _open_mask(mask, name, probability, boundary)
    if not options.use_probability:
        probability = boundary = None
    grid = _Windows(*source.shape, window_px, margin, widest)
    job = _Job(source, grid, probability, boundary, options, min_stone_px, mm_per_px)
    tile = _tiff_tile(window_px)
    start = time.perf_counter()
    blank = ImageGrains(name, mm_per_px)  # for the rows' image and scale columns
    paths = {
        "instances": output_dir / f"{stem}_instances.tif",
        "csv": output_dir / f"{stem}_stones.csv",
        "geojson": output_dir / f"{stem}_stones.geojson",
    }
    files: _AnalysisFiles | None = None
    finished = False
    try:
        header = geojson_header(blank, georef, scale_source)
        files = _AnalysisFiles(paths, source.shape, tile, georef, blank, header)
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


def _measure_window(local, cut_flags, origin, first_id, shape, mm_per_px, options, counts):
    """A window's kept stones (``local``: labels 1..k) measured as ``measure_stones`` does, in
    the photo's coordinates: ids, positions, the photo's edge flag and the exclusions."""
    er0, ec0 = origin
    height, width = shape
    k = len(cut_flags)
    out: list[Stone] = []
    if k == 0:
        return out
    boxes = ndi.find_objects(local, max_label=k)
    area, sums, moments, perimeter = _region_sums(local, k, boxes)
    for i in range(k):
        n = int(area[i])
        r0, c0 = boxes[i][0].start, boxes[i][1].start
        mr, mc = sums[i, 0] / n, sums[i, 1] / n  # about the box's corner, as read
        vr = moments[i, 0] / n - mr * mr
        vc = moments[i, 1] / n - mc * mc
        cov = moments[i, 2] / n - mr * mc
        half = math.hypot((vr - vc) / 2.0, cov)
        big, small = (vr + vc) / 2.0 + half, (vr + vc) / 2.0 - half
        a_axis = 4.0 * math.sqrt(max(big, 0.0) + PIXEL_MOMENT)
        b_axis = 4.0 * math.sqrt(max(small, 0.0) + PIXEL_MOMENT)
        per = float(perimeter[i])
        bbox = (r0 + er0, c0 + ec0, boxes[i][0].stop + er0, boxes[i][1].stop + ec0)
        touches = bbox[0] == 0 or bbox[1] == 0 or bbox[2] == height or bbox[3] == width
        reason = exclusion_reasons(
            b_axis,
            touches,
            mm_per_px,
            options.exclude_edge,
            options.min_size_px,
            options.min_size_mm,
        )
        if cut_flags[i]:
            reason = "; ".join(r for r in (CUT_BY_WINDOW, reason) if r)
        out.append(
            Stone(
                label=first_id + i,
                area_px=n,
                equivalent_diameter_px=math.sqrt(4.0 * n / math.pi),
                a_axis_px=a_axis,
                b_axis_px=b_axis,
                perimeter_px=per,
                circularity=min(1.0, 4.0 * math.pi * n / per**2) if per > 0 else 1.0,
                centroid_x=float(mc + c0 + ec0),
                centroid_y=float(mr + r0 + er0),
                bbox=bbox,
                touches_edge=touches,
                mm_per_px=mm_per_px,
                excluded=bool(reason),
                exclusion_reason=reason,
            )
        )
    return out


_ROWS = 512  # rows of a window measured at once, which bounds the temporaries


def _region_sums(local: np.ndarray, k: int, boxes) -> tuple:
    """Per label 1..k of ``local``: pixel count; sums of row and column offsets from the
    label's box corner; sums of their squares and product; Crofton perimeter. Vectorised
    over the window (``regionprops`` costs about a millisecond a stone: minutes for an
    orthomosaic's hundred thousand), the same numbers up to rounding (tests compare them)."""
    corner = np.zeros((k + 1, 2), np.float64)
    corner[1:] = [(b[0].start, b[1].start) for b in boxes]
    area = np.zeros(k + 1, np.float64)
    sums = np.zeros((k + 1, 2), np.float64)
    moments = np.zeros((k + 1, 3), np.float64)
    codes = np.zeros((k + 1) * 16, np.float64)
    padded = np.pad(local, 1)
    h = local.shape[0]
    for top in range(0, h, _ROWS):
        part = local[top : top + _ROWS]
        rows, cols = np.nonzero(part)
        lab = part[rows, cols]
        r = rows + top - corner[lab, 0]
        c = cols - corner[lab, 1]
        area += np.bincount(lab, minlength=k + 1)
        sums[:, 0] += np.bincount(lab, r, k + 1)
        sums[:, 1] += np.bincount(lab, c, k + 1)
        moments[:, 0] += np.bincount(lab, r * r, k + 1)
        moments[:, 1] += np.bincount(lab, c * c, k + 1)
        moments[:, 2] += np.bincount(lab, r * c, k + 1)
        # 2x2 blocks of the padded labels whose lower-right pixel is on padded rows
        # top+1 .. top+len(part) (the last chunk also takes the padding row below)
        stop = top + len(part) + (1 if top + _ROWS >= h else 0)
        q = padded[top : stop + 1]
        a, b, c2, d = q[1:, 1:], q[:-1, 1:], q[1:, :-1], q[:-1, :-1]
        for x, earlier in ((a, ()), (b, (a,)), (c2, (a, b)), (d, (a, b, c2))):
            first = x > 0
            for e in earlier:
                first &= x != e
            lx = x[first]
            code = (
                (a[first] == lx).astype(np.int64)
                + 2 * (b[first] == lx)
                + 4 * (c2[first] == lx)
                + 8 * (d[first] == lx)
            )
            codes += np.bincount(lx.astype(np.int64) * 16 + code, minlength=(k + 1) * 16)
    perimeter = codes.reshape(k + 1, 16) @ _crofton_weights()
    return area[1:], sums[1:], moments[1:], perimeter[1:]


_CROFTON: np.ndarray | None = None


def _block_histogram(image: np.ndarray) -> np.ndarray:
    """How many 2x2 blocks of a padded binary image show each of the 16 configurations."""
    q = np.pad(np.pad(image.astype(np.int64), 1), 1)
    code = q[1:, 1:] + 2 * q[:-1, 1:] + 4 * q[1:, :-1] + 8 * q[:-1, :-1]
    return np.bincount(code.ravel(), minlength=16).astype(np.float64)


def _crofton_weights() -> np.ndarray:
    """The length each 2x2 configuration adds to scikit-image's 4-direction Crofton perimeter
    (what ``measure_stones`` reports), found once from that function itself: it is a sum
    over block configurations, so 40 random images give the 16 weights by least squares."""
    global _CROFTON
    if _CROFTON is None:
        from skimage.measure import perimeter_crofton

        rng = np.random.default_rng(0)
        images = [rng.random((7, 9)) < f for f in np.linspace(0.1, 0.9, 40)]
        hist = np.array([_block_histogram(im) for im in images])
        hist[:, 0] = 0.0  # empty blocks add nothing (and their count depends on the padding)
        lengths = np.array([perimeter_crofton(im, 4) for im in images])
        _CROFTON = np.linalg.lstsq(hist, lengths, rcond=None)[0]
        _CROFTON[0] = 0.0
    return _CROFTON


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
