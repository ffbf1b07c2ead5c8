"""A photo too big to hold whole (an orthomosaic): drawn from a tile pyramid built on demand.

``TiledPhoto`` is what the session hands the canvas instead of a ``DisplayImage`` for a big
TIFF (``stoneseg_core.pyramid.is_big_tiff_photo``). It owns the file's ``TiffTileSource``;
the canvas starts its ``TileLoader`` (threads that never call Qt) when it shows it, and the
session closes it when it leaves the photo.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.geo import Georeference, georeference_or_none
from stoneseg_core.pyramid import PyramidGrid, TiffTileSource, TileCache, TileKey, TileLoader

PHOTO_CACHE_BYTES = 384 * 1024 * 1024  # decoded photo tiles kept (384 BGRX tiles of 512 px)
LOADER_THREADS = 2
PREVIEW_MIN_TOP = 3  # a preview for files whose coarsest tile is 1/8 of them or less

log = logging.getLogger(__name__)


class TiledPhoto:
    """A big photo for the canvas: its size, tile grid, source and georeference.

    ``start()`` runs the tile loader, and, for a file without overview levels (where the
    coarse tiles cost a decoding of the whole file), a quick ``preview`` of the whole photo
    from a sample of its file tiles, drawn wherever no tile is ready yet. ``close()`` never
    waits: the file is closed by the last of these threads to stop.
    """

    def __init__(
        self, path: Path, source: TiffTileSource, georeference: Georeference | None = None
    ) -> None:
        self.path = Path(path)
        self.source = source
        self.georeference = georeference
        self.cache = TileCache(PHOTO_CACHE_BYTES)
        self.loader: TileLoader | None = None
        self.preview: np.ndarray | None = None  # BGRX, the whole photo at the top level's size
        self.preview_ready = threading.Event()
        self.preview_pending = False  # a preview is being made
        self._lock = threading.Lock()
        self._users = 1  # this object; the loader and the preview thread while they run
        self._closed = False

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

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> TileLoader | None:
        with self._lock:
            if self._closed:
                return None
            if self.loader is not None:
                return self.loader
            self._users += 1
            wants_preview = self.source.overview_count == 0 and self.grid.top >= PREVIEW_MIN_TOP
            # the preview first: it is a few seconds' work where the tiles are many more
            self.loader = TileLoader(self._build, self.cache, LOADER_THREADS, paused=wants_preview)
            if wants_preview:
                self._users += 1
                self.preview_pending = True
        if wants_preview:
            threading.Thread(
                target=self._build_preview, name="stoneseg-tiles-preview", daemon=True
            ).start()
        return self.loader

    def _build(self, key: TileKey, should_stop) -> np.ndarray | None:
        """A tile as 32-bit BGRX (QImage's RGB32 in memory: drawn without converting)."""
        rgb = self.source.read_tile(key, should_stop)
        return None if rgb is None else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)

    def _build_preview(self) -> None:
        try:
            size = max(self.grid.level_size(self.grid.top))
            rgb = self.source.thumbnail(size, should_stop=lambda: self._closed)
            if rgb is not None:
                self.preview = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
                self.preview_ready.set()
        except Exception:  # the tiles themselves report what is wrong with the file
            log.debug("no preview of %s", self.path.name, exc_info=True)
        finally:
            self.preview_pending = False
            loader = self.loader
            if loader is not None:
                loader.resume()
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.cache.clear()
            self.source.close()

    def close(self) -> None:
        """Stop the threads and close the file once they have stopped (does not wait)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loader, self.loader = self.loader, None
        if loader is not None:
            loader.close(wait=False, on_exit=self._release)
        self._release()

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
