"""The stones of a window-by-window analysis on the canvas (a mask over 50 MP).

Such an analysis (``grains.tiled``) writes its stones as an instance TIFF, tiled, beside
its table. ``BigStonesItem`` draws their outlines from that file tile by tile, at the
levels of the photo's pyramid: each tile's window of labels is read (only the TIFF tiles it
touches, ``geo.read_window``) and its stone borders found on background threads
(``pyramid.TileLoader``), while the window polls for finished tiles. Outlines are drawn
from 1/4 zoom in; farther out a hundred thousand stones would be a haze of lines, and a
tile would need up to 16384 x 16384 labels read.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QRectF, QTimer
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsObject, QStyleOptionGraphicsItem, QWidget

from stoneseg_core.display.grid import PyramidGrid, TileKey
from stoneseg_core.display.mask_tiles import blocks_any
from stoneseg_core.display.tile_cache import TileCache
from stoneseg_core.display.tile_loader import TileLoader
from stoneseg_core.io import geo

from .canvas import OUTLINE_COLOR

MAX_LEVEL = 2  # outlines from 1/4 zoom in
CACHE_BYTES = 64 * 1024 * 1024
POLL_MS = 40


def stone_borders(labels: np.ndarray, factor: int) -> np.ndarray:
    """Where ``labels`` (0 = ground) changes from one stone to another or to the ground, on
    the stone's side, as a bool image ``factor`` times smaller (a border anywhere in a
    block marks the block)."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, bool)
    right = lab[:, 1:] != lab[:, :-1]
    down = lab[1:] != lab[:-1]
    edge[:, :-1] |= right & (lab[:, :-1] > 0)
    edge[:, 1:] |= right & (lab[:, 1:] > 0)
    edge[:-1] |= down & (lab[:-1] > 0)
    edge[1:] |= down & (lab[1:] > 0)
    return edge if factor == 1 else blocks_any(edge.view(np.uint8), factor)


class BigStonesItem(QGraphicsObject):
    """Outlines of the stones in an instance TIFF, tile by tile (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._path: Path | None = None
        self._grid: PyramidGrid | None = None
        self._cache = TileCache(CACHE_BYTES)
        self._loader: TileLoader | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.too_far = False  # the last paint was zoomed out past MAX_LEVEL: nothing drawn
        self.setZValue(5)  # with the stone outlines of a photo analysed whole
        self.setFlag(QGraphicsObject.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def errors(self) -> list[str]:
        return list(self._loader.errors) if self._loader is not None else []

    @property
    def pending(self) -> bool:
        return self._loader is not None and self._loader.pending

    def set_instances(self, path: Path | None, shape: tuple[int, int] | None = None) -> None:
        """Draw the stones of the instance TIFF ``path`` ((height, width) ``shape``: the
        photo's); None clears."""
        self.prepareGeometryChange()
        self._stop_loader()
        self._cache.clear()
        self._path = Path(path) if path is not None else None
        self._grid = None
        if self._path is not None and shape is not None:
            self._grid = PyramidGrid(shape[1], shape[0])
            self._loader = TileLoader(self._build, self._cache, workers=2)
        self.update()

    def clear(self) -> None:
        self.set_instances(None)

    def _stop_loader(self) -> None:
        self._timer.stop()
        if self._loader is not None:
            self._loader.close(wait=False)  # the window's thread never waits for a reader
            self._loader = None

    def _build(self, key: TileKey, should_stop) -> np.ndarray | None:
        """A tile's outlines as premultiplied BGRA (transparent off the borders)."""
        grid, path = self._grid, self._path
        if grid is None or path is None or should_stop():
            return None
        x0, y0, x1, y1 = grid.image_rect(key)
        labels = geo.read_window(path, y0, x0, y1 - y0, x1 - x0)
        if labels.ndim == 3:
            labels = labels[..., 0]
        edge = stone_borders(labels, 1 << key.level)
        tw, th = grid.tile_size(key)
        edge = edge[:th, :tw]
        rgba = np.zeros((th, tw, 4), np.uint8)
        c = OUTLINE_COLOR
        rgba[edge] = (c.blue(), c.green(), c.red(), 255)
        # a dark halo one pixel round the borders, so they read on light and dark ground
        halo = cv2.dilate(edge.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
        rgba[halo & ~edge] = (0, 0, 0, 140)
        return rgba

    def _poll(self) -> None:
        loader = self._loader
        if loader is None:
            self._timer.stop()
            return
        ready = loader.take_ready()
        if ready and self._grid is not None:
            for key in ready:
                self.update(QRectF(*_xywh(self._grid.image_rect(key))))
        if not loader.pending:
            self._timer.stop()

    def boundingRect(self) -> QRectF:
        g = self._grid
        return QRectF(0, 0, g.width, g.height) if g is not None else QRectF()

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        grid, loader = self._grid, self._loader
        if grid is None or loader is None:
            return
        device = painter.device()
        ratio = device.devicePixelRatioF() if device is not None else 1.0
        scale = abs(painter.worldTransform().m11()) * ratio or 1.0
        level = grid.level_for_scale(scale)
        self.too_far = level > MAX_LEVEL
        if self.too_far:
            return
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        box = (exposed.left(), exposed.top(), exposed.right(), exposed.bottom())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        wanted = []
        for key in grid.tiles_in(level, box):
            tile = self._cache.get(key)
            if tile is None:
                wanted.append(key)
                continue
            h, w = tile.shape[:2]
            image = QImage(
                tile.data, w, h, tile.strides[0], QImage.Format.Format_ARGB32_Premultiplied
            )
            painter.drawImage(QRectF(*_xywh(grid.image_rect(key))), image)
        if wanted:
            loader.want(wanted)
            if not self._timer.isActive():
                self._timer.start()


def _xywh(rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rect
    return x0, y0, x1 - x0, y1 - y0
