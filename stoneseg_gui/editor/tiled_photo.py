"""A photo too big to hold whole (an orthomosaic): drawn from a tile pyramid built on demand.

``TiledPhoto`` is what the session hands the canvas instead of a ``DisplayImage`` for a big
TIFF (``stoneseg_core.display.pyramid.is_big_tiff_photo``). It owns the file's ``TiffTileSource``;
the canvas starts its ``TileLoader`` (threads that never call Qt) when it shows it, and the
session closes it when it leaves the photo.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.display.coarse import (
    build_coarse_levels,
    coarse_from_level,
    load_coarse_levels,
    save_coarse_levels,
)
from stoneseg_core.display.grid import PyramidGrid, TileKey
from stoneseg_core.display.tiff_tiles import TiffTileSource
from stoneseg_core.display.tile_cache import TileCache
from stoneseg_core.display.tile_loader import TileLoader
from stoneseg_core.io.geo import Georeference, georeference_or_none

PHOTO_CACHE_BYTES = 384 * 1024 * 1024  # decoded photo tiles kept (384 BGRX tiles of 512 px)
LOADER_THREADS = 2
PREVIEW_MIN_TOP = 3  # a preview for files whose coarsest tile is 1/8 of them or less

log = logging.getLogger(__name__)


class TiledPhoto:
    """A big photo for the canvas: its size, tile grid, source and georeference.

    ``start()`` runs the tile loader, and, for a file without overview levels (where the
    coarse tiles cost a decoding of the whole file), a quick ``preview`` of the whole photo
    from a sample of its file tiles, drawn wherever no tile is ready yet; then, on the same
    thread, its coarse levels (``pyramid.build_coarse_levels``: one pass over the file),
    kept in the cache for the next opening (``open`` loads them from there). While they are
    built, the coarse tiles wait (the preview shows there; ``coarse_progress`` says how far)
    and the finer ones, which cost little, load as usual. ``close()`` never waits: the file
    is closed by the last of these threads to stop.
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
        self.coarse_pending = False  # the coarse levels are being built
        self.coarse_progress: float | None = None  # how far (0..1) while they are
        self.coarse_ready = threading.Event()  # built (or loaded) and in use
        self.coarse_from_cache = bool(source.coarse)
        self.coarse_from = coarse_from_level(source.grid)  # levels from this one are coarse
        if source.coarse:
            self.coarse_ready.set()
        self._lock = threading.Lock()
        self._users = 1  # this object; the loader and the preview thread while they run
        self._closed = False

    @classmethod
    def open(cls, path: str | Path) -> TiledPhoto:
        """Open the file's header and check it can be decoded (worker thread). Raises
        ImageReadError naming the file."""
        source = TiffTileSource(path)
        if _wants_coarse(source):
            levels = load_coarse_levels(path, source.grid)
            if levels is not None:
                source.set_coarse_levels(levels)
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
            wants_preview = (
                self.source.overview_count == 0
                and not self.source.coarse
                and self.grid.top >= PREVIEW_MIN_TOP
            )
            # the preview first: it is a few seconds' work where the tiles are many more
            self.loader = TileLoader(self._build, self.cache, LOADER_THREADS, paused=wants_preview)
            if wants_preview:
                self._users += 1
                self.preview_pending = True
                self.coarse_pending = _wants_coarse(self.source)
                if self.coarse_pending:
                    self.coarse_progress = 0.0
        if wants_preview:
            thread = threading.Thread(
                target=self._build_preview, name="stoneseg-tiles-preview", daemon=True
            )
            _BUILDERS[thread] = self
            thread.start()
        return self.loader

    def _build(self, key: TileKey, should_stop) -> np.ndarray | None:
        """A tile as 32-bit BGRX (QImage's RGB32 in memory: drawn without converting).
        None for a coarse tile while the coarse levels are built (asked again once they are)."""
        if (
            self.coarse_pending
            and key.level >= self.coarse_from
            and key.level not in self.source.coarse
        ):
            return None
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
        try:
            if self.coarse_pending:
                self._build_coarse()
        finally:
            self.coarse_pending = False
            self.coarse_progress = None
            self._release()

    def _build_coarse(self) -> None:
        """The coarse levels, once, then kept in the cache (on the preview's thread)."""
        try:
            levels = build_coarse_levels(
                self.source,
                self.coarse_from,
                should_stop=lambda: self._closed,
                progress=self._on_coarse_progress,
            )
        except Exception:  # the tiles themselves report what is wrong with the file
            log.debug("no coarse levels for %s", self.path.name, exc_info=True)
            return
        if levels is None:
            return  # closed meanwhile
        self.source.set_coarse_levels(levels)
        self.coarse_progress = None
        self.coarse_pending = False
        self.coarse_ready.set()
        save_coarse_levels(self.path, levels)

    def _on_coarse_progress(self, fraction: float) -> None:
        self.coarse_progress = fraction

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


# the preview/coarse-level threads running: stopped and joined when Python exits, so that
# none is inside OpenCV or a decoder while those libraries are torn down
_BUILDERS: weakref.WeakKeyDictionary[threading.Thread, TiledPhoto] = weakref.WeakKeyDictionary()


@atexit.register
def _stop_builders(timeout: float = 5.0) -> None:
    for thread, photo in list(_BUILDERS.items()):
        photo.close()
        thread.join(timeout)


def _wants_coarse(source: TiffTileSource) -> bool:
    """A file without overviews whose coarse tiles each cost a large part of the file."""
    return source.overview_count == 0 and source.grid.top >= PREVIEW_MIN_TOP
