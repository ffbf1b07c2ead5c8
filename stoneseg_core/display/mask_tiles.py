"""Coverage tiles of a full-size uint8 mask for the display pyramid: the fraction of stone
under each tile pixel (0..255), updated in place where an edit touched them, and which
blocks of the mask hold any stone (``MaskOccupancy``: empty tiles cost no reading). No Qt, no
torch."""

from __future__ import annotations

import cv2
import numpy as np

from stoneseg_core.display.grid import PyramidGrid, TileKey


def _block_mean(block: np.ndarray, f: int) -> np.ndarray:
    """Mean of each f x f block of a uint8 array whose origin is a multiple of f (the last
    partial blocks, at the photo's edge, are padded by repeating the edge). Rows and columns
    are first sampled every f/4 pixels for f > 4, so a coarse level costs 16 samples per
    output pixel, not f*f."""
    if f == 1:
        return np.array(block, copy=True)
    step = max(1, f // 4)
    sub = np.ascontiguousarray(block[::step, ::step])
    k = f // step
    h, w = sub.shape
    ph, pw = -h % k, -w % k
    if ph or pw:  # the edge repeated (as np.pad's "edge", several times quicker)
        sub = cv2.copyMakeBorder(sub, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    out_w, out_h = sub.shape[1] // k, sub.shape[0] // k
    return cv2.resize(sub, (out_w, out_h), interpolation=cv2.INTER_AREA)


def blocks_any(part: np.ndarray, b: int) -> np.ndarray:
    """Whether each b x b block of ``part`` (the last ones may be partial) holds a nonzero
    pixel: a maximum over each block's rows, then over its columns (4x quicker than
    ``reshape(...).any(axis=(1, 3))``, and no padded copy at the photo's edge)."""
    h, w = part.shape
    nr, nc, hf, wf = -(-h // b), -(-w // b), h // b, w // b
    rows = np.empty((nr, w), np.uint8)
    if hf:
        rows[:hf] = part[: hf * b].reshape(hf, b, w).max(axis=1)
    if nr > hf:
        rows[hf] = part[hf * b :].max(axis=0)
    blocks = np.empty((nr, nc), np.uint8)
    if wf:
        blocks[:, :wf] = rows[:, : wf * b].reshape(nr, wf, b).max(axis=2)
    if nc > wf:
        blocks[:, wf] = rows[:, wf * b :].max(axis=1)
    return blocks > 0


class MaskOccupancy:
    """Which ``block`` x ``block`` blocks of a mask hold any stone: a mask tile over empty
    blocks is zeros without reading the mask (at a coarse level a tile covers up to
    16384 x 16384 pixels). Kept up to date with ``update(region)`` after each edit."""

    def __init__(self, mask: np.ndarray, block: int = 64) -> None:
        self.mask, self.block = mask, int(block)
        h, w = mask.shape
        self.any = np.zeros((-(-h // self.block), -(-w // self.block)), bool)
        self.update((0, 0, w, h))

    def update(self, region: tuple[int, int, int, int]) -> None:
        """Look again at the blocks that the full-size ``region`` (x0, y0, x1, y1) touches."""
        b = self.block
        h, w = self.mask.shape
        c0, r0 = max(0, region[0]) // b, max(0, region[1]) // b
        c1, r1 = -(-min(w, region[2]) // b), -(-min(h, region[3]) // b)
        for r in range(r0, r1, 64):  # 64 block rows at a time: bounded temporaries
            rr = min(r1, r + 64)
            rows = self.mask[r * b : min(h, rr * b)]
            for c in range(c0, c1, 256):
                cc = min(c1, c + 256)
                part = rows[:, c * b : min(w, cc * b)]
                self.any[r:rr, c:cc] = blocks_any(part, b)

    def any_in(self, rect: tuple[int, int, int, int]) -> bool:
        b = self.block
        x0, y0, x1, y1 = rect
        return bool(self.any[y0 // b : -(-y1 // b), x0 // b : -(-x1 // b)].any())


def mask_tile(
    mask: np.ndarray, grid: PyramidGrid, key: TileKey, occupancy: MaskOccupancy | None = None
) -> np.ndarray:
    """A tile of a 0/255 mask at its level: the fraction of stone under each pixel, 0..255."""
    rect = grid.image_rect(key)
    if occupancy is not None and not occupancy.any_in(rect):
        w, h = grid.tile_size(key)
        return np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = rect
    return _block_mean(mask[y0:y1, x0:x1], 1 << key.level)


def update_mask_tile(
    tile: np.ndarray,
    mask: np.ndarray,
    grid: PyramidGrid,
    key: TileKey,
    region: tuple[int, int, int, int],
) -> bool:
    """Recompute, in place, the pixels of ``tile`` that the full-size ``region`` (x0, y0,
    x1, y1) touches. False when the region misses the tile."""
    tx0, ty0, tx1, ty1 = grid.image_rect(key)
    f = 1 << key.level
    rx0, ry0 = max(region[0], tx0), max(region[1], ty0)
    rx1, ry1 = min(region[2], tx1), min(region[3], ty1)
    if rx1 <= rx0 or ry1 <= ry0:
        return False
    c0, r0 = (rx0 - tx0) // f, (ry0 - ty0) // f
    c1, r1 = -(-(rx1 - tx0) // f), -(-(ry1 - ty0) // f)
    block = mask[ty0 + r0 * f : min(ty1, ty0 + r1 * f), tx0 + c0 * f : min(tx1, tx0 + c1 * f)]
    tile[r0:r1, c0:c1] = _block_mean(block, f)
    return True
