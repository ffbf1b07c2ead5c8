"""What the canvas draws: the photo (from its pyramid), the mask and prediction overlays, the brush cursor.

Only the exposed part is drawn, at screen resolution for the outline view.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QImage,
    QPainter,
    QPen,
    QTransform,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QStyleOptionGraphicsItem,
    QWidget,
)

from stoneseg_core.display.grid import PyramidGrid, TileKey
from stoneseg_core.display.mask_tiles import MaskOccupancy, mask_tile, update_mask_tile
from stoneseg_core.display.tiff_tiles import BIG_PHOTO_PIXELS
from stoneseg_core.display.tile_cache import TileCache
from stoneseg_core.editing.region import Region

from ..widgets.theme import ERASE_COLOR
from .display import DisplayImage
from .tiled_photo import TiledPhoto

PLACEHOLDER_COLOR = QColor(52, 55, 61)  # a tile of a big photo not decoded yet
MASK_TILE_CACHE_BYTES = 96 * 1024 * 1024
MASK_IMAGES_KEPT = 48  # coloured overlay tiles ready to draw (1 MB each at 512 px)


# ----------------------------------------------------------------------------- items
class PhotoItem(QGraphicsItem):
    def __init__(self) -> None:
        super().__init__()
        self._display: DisplayImage | None = None
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def set_display(self, display: DisplayImage | None) -> None:
        self.prepareGeometryChange()
        self._display = display
        self.update()

    def boundingRect(self) -> QRectF:
        d = self._display
        return QRectF(0, 0, d.width, d.height) if d else QRectF()

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        d = self._display
        if d is None:
            return
        view_scale = painter.worldTransform().m11()
        device = painter.device()
        scale = view_scale * (device.devicePixelRatioF() if device is not None else 1.0)
        level = d.levels[0]
        for candidate in d.levels:  # the smallest level that still has >= 1 pixel per screen pixel
            if candidate.fx >= scale * 0.99:
                level = candidate
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        lw, lh = level.array.shape[1], level.array.shape[0]
        # whole level pixels plus a border, so partial repaints sample like a full one
        x0 = max(0, math.floor(exposed.left() * level.fx) - 2)
        y0 = max(0, math.floor(exposed.top() * level.fy) - 2)
        x1 = min(lw, math.ceil(exposed.right() * level.fx) + 2)
        y1 = min(lh, math.ceil(exposed.bottom() * level.fy) + 2)
        source = QRectF(x0, y0, x1 - x0, y1 - y0)
        target = QRectF(x0 / level.fx, y0 / level.fy, (x1 - x0) / level.fx, (y1 - y0) / level.fy)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, view_scale < 0.999)
        painter.drawImage(target, level.image, source)


def _device_scale(painter: QPainter) -> float:
    device = painter.device()
    ratio = device.devicePixelRatioF() if device is not None else 1.0
    return painter.worldTransform().m11() * ratio


def _rect(r: tuple[int, int, int, int]) -> QRectF:
    return QRectF(r[0], r[1], r[2] - r[0], r[3] - r[1])


class TiledPhotoItem(QGraphicsItem):
    """A big photo drawn tile by tile from its pyramid; a tile not built yet shows its
    nearest coarser ancestor that is (stretched), else a plain placeholder."""

    def __init__(self) -> None:
        super().__init__()
        self._photo: TiledPhoto | None = None
        # the canvas tells which part of the photo is on screen (tiles are asked for it all)
        self.visible_rect: Callable[[], QRectF] | None = None
        self.on_requested: Callable[[], None] | None = None
        self.drawn_levels: set[int] = set()  # levels of the tiles drawn since the last reset
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    @property
    def photo(self) -> TiledPhoto | None:
        return self._photo

    def set_photo(self, photo: TiledPhoto | None) -> None:
        self.prepareGeometryChange()
        self._photo = photo
        self.update()

    def boundingRect(self) -> QRectF:
        p = self._photo
        return QRectF(0, 0, p.width, p.height) if p else QRectF()

    def level_for(self, painter_scale: float) -> int:
        assert self._photo is not None
        return self._photo.grid.level_for_scale(painter_scale)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        photo = self._photo
        if photo is None:
            return
        grid = photo.grid
        scale = _device_scale(painter)
        level = grid.level_for_scale(scale)
        exposed = option.exposedRect.intersected(self.boundingRect())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 0.999)
        if not exposed.isEmpty():
            box = (exposed.left(), exposed.top(), exposed.right(), exposed.bottom())
            for key in grid.tiles_in(level, box):
                target = _rect(grid.image_rect(key))
                tile = photo.tile(key)
                if tile is not None:
                    self.drawn_levels.add(level)
                    painter.drawImage(target, _rgb_qimage(tile))
                else:
                    self._paint_fallback(painter, photo, key, target)
        loader = photo.loader
        if loader is not None:
            view = self.visible_rect() if self.visible_rect is not None else exposed
            box = (view.left(), view.top(), view.right(), view.bottom())
            wanted = [k for k in grid.tiles_in(level, box) if k not in photo.cache]
            loader.want(wanted)
            if wanted and self.on_requested is not None:
                self.on_requested()

    def _paint_fallback(
        self, painter: QPainter, photo: TiledPhoto, key: TileKey, target: QRectF
    ) -> None:
        grid = photo.grid
        up = grid.parent(key)
        while up is not None:
            tile = photo.cache.peek(up)
            if tile is not None:
                ax0, ay0, _, _ = grid.image_rect(up)
                f = 1 << up.level
                source = QRectF(
                    (target.left() - ax0) / f,
                    (target.top() - ay0) / f,
                    target.width() / f,
                    target.height() / f,
                )
                painter.drawImage(target, _rgb_qimage(tile), source)
                return
            up = grid.parent(up)
        preview = photo.preview
        if preview is not None:  # a quick likeness of the whole photo, while tiles come
            sx, sy = preview.shape[1] / photo.width, preview.shape[0] / photo.height
            source = QRectF(
                target.left() * sx, target.top() * sy, target.width() * sx, target.height() * sy
            )
            painter.drawImage(target, _rgb_qimage(preview), source)
            return
        painter.fillRect(target, PLACEHOLDER_COLOR)


def _rgb_qimage(arr: np.ndarray) -> QImage:
    """A QImage on a tile's BGRX memory (no copy)."""
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB32)


class MaskOverlayItem(QGraphicsItem):
    """A 0/255 mask drawn as a colour overlay, filled or as outlines, sharing the array.

    The mask of a big photo (``tiled``: the photo is a ``TiledPhoto``) is drawn tile by
    tile from a pyramid of coverage tiles (0..255: the share of stone under each pixel)
    computed from the array for what is on screen; an edit updates the touched pixels of
    the cached tiles.
    """

    def __init__(self, color: QColor) -> None:
        super().__init__()
        self._mask: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._grid: PyramidGrid | None = None  # tiled mode
        self._occupancy: MaskOccupancy | None = None
        self._tiles = TileCache(MASK_TILE_CACHE_BYTES)
        self._empty: dict[TileKey, bool] = {}  # tiles without stone are not drawn
        self._images: OrderedDict[TileKey, QImage] = OrderedDict()  # tiles in colour
        self._table: list[int] = []
        self._color = QColor(color)
        self._opacity = 0.5
        self._outline = False
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    @property
    def mask(self) -> np.ndarray | None:
        return self._mask

    @property
    def tiled(self) -> bool:
        return self._grid is not None

    @property
    def tile_cache(self) -> TileCache:
        return self._tiles

    @property
    def grid(self) -> PyramidGrid | None:
        return self._grid

    def set_mask(self, mask: np.ndarray | None, tiled: bool | None = None) -> None:
        """Show ``mask`` (shared, never copied). ``tiled``: draw it from coverage tiles (a
        big photo's); None decides by its size (over ``BIG_PHOTO_PIXELS``)."""
        self.prepareGeometryChange()
        self._mask = mask
        self._tiles.clear()
        self._empty.clear()
        self._images.clear()
        self._grid = None
        self._occupancy = None
        if mask is None:
            self._qimage = None
        elif tiled or (tiled is None and mask.size > BIG_PHOTO_PIXELS):
            self._qimage = None
            self._grid = PyramidGrid(mask.shape[1], mask.shape[0])
            self._occupancy = MaskOccupancy(mask)
            self._apply_color_table()
        else:
            h, w = mask.shape
            self._qimage = QImage(mask.data, w, h, mask.strides[0], QImage.Format.Format_Indexed8)
            self._apply_color_table()
        self.update()

    def _apply_color_table(self) -> None:
        c = self._color
        self._table = [QColor(c.red(), c.green(), c.blue(), v).rgba() for v in range(256)]
        self._images.clear()
        if self._qimage is None:
            return
        table = [0] * 256
        table[255] = self._color.rgba()
        self._qimage.setColorTable(table)

    def set_color(self, color: QColor) -> None:
        self._color = QColor(color)
        self._apply_color_table()
        self.update()

    def set_opacity(self, opacity: float) -> None:
        self._opacity = opacity
        self.update()

    @property
    def outline(self) -> bool:
        """Drawn as outlines (True) or filled."""
        return self._outline

    def set_outline(self, outline: bool) -> None:
        self._outline = outline
        self.update()

    def refresh(self, region: Region, margin: float = 1.0) -> None:
        """Repaint only ``region`` (plus ``margin`` image pixels for the outline view)."""
        if self._grid is not None and self._mask is not None:
            box = (region.left, region.top, region.left + region.width, region.top + region.height)
            if self._occupancy is not None:
                self._occupancy.update(box)
            for key in self._tiles.keys():
                tile = self._tiles.peek(key)
                if tile is not None and update_mask_tile(tile, self._mask, self._grid, key, box):
                    self._empty[key] = not tile.any()
                    self._images.pop(key, None)
        self.update(
            QRectF(
                region.left - margin,
                region.top - margin,
                region.width + 2 * margin,
                region.height + 2 * margin,
            )
        )

    def boundingRect(self) -> QRectF:
        if self._mask is None:
            return QRectF()
        return QRectF(0, 0, self._mask.shape[1], self._mask.shape[0])

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if self._mask is None or (self._qimage is None and self._grid is None):
            return
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        if self._outline:
            self._paint_outline(painter, exposed)
            return
        if self._grid is not None:
            self._paint_tiles(painter, exposed)
            return
        r = exposed.toAlignedRect()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.setOpacity(self._opacity)
        painter.drawImage(QRectF(r), self._qimage, QRectF(r))

    def tile(self, key: TileKey) -> np.ndarray:
        """The coverage tile ``key`` (tiled mode), computed from the mask when not cached."""
        assert self._grid is not None and self._mask is not None
        tile = self._tiles.get(key)
        if tile is None:
            tile = mask_tile(self._mask, self._grid, key, self._occupancy)
            self._tiles.put(key, tile)
            self._empty[key] = not tile.any()
            self._images.pop(key, None)
        return tile

    def _tile_image(self, key: TileKey) -> QImage | None:
        """The tile in colour (premultiplied ARGB: drawn without a conversion), or None
        for a tile without stone."""
        tile = self.tile(key)
        if self._empty.get(key, False):
            return None
        image = self._images.get(key)
        if image is None:
            h, w = tile.shape
            indexed = QImage(tile.data, w, h, tile.strides[0], QImage.Format.Format_Indexed8)
            indexed.setColorTable(self._table)
            image = indexed.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
            self._images[key] = image
            while len(self._images) > MASK_IMAGES_KEPT:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(key)
        return image

    def _paint_tiles(self, painter: QPainter, exposed: QRectF) -> None:
        grid = self._grid
        assert grid is not None
        scale = _device_scale(painter)
        level = grid.level_for_scale(scale)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, level > 0)
        painter.setOpacity(self._opacity)
        box = (exposed.left(), exposed.top(), exposed.right(), exposed.bottom())
        for key in grid.tiles_in(level, box):
            image = self._tile_image(key)
            if image is not None:
                painter.drawImage(_rect(grid.image_rect(key)), image)

    def _paint_outline(self, painter: QPainter, exposed: QRectF) -> None:
        """Stone borders, two screen pixels wide, computed for the exposed part only."""
        assert self._mask is not None
        h, w = self._mask.shape
        x0, y0 = max(0, math.floor(exposed.left()) - 1), max(0, math.floor(exposed.top()) - 1)
        x1, y1 = min(w, math.ceil(exposed.right()) + 1), min(h, math.ceil(exposed.bottom()) + 1)
        transform = painter.worldTransform()
        device = transform.mapRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        dw, dh = max(1, round(device.width())), max(1, round(device.height()))
        if dw * dh > 40_000_000:
            return
        sub = self._mask[y0:y1, x0:x1]
        small = cv2.resize(sub, (dw, dh), interpolation=cv2.INTER_NEAREST)
        kernel = np.ones((3, 3), np.uint8)
        edge = cv2.morphologyEx(small, cv2.MORPH_GRADIENT, kernel) > 0
        halo = cv2.dilate(edge.view(np.uint8), kernel) > 0
        rgba = np.zeros((dh, dw, 4), np.uint8)  # premultiplied BGRA in memory
        rgba[halo & ~edge] = (0, 0, 0, 150)
        c = self._color
        rgba[edge] = (c.blue(), c.green(), c.red(), 255)
        image = QImage(
            rgba.data, dw, dh, rgba.strides[0], QImage.Format.Format_ARGB32_Premultiplied
        )
        painter.save()
        painter.setTransform(QTransform())
        painter.setOpacity(max(0.6, self._opacity))
        painter.drawImage(device, image)
        painter.restore()


class BrushCursorItem(QGraphicsItem):
    """A circle of the brush's true size, visible on dark and light photos."""

    def __init__(self) -> None:
        super().__init__()
        self._radius = 10.0
        self._margin = 2.0
        self._erase = False
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    @property
    def radius(self) -> float:
        return self._radius

    def set_geometry(self, radius: float, margin: float, erase: bool) -> None:
        if (radius, margin, erase) != (self._radius, self._margin, self._erase):
            self.prepareGeometryChange()
            self._radius, self._margin, self._erase = radius, margin, erase
            self.update()

    def boundingRect(self) -> QRectF:
        r = self._radius + self._margin
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        dark = QPen(QColor(0, 0, 0, 170), 3)
        dark.setCosmetic(True)
        painter.setPen(dark)
        painter.drawEllipse(QPointF(0, 0), self._radius, self._radius)
        light = QPen(ERASE_COLOR if self._erase else QColor(255, 255, 255), 1.2)
        light.setCosmetic(True)
        painter.setPen(light)
        painter.drawEllipse(QPointF(0, 0), self._radius, self._radius)
