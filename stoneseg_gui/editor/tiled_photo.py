"""A photo too big to hold whole (an orthomosaic): drawn from a tile pyramid built on demand.

``TiledPhoto`` is what the session hands the canvas instead of a ``DisplayImage`` for a big
TIFF (``stoneseg_core.pyramid.is_big_tiff_photo``). It owns the file's ``TiffTileSource``;
the canvas starts its ``TileLoader`` (threads that never call Qt) when it shows it and
closes it when it shows another photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.geo import Georeference, georeference_or_none
from stoneseg_core.pyramid import PyramidGrid, TiffTileSource, TileCache, TileKey, TileLoader

PHOTO_CACHE_BYTES = 384 * 1024 * 1024  # decoded photo tiles kept (about 500 tiles of 512 px)
LOADER_THREADS = 2


@dataclass
class TiledPhoto:
    """A big photo for the canvas: its size, tile grid, source and georeference."""

    path: Path
    source: TiffTileSource
    georeference: Georeference | None = None
    cache: TileCache = field(default_factory=lambda: TileCache(PHOTO_CACHE_BYTES))
    loader: TileLoader | None = None

    @classmethod
    def open(cls, path: str | Path) -> TiledPhoto:
        """Open the file's header and check it can be decoded (worker thread). Raises
        ImageReadError naming the file."""
        source = TiffTileSource(path)
        return cls(Path(path), source, georeference_or_none(path))

    @property
    def width(self) -> int:
        return self.source.width

    @property
    def height(self) -> int:
        return self.source.height

    @property
    def grid(self) -> PyramidGrid:
        return self.source.grid

    def start(self) -> TileLoader:
        if self.loader is None:
            self.loader = TileLoader(self._build, self.cache, LOADER_THREADS)
        return self.loader

    def _build(self, key: TileKey, should_stop) -> np.ndarray | None:
        """A tile as 32-bit BGRX (QImage's RGB32 in memory: drawn without converting)."""
        rgb = self.source.read_tile(key, should_stop)
        return None if rgb is None else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)

    def close(self) -> None:
        """Stop the loader's threads and close the file (the cache is dropped)."""
        if self.loader is not None:
            self.loader.close()
            self.loader = None
        self.cache.clear()
        self.source.close()

    def pixel_rgb(self, x: int, y: int) -> tuple[int, int, int] | None:
        """The colour at full-size pixel (x, y) if its level-0 tile is loaded, else None."""
        t = self.grid.tile
        tile = self.cache.peek(TileKey(0, x // t, y // t))
        if tile is None:
            return None
        b, g, r = (int(v) for v in tile[y % t, x % t, :3])
        return r, g, b

    def tile(self, key: TileKey) -> np.ndarray | None:
        return self.cache.get(key)
