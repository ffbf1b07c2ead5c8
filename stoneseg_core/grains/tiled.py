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
  that is handed, 256-row strip after strip, to a thread writing a tiled deflate TIFF, so
  the label image is never whole in memory. It is written 32-bit and rewritten 16-bit at
  the end when the ids fit (<= 65535), since the count is known only then.
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
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
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
    geotiff_extratags,
    import_tifffile,
    is_tiff,
    open_tiff,
    read_tiff_window,
)
from stoneseg_core.io.images import describe_os_error, new_file_mode, read_mask

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


class _Staged:
    """A temporary file beside ``path``, moved over it by ``commit`` or removed by ``discard``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        os.chmod(self.tmp, new_file_mode(self.path))
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.tmp.unlink()


class _Abort(Exception):
    pass


def _write_tiled(path: Path, tiles: Iterator[np.ndarray], shape, dtype, tile: int, georef) -> None:
    import_tifffile().imwrite(
        path,
        tiles,
        shape=shape,
        dtype=dtype,
        photometric="minisblack",
        tile=(tile, tile),
        compression="zlib",
        predictor=None,
        extratags=geotiff_extratags(georef),
        metadata=None,
        software="StoneSeg",
        bigtiff=shape[0] * shape[1] * np.dtype(dtype).itemsize > 2**32 - 2**25,
    )


class _StripWriter:
    """A thread writing a uint32 tiled TIFF from strips of ``tile`` rows, in order."""

    def __init__(self, path: Path, shape: tuple[int, int], tile: int, georef) -> None:
        self.shape, self.tile = shape, tile
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path, georef), name="stoneseg-tiff-writer", daemon=True
        )
        self._thread.start()

    def _tiles(self) -> Iterator[np.ndarray]:
        while True:
            strip = self._queue.get()
            if strip is None:
                return
            if isinstance(strip, _Abort):
                raise strip
            for c in range(0, self.shape[1], self.tile):
                yield strip[:, c : c + self.tile]

    def _run(self, path: Path, georef) -> None:
        try:
            _write_tiled(path, self._tiles(), self.shape, np.uint32, self.tile, georef)
        except BaseException as exc:  # handed to the generator, which raises it
            self.error = exc

    def put(self, item) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise StonesegError("The label TIFF writer stopped.") from self.error

    def finish(self) -> None:
        self.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_Abort())
        self._thread.join()


def _rewrite_uint16(src: Path, dst: Path, shape, tile: int, georef) -> None:
    """The uint32 label TIFF ``src`` again as uint16 (every id fits), tile by tile."""
    with import_tifffile().TiffFile(src) as tif:
        page = tif.pages[0]
        empty = np.zeros((tile, tile), np.uint16)
        tiles = (
            empty if seg is None else seg.reshape(seg.shape[-3], seg.shape[-2]).astype(np.uint16)
            for seg, _, _ in page.segments()
        )
        _write_tiled(dst, tiles, shape, np.uint16, tile, georef)


# ------------------------------------------------------------------------------ the job


def _tiff_tile(window_px: int) -> int:
    return next(t for t in (256, 128, 64) if window_px % t == 0)


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
    window_px = int(window_px)
    if window_px < 64 or window_px % 64:
        raise StonesegError(f"The window must be a multiple of 64 pixels, got {window_px}.")
    margin = window_px // 8 if margin_px is None else int(margin_px)
    if margin < 1:
        raise StonesegError(f"The window margin must be at least 1 pixel, got {margin}.")
    widest = 4 * margin if max_margin_px is None else max(margin, int(max_margin_px))
    output_dir = Path(output_dir)
    if name is None:
        name = Path(mask).name if isinstance(mask, (str, Path)) else f"{stem}.png"
    if georef is None and isinstance(mask, (str, Path)) and is_tiff(mask):
        georef = georeference_or_none(mask)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, output_dir)) from exc

    source = _MaskWindows(mask, name)
    height, width = source.shape
    for what, m in (("probability", probability), ("boundary", boundary)):
        if m is not None and np.shape(m)[:2] != (height, width):
            source.close()
            raise StonesegError(
                f"The {what} map is {np.shape(m)[1]}x{np.shape(m)[0]} pixels but the mask is "
                f"{width}x{height}: they must come from the same photo."
            )
    if not options.use_probability:
        probability = boundary = None
    tile = _tiff_tile(window_px)
    bands = -(-height // window_px)
    across = -(-width // window_px)
    total = bands * across
    start = time.perf_counter()
    blank = ImageGrains(name, mm_per_px)  # for the rows' image and scale columns

    paths = {
        "instances": output_dir / f"{stem}_instances.tif",
        "csv": output_dir / f"{stem}_stones.csv",
        "geojson": output_dir / f"{stem}_stones.geojson",
    }
    staged: dict[str, _Staged] = {}
    writer: _StripWriter | None = None
    finished = False
    stones: list[Stone] = []
    counts = {"widened": 0, "cut": 0, "overlap": 0, "unlabelled": 0}
    try:
        try:
            for key, path in paths.items():
                staged[key] = _Staged(path)
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, output_dir)) from exc
        writer = _StripWriter(staged["instances"].tmp, (height, width), tile, georef)
        with (
            open(staged["csv"].tmp, "w", newline="", encoding="utf-8") as csv_file,
            open(staged["geojson"].tmp, "w", encoding="utf-8") as geo_file,
        ):
            rows = csv.writer(csv_file, lineterminator="\n")
            rows.writerow(CSV_COLUMNS)
            header = geojson_header(blank, georef, scale_source)
            geo_file.write(
                "{"
                + "".join(
                    f"{json.dumps(k)}: {json.dumps(v, allow_nan=False)}, "
                    for k, v in header.items()
                )
                + '"features": [\n'
            )
            first_feature = True
            done = 0
            next_id = 1
            # rows [band_r0, band_r0 + len(buffer)) of the labels; stones spill below a
            # core by at most the widest margin, into the next band's rows
            buffer = np.zeros((min(window_px + widest, height), width), np.uint32)
            for band in range(bands):
                r0 = band * window_px
                r1 = min(height, r0 + window_px)
                band_fg = np.zeros((r1 - r0, width), bool)
                for col in range(across):
                    if should_stop is not None and should_stop():
                        return _cancelled(blank, height, width, window_px, margin, total, start)
                    c0 = col * window_px
                    c1 = min(width, c0 + window_px)
                    kept, local, (er0, ec0), fg = _split_window(
                        source,
                        probability,
                        boundary,
                        options,
                        min_stone_px,
                        (r0, c0, r1, c1),
                        margin,
                        widest,
                        counts,
                    )
                    band_fg[:, c0:c1] = fg[r0 - er0 : r1 - er0, c0 - ec0 : c1 - ec0]
                    new = _measure_window(
                        local,
                        kept,
                        (er0, ec0),
                        next_id,
                        (height, width),
                        mm_per_px,
                        options,
                        counts,
                    )
                    # paint the kept stones (they lie right of and below the core's corner)
                    ids = np.zeros(len(kept) + 1, np.uint32)
                    ids[1:] = np.arange(next_id, next_id + len(kept), dtype=np.uint32)
                    part = ids[local[r0 - er0 :, c0 - ec0 :]]
                    target = buffer[: part.shape[0], c0 : c0 + part.shape[1]]
                    claimed = part > 0
                    clash = claimed & (target > 0)
                    counts["overlap"] += int(np.count_nonzero(clash))
                    np.copyto(target, part, where=claimed & ~clash)
                    outlines = label_polygons(local, offset=(er0, ec0))
                    for k, s in enumerate(new, start=1):
                        rows.writerow([csv_cell(v) for v in csv_row(blank, s, options)])
                        feature = stone_feature(blank, s, outlines[k], options, georef)
                        geo_file.write(
                            ("" if first_feature else ",\n") + json.dumps(feature, allow_nan=False)
                        )
                        first_feature = False
                    stones.extend(new)
                    next_id += len(kept)
                    done += 1
                    yield TiledEvent(done, total, len(stones), time.perf_counter() - start)
                rows_here = r1 - r0
                counts["unlabelled"] += int(np.count_nonzero(band_fg & (buffer[:rows_here] == 0)))
                for s0 in range(0, rows_here, tile):
                    writer.put(buffer[s0 : min(rows_here, s0 + tile)].copy())
                # the rows below this band (spilled stones) become the next band's first rows
                carry = buffer[rows_here:]
                buffer = np.zeros((min(window_px + widest, max(0, height - r1)), width), np.uint32)
                buffer[: min(len(carry), len(buffer))] = carry[: len(buffer)]
            geo_file.write("\n]}\n")
        writer.finish()
        top = next_id - 1
        if top <= MAX_INSTANCES_PNG:
            small = _Staged(paths["instances"])
            try:
                _rewrite_uint16(staged["instances"].tmp, small.tmp, (height, width), tile, georef)
            except BaseException:
                small.discard()
                raise
            staged["instances"].discard()
            staged["instances"] = small
        for key in ("instances", "csv", "geojson"):
            staged[key].commit()
        finished = True
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, output_dir)) from exc
    finally:
        source.close()
        if writer is not None and not finished:
            writer.abort()
        if not finished:
            for s in staged.values():
                s.discard()
    return TiledGrains(
        grains=ImageGrains(name, mm_per_px, tuple(stones)),
        shape=(height, width),
        window_px=window_px,
        margin_px=margin,
        windows=total,
        instances_path=paths["instances"],
        csv_path=paths["csv"],
        geojson_path=paths["geojson"],
        label_dtype="uint16" if top <= MAX_INSTANCES_PNG else "uint32",
        widened_windows=counts["widened"],
        cut_stones=counts["cut"],
        overlap_px=counts["overlap"],
        unlabelled_px=counts["unlabelled"],
        seconds=time.perf_counter() - start,
    )


def _cancelled(blank, height, width, window_px, margin, total, start) -> TiledGrains:
    return TiledGrains(
        grains=blank,
        shape=(height, width),
        window_px=window_px,
        margin_px=margin,
        windows=total,
        seconds=time.perf_counter() - start,
        cancelled=True,
    )


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
