"""Which pixels a polygon covers: exact on pixel centres, by chunks of rows. No Qt, no torch."""

from __future__ import annotations

import numpy as np

from stoneseg_core.editing.region import Region


def polygon_pixels(points: np.ndarray, region: Region, chunk_rows: int = 256) -> np.ndarray:
    """Boolean array over ``region``: True where a pixel centre lies inside the polygon.

    Even-odd rule, exact on pixel centres (OpenCV's fillPoly also fills the pixels the
    outline touches, which would grow every lasso by half a pixel). Rows are handled in
    chunks so a long freehand lasso over a tall photo stays small in memory.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    h, w = region.height, region.width
    inside = np.zeros((h, w), bool)
    dy = y1 - y0
    slope = np.divide(x1 - x0, dy, out=np.zeros_like(dy), where=dy != 0)
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    for start in range(0, h, chunk_rows):
        stop = min(h, start + chunk_rows)
        first, last = region.top + start + 0.5, region.top + stop - 0.5
        edges = (yhi > first) & (ylo <= last) & (dy != 0)  # only edges that reach these rows
        if not edges.any():
            continue
        ex0, ey0, ey1, eslope = x0[edges], y0[edges], y1[edges], slope[edges]
        yc = (np.arange(region.top + start, region.top + stop, dtype=np.float64) + 0.5)[:, None]
        crosses = ((ey0 <= yc) & (yc < ey1)) | ((ey1 <= yc) & (yc < ey0))
        xi = np.where(crosses, ex0 + (yc - ey0) * eslope, np.inf)
        xi.sort(axis=1)
        k = int(crosses.sum(axis=1).max()) // 2 * 2
        if k == 0:
            continue
        lo, hi = xi[:, 0:k:2], xi[:, 1:k:2]
        ok = np.isfinite(lo) & np.isfinite(hi)
        c0 = np.ceil(lo[ok] - 0.5).astype(np.int64) - region.left
        c1 = np.floor(hi[ok] - 0.5).astype(np.int64) - region.left
        rows = np.broadcast_to(np.arange(stop - start)[:, None], ok.shape)[ok]
        c0, c1 = np.clip(c0, 0, w), np.clip(c1 + 1, 0, w)
        keep = c0 < c1
        n = (stop - start) * (w + 1)
        diff = np.bincount(rows[keep] * (w + 1) + c0[keep], minlength=n) - np.bincount(
            rows[keep] * (w + 1) + c1[keep], minlength=n
        )
        inside[start:stop] = np.cumsum(diff.reshape(stop - start, w + 1)[:, :w], axis=1) > 0
    return inside
