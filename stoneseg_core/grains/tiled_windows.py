"""The windows of a big mask (``grains.tiled``): reading a mask window by window, the grid of
cores and margins, and the band of stone labels handed row by row to the label TIFF. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stoneseg_core.errors import MaskError, StonesegError
from stoneseg_core.io.geo import decode_error_message, is_tiff, open_tiff, read_tiff_window
from stoneseg_core.io.images import read_mask
from stoneseg_core.io.tiff_writer import TiledTiffWriter


class MaskWindows:
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


@dataclass(frozen=True)
class WindowGrid:
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


def window_sizes(window_px, margin_px, max_margin_px) -> tuple[int, int, int]:
    """(window, margin, widest margin) in pixels, checked (``iter_grains_tiled``)."""
    window_px = int(window_px)
    if window_px < 64 or window_px % 64:
        raise StonesegError(f"The window must be a multiple of 64 pixels, got {window_px}.")
    margin = window_px // 8 if margin_px is None else int(margin_px)
    if margin < 1:
        raise StonesegError(f"The window margin must be at least 1 pixel, got {margin}.")
    widest = 4 * margin if max_margin_px is None else max(margin, int(max_margin_px))
    return window_px, margin, widest


def open_mask(mask, name: str, probability, boundary) -> MaskWindows:
    """The mask's windows, its probability and boundary maps checked to be of its size."""
    source = MaskWindows(mask, name)
    height, width = source.shape
    for what, m in (("probability", probability), ("boundary", boundary)):
        if m is not None and np.shape(m)[:2] != (height, width):
            source.close()
            raise StonesegError(
                f"The {what} map is {np.shape(m)[1]}x{np.shape(m)[0]} pixels but the mask is "
                f"{width}x{height}: they must come from the same photo."
            )
    return source


class LabelBand:
    """Rows [r0, r0 + len(rows)) of the stone labels, r0 the top of the row of windows being
    split: a core's stones spill below it by at most the widest margin, into the next
    band's rows, so the band's rows are handed to the writer when its windows are done."""

    def __init__(self, grid: WindowGrid) -> None:
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
