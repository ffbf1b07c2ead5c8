"""One photo segmented window by window: photo cells -> working band -> the network's tiles
-> probability band -> mask rows (no torch; ``large.iter_segment_large`` runs it).

- Photo windows on cell edges are read and resized to the working scale exactly as the
  whole photo's resize would give them (``exact_resize``).
- The network's tiles are those of the whole working image, in the same batches and the
  same order, added into a band of the blending accumulators that rolls down the image
  (``_RollingBand``): every pixel's blend is the same sum. (On a GPU the whole-photo pass
  blends on the device; the windowed one on the CPU, so the two agree to float rounding
  rather than bit for bit.)
- The probability rows that are final go back to the photo's size cell row by cell row and
  are handed, thresholded to 0/255, to a sink (``push``) in bands of about ``BAND`` rows.

Memory, beside the model: a band of the working image one tile (and a batch) high and its
accumulators (4 + 4 x channels bytes per working pixel), one window of the photo
(``read_side``\\ :sup:`2` x 3 bytes) and a band of 256 mask rows: about 0.5 GB for a
20000-pixel-wide orthomosaic at scale 1, whatever its height.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Protocol

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.exact_resize import (
    pad_edge,
    resize_to_photo,
    resize_to_work,
    scaled_side,
)
from stoneseg_core.inference.tiling import blend_window, pad_to, tile_starts
from stoneseg_core.io import geo
from stoneseg_core.io.raster_sources import PhotoSource
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.info import ModelInfo

BAND = geo.TILE  # mask rows per band handed to the sink: one row of the output's tiles


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


class MaskSink(Protocol):
    """Where the mask rows go, top to bottom (a ``TiledTiffWriter``, or a mask held whole)."""

    def push(self, rows: np.ndarray) -> None: ...


def cell_spans(n: int, step: int) -> list[tuple[int, int]]:
    """[k0, k1) spans of ``step`` covering range(n), a last span of one merged into the one
    before (so the last, partial cell of a side never comes alone)."""
    spans = [(k, min(n, k + step)) for k in range(0, n, step)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
        spans[-2:] = [(spans[-2][0], n)]
    return spans


class _RollingBand:
    """Rows [top, top + len) of the working image (``image``) and of the blending
    accumulators (``acc``, ``norm``: as wide as the padded working image), rolling down it
    as the batches of tiles go."""

    def __init__(self, classes: int, work_width: int, padded_width: int):
        self.top = 0
        self.image = np.zeros((0, work_width, 3), np.uint8)
        self.acc = np.zeros((classes, 0, padded_width), np.float32)
        self.norm = np.zeros((0, padded_width), np.float32)

    def grow(self, bottom: int, read_rows: Callable[[int, int], np.ndarray], work_height: int):
        """Reach down to working row ``bottom`` (the batch's tiles' bottom): the image rows
        read (``read_rows``, up to ``work_height``), the accumulators grown."""
        loaded = self.top + len(self.image)
        if min(bottom, work_height) > loaded:
            rows = read_rows(loaded, min(bottom, work_height))
            self.image = np.concatenate([self.image, rows])
        grow = bottom - self.top - self.norm.shape[0]
        if grow > 0:
            classes, _, width = self.acc.shape
            self.acc = np.concatenate([self.acc, np.zeros((classes, grow, width), np.float32)], 1)
            self.norm = np.concatenate([self.norm, np.zeros((grow, width), np.float32)])

    def release(self, final: int, work_height: int, work_width: int) -> np.ndarray | None:
        """Rows above working row ``final`` are final: their probability (None if none
        inside the image), dropped from the band."""
        rows = min(final, work_height) - self.top
        prob = None
        if rows > 0:
            acc, norm = self.acc[0, :rows, :work_width], self.norm[:rows, :work_width]
            prob = acc / np.maximum(norm, 1e-6)
        drop = final - self.top
        self.image, self.acc, self.norm = self.image[drop:], self.acc[:, drop:], self.norm[drop:]
        self.top = final
        return prob


class WindowPass:
    """One photo, window by window (module docstring): ``run`` it, the mask rows go to
    ``sink``. ``read_side``: the photo windows' side in photo pixels."""

    def __init__(
        self,
        segmenter: WindowSegmenter,
        source: PhotoSource,
        scale: float,
        sink: MaskSink,
        read_side: int,
    ):
        self.segmenter, self.source, self.sink = segmenter, source, sink
        self.height, self.width = source.shape
        # the photo's height and width at the working scale
        self.rows = rows = scaled_side(self.height, scale)
        self.cols = cols = scaled_side(self.width, scale)
        self.work_height, self.work_width = rows.work, cols.work  # the working image
        # cells per window side: read_side pixels, photo or working, whichever is larger
        self.window_cell_rows = max(1, read_side // max(rows.p, rows.q))
        self.window_cell_cols = max(1, read_side // max(cols.p, cols.q))
        # a striped TIFF decodes whole strips: its windows span its width, fewer rows
        if getattr(source, "strips", False):
            self.window_cell_cols = cols.cells
            pixels = read_side * read_side // max(1, self.width, self.work_width)
            self.window_cell_rows = max(
                1, min(self.window_cell_rows, pixels // max(rows.p, rows.q))
            )
        # enlarging is bilinear, which needs a cell of margin around a window
        self.enlarging = rows.p > rows.q or cols.p > cols.q
        # the probability band: working rows [probability_top, probability_top + len)
        self.probability = np.zeros((0, self.work_width), np.float32)
        self.probability_top = 0
        self.next_cell_row = 0  # the first photo cell row whose mask is not written yet
        self.rows_done = 0  # mask rows handed to the sink

    # photo -> working scale ------------------------------------------------------------
    def _read_cells(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Photo cells rows [top, bottom) x columns [left, right), padded past the photo's
        edge where the photo is padded to whole cells."""
        rows, cols = self.rows, self.cols
        y0, y1, x0, x1 = top * rows.q, bottom * rows.q, left * cols.q, right * cols.q
        y2, x2 = min(y1, self.height), min(x1, self.width)
        window = self.source.read(y0, y2, x0, x2)
        return pad_edge(window, (y1 if rows.padded else y2) - y0, (x1 if cols.padded else x2) - x0)

    def work_rows(self, top: int, bottom: int) -> np.ndarray:
        """Rows [top, bottom) of the working image (uint8, (bottom - top, W, 3)), read
        window by window."""
        rows = self.rows
        out = np.empty((bottom - top, self.work_width, 3), np.uint8)
        last_cell = -(-bottom // rows.p)
        for cell_top in range(top // rows.p, last_cell, self.window_cell_rows):
            cell_bottom = min(last_cell, cell_top + self.window_cell_rows)
            self._work_cell_rows(cell_top, cell_bottom, out, top, bottom)
        return out

    def _work_cell_rows(self, cell_top, cell_bottom, out, top, bottom) -> None:
        """The working rows of cell rows [cell_top, cell_bottom) that lie in [top, bottom),
        into ``out`` (whose first row is ``top``), window after window across."""
        rows, cols = self.rows, self.cols
        margin = 1 if self.enlarging else 0  # cells read around each window
        read_top = max(0, cell_top - margin)
        read_bottom = min(rows.cells, cell_bottom + margin)
        r0, r1 = max(top, cell_top * rows.p), min(bottom, cell_bottom * rows.p)
        y0, y1 = r0 - read_top * rows.p, r1 - read_top * rows.p  # in the resized window
        for left in range(0, cols.cells, self.window_cell_cols):
            right = min(cols.cells, left + self.window_cell_cols)
            read_left, read_right = max(0, left - margin), min(cols.cells, right + margin)
            cells = self._read_cells(read_top, read_bottom, read_left, read_right)
            work = resize_to_work(cells, rows, cols)
            x0, x1 = (left - read_left) * cols.p, (right - read_left) * cols.p
            out[r0 - top : r1 - top, left * cols.p : right * cols.p] = work[y0:y1, x0:x1]

    # probability -> mask ---------------------------------------------------------------
    def add_probability(self, prob_rows: np.ndarray) -> None:
        """The next final rows of the working-scale probability; hands the sink the mask
        rows that they complete."""
        if len(self.probability):
            self.probability = np.concatenate([self.probability, prob_rows])
        else:
            self.probability = prob_rows
        rows = self.rows
        end = self.probability_top + len(self.probability)
        # cell rows whose probability (and one cell below, for bilinear) is all here
        last = rows.cells if end >= self.work_height else end // rows.p - 1
        while self.next_cell_row < last:
            top = self.next_cell_row
            bottom = min(last, top + max(1, BAND // rows.q))
            bottom = last if last - bottom == 1 else bottom  # never the last, partial cell alone
            mask = self._mask_rows(top, bottom)
            self.sink.push(mask)
            self.rows_done += len(mask)
            self.next_cell_row = bottom
        # keep one cell of margin above the next cell row
        keep = max(0, (self.next_cell_row - 1) * rows.p) - self.probability_top
        if keep > 0:
            self.probability = self.probability[keep:]
            self.probability_top += keep

    def _mask_rows(self, top: int, bottom: int) -> np.ndarray:
        """The 0/255 mask of photo cell rows [top, bottom), from the probability band
        resized back with a cell of margin, window after window across."""
        rows, cols = self.rows, self.cols
        read_top, read_bottom = max(0, top - 1), min(rows.cells, bottom + 1)
        y1 = min(self.height, bottom * rows.q)
        mask = np.empty((y1 - top * rows.q, self.width), np.uint8)
        start = self.probability_top
        band = self.probability[read_top * rows.p - start : read_bottom * rows.p - start]
        threshold = self.segmenter.config.threshold
        for left, right in cell_spans(cols.cells, self.window_cell_cols):
            read_left, read_right = max(0, left - 1), min(cols.cells, right + 1)
            up = resize_to_photo(band[:, read_left * cols.p : read_right * cols.p], rows, cols)
            x1 = min(self.width, right * cols.q)
            y, x = (top - read_top) * rows.q, (left - read_left) * cols.q
            part = up[y : y + len(mask), x : x + x1 - left * cols.q]
            # resized back a few pixels short of the photo's edge: the last ones repeated
            part = pad_edge(part, len(mask), x1 - left * cols.q)
            mask[:, left * cols.q : x1] = part >= threshold
        mask *= 255
        return mask

    # the network ------------------------------------------------------------------------
    def run(
        self, should_stop: Callable[[], bool]
    ) -> Generator[tuple[int, int], None, tuple[int, bool]]:
        """Yields (tiles done, tiles in all) after each batch of the network's tiles;
        returns (tiles run, cancelled). ``should_stop`` is asked before each batch."""
        tile = self.segmenter.config.tile
        if self.work_height <= tile and self.work_width <= tile:
            return (yield from self._run_whole(should_stop))
        return (yield from self._run_tiles(should_stop))

    def _run_whole(self, should_stop) -> Generator[tuple[int, int], None, tuple[int, bool]]:
        """One pass over the whole (small) working image."""
        if should_stop():
            return 0, True
        try:
            probs = self.segmenter.probabilities_at_work_scale(
                self.work_rows(0, self.work_height), should_stop
            )
        except StonesegError:
            if should_stop():
                return 0, True
            raise
        self.add_probability(np.ascontiguousarray(probs[0]))
        yield 1, 1
        return 1, False

    def _run_tiles(self, should_stop) -> Generator[tuple[int, int], None, tuple[int, bool]]:
        """The whole working image's tiles, batch by batch, blended in a rolling band."""
        seg, cfg = self.segmenter, self.segmenter.config
        tile, work_height, work_width = cfg.tile, self.work_height, self.work_width
        padded_height, padded_width = max(work_height, tile), max(work_width, tile)
        ys = tile_starts(padded_height, tile, cfg.overlap)
        xs = tile_starts(padded_width, tile, cfg.overlap)
        weight = blend_window(tile, cfg.overlap)
        coords = [(y, x) for y in ys for x in xs]
        n, step = len(coords), cfg.batch_tiles
        band = _RollingBand(seg.classes, work_width, padded_width)
        for i in range(0, n, step):
            if should_stop():
                return i, True
            batch = coords[i : i + step]
            bottom = max(y for y, _ in batch) + tile
            band.grow(bottom, self.work_rows, work_height)
            height = bottom - band.top
            image = band.image
            if height > len(image) or padded_width > work_width:
                image = pad_to(image, height, padded_width)
            seg.add_tiles(image, [(y - band.top, x) for y, x in batch], band.acc, band.norm, weight)
            del image
            # the next batch's first row: the rows above it are final
            final = coords[i + step][0] if i + step < n else padded_height
            if final > band.top:
                prob = band.release(final, work_height, work_width)
                if prob is not None:
                    self.add_probability(prob)
            yield min(i + step, n), n
        return n, False
