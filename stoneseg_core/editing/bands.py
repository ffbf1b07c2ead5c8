"""Big mask blocks a band of rows at a time, never with a full-size temporary: the bands
(``row_bands``) and the tight box where two blocks differ (``changed_region``). No Qt, no
torch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stoneseg_core.editing.region import Region

BAND_PIXELS = 1 << 22  # big blocks are compared and packed this many pixels at a time


def row_bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges of about ``BAND_PIXELS`` pixels, each a multiple of 8 rows (but the last):
    packed bits of consecutive bands then join up as if packed at once."""
    step = max(8, (BAND_PIXELS // max(1, width)) // 8 * 8)
    return [(r, min(height, r + step)) for r in range(0, height, step)]


def changed_region(
    old: np.ndarray,
    new: np.ndarray,
    offset: Region | None = None,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Region | None:
    """Tight box around the pixels where ``old`` and ``new`` differ, or None (compared by
    bands of rows: no full-size temporary for a big block; ``convert`` is applied to each
    band of ``new`` first)."""
    h, w = old.shape
    any_row = np.zeros(h, bool)
    any_col = np.zeros(w, bool)
    for r0, r1 in row_bands(h, w):
        band = new[r0:r1] if convert is None else convert(new[r0:r1])
        diff = old[r0:r1] != band
        any_row[r0:r1] = diff.any(axis=1)
        any_col |= diff.any(axis=0)
    rows = np.flatnonzero(any_row)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(any_col)
    top, left = (offset.top, offset.left) if offset is not None else (0, 0)
    return Region(
        top + int(rows[0]), left + int(cols[0]), top + int(rows[-1]) + 1, left + int(cols[-1]) + 1
    )
