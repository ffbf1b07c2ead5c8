"""The tile maths of the display pyramid: level sizes, which tiles a rectangle touches, the
level for a zoom.

A big photo is drawn as square tiles (``TILE`` px) at power-of-two levels: level 0 is full
size, level L is 1/2**L of it. No Qt, no torch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

TILE = 512


class TileKey(NamedTuple):
    level: int
    col: int
    row: int


class PyramidGrid:
    """Tiles of ``tile`` px over a ``width`` x ``height`` photo at levels 0 .. ``top``.

    Level L has ceil(width / 2**L) x ceil(height / 2**L) pixels; ``top`` is the first level
    that fits in one tile. Rectangles are (x0, y0, x1, y1), end exclusive.
    """

    def __init__(self, width: int, height: int, tile: int = TILE) -> None:
        if width < 1 or height < 1 or tile < 1:
            raise ValueError("A pyramid needs a positive size and tile.")
        self.width, self.height, self.tile = int(width), int(height), int(tile)
        top = 0
        while max(self.level_size(top)) > self.tile:
            top += 1
        self.top = top

    def level_size(self, level: int) -> tuple[int, int]:
        f = 1 << level
        return -(-self.width // f), -(-self.height // f)

    def tile_counts(self, level: int) -> tuple[int, int]:
        w, h = self.level_size(level)
        return -(-w // self.tile), -(-h // self.tile)

    def tile_size(self, key: TileKey) -> tuple[int, int]:
        """(width, height) of a tile in its level's pixels (edge tiles are smaller)."""
        w, h = self.level_size(key.level)
        t = self.tile
        return min(t, w - key.col * t), min(t, h - key.row * t)

    def image_rect(self, key: TileKey) -> tuple[int, int, int, int]:
        """The full-size pixels a tile shows, clipped to the photo."""
        f, t = 1 << key.level, self.tile
        x0, y0 = key.col * t * f, key.row * t * f
        return x0, y0, min(self.width, x0 + t * f), min(self.height, y0 + t * f)

    def level_for_scale(self, scale: float) -> int:
        """The coarsest level with at least one pixel per screen pixel at ``scale`` (screen
        pixels per photo pixel)."""
        if not scale > 0:
            return self.top
        level = math.floor(math.log2(1.0 / scale) + 0.01)
        return max(0, min(self.top, level))

    def tiles_in(self, level: int, rect: tuple[float, float, float, float]) -> list[TileKey]:
        """Tiles of ``level`` that meet ``rect`` (full-size coordinates), from its centre out."""
        x0, y0, x1, y1 = rect
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(self.width), x1), min(float(self.height), y1)
        if x1 <= x0 or y1 <= y0:
            return []
        span = self.tile << level
        c0, r0 = int(x0 // span), int(y0 // span)
        c1, r1 = int(math.ceil(x1 / span)), int(math.ceil(y1 / span))
        cx, cy = (x0 + x1) / 2 / span - 0.5, (y0 + y1) / 2 / span - 0.5
        keys = [TileKey(level, c, r) for r in range(r0, r1) for c in range(c0, c1)]
        keys.sort(key=lambda k: (k.col - cx) ** 2 + (k.row - cy) ** 2)
        return keys

    def parent(self, key: TileKey) -> TileKey | None:
        if key.level >= self.top:
            return None
        return TileKey(key.level + 1, key.col // 2, key.row // 2)
