"""The photo with its mask as a coloured overlay; the mouse paints through the tools.

Built to stay smooth on a 6000x4000 photo:

- the photo is drawn from a small pyramid (full, 1/2, 1/4 ... size) chosen by the zoom,
  and only the exposed part of it is drawn;
- the mask overlay is an 8-bit indexed ``QImage`` that *shares memory* with the
  ``MaskDocument`` array, so a stroke converts nothing: the canvas repaints only the
  region the document reports as changed;
- the outline view is computed at screen resolution for the exposed part only, so it is
  one or two screen pixels wide at any zoom.

A photo too big to hold whole (a ``TiledPhoto``: an orthomosaic) is drawn from a tile pyramid
built on background threads for what is on screen (``TiledPhotoItem``); its mask overlay is
drawn from coverage tiles of the mask that a stroke updates where it touched.

A second overlay (``set_prediction``) shows a model's mask in its own colour. The smart tools
(click or box a stone, the magic wand: ``stoneseg_core.editing.smart_tools``) read the photo
and the model's stones from the canvas's ``SmartContext``: ``set_stone_layer`` gives the
stones, ``stones_wanted`` asks for them (a click waiting for a prediction), ``tool_message``
says what a tool has to say.
``set_interaction`` lends the left button to another mode (the grain tools: draw a
scale-bar line, pick or cut stones) without touching the painting tool.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QCursor,
    QFont,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPathItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from stoneseg_core.editing.mask_document import MaskChange, MaskDocument
from stoneseg_core.editing.stone_layer import StoneLayer
from stoneseg_core.editing.tools import PointerEvent, SmartContext, Tool, ToolKind, make_tool

from ..widgets.interaction import CanvasInteraction
from ..widgets.theme import CANVAS_BACKGROUND as BACKGROUND_COLOR
from ..widgets.theme import ERASE_COLOR, PREDICTION_COLOR, STONE_COLOR
from ..workers import collect_garbage_on_gui_thread
from .canvas_items import BrushCursorItem, MaskOverlayItem, PhotoItem, TiledPhotoItem
from .display import DisplayImage, PixelInfo
from .photo_pixels import photo_pixels
from .tiled_photo import TiledPhoto
from .tool_settings import ToolSettings

ZOOM_MAX = 32.0
TILE_POLL_MS = 30  # how often built tiles of a big photo are collected from the loader
FIT_MARGIN = 12  # screen pixels around a fitted photo


# ----------------------------------------------------------------------------- the view
class MaskCanvas(QGraphicsView):
    """Shows one photo and its ``MaskDocument``; mouse and keys edit it through the tools.

    Left button: the tool; right button: its opposite (brush erases, fill removes a stone).
    Wheel: zoom around the pointer. Middle button, or Space held, and drag: pan.
    """

    cursor_moved = Signal(object)  # PixelInfo, or None when the pointer is off the photo
    zoom_changed = Signal(float)
    # a big photo's coarse levels being built: the fraction done; -1 when over
    pyramid_progress = Signal(float)
    # the smart tools want the model's stones: True when a click waits for them
    stones_wanted = Signal(bool)
    tool_message = Signal(str)  # what the tool in use has to tell the user

    def __init__(self, tool_settings: ToolSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = tool_settings
        self._scene = QGraphicsScene(self)
        self._scene.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
        self.setScene(self._scene)

        self._photo_item = PhotoItem()
        self.tiled_item = TiledPhotoItem()
        self.tiled_item.visible_rect = self.visible_image_rect
        self.tiled_item.on_requested = self._start_tile_poll
        self._tile_timer = QTimer(self)
        self._tile_timer.setInterval(TILE_POLL_MS)
        self._tile_timer.timeout.connect(self._collect_tiles)
        self._tile_errors_shown = 0
        self._preview_shown = False
        self._coarse_shown = False
        self.mask_item = MaskOverlayItem(STONE_COLOR)
        self.mask_item.setZValue(1)
        self.prediction_item = MaskOverlayItem(PREDICTION_COLOR)
        self.prediction_item.setZValue(2)
        self.prediction_item.setVisible(False)
        self._cursor_item = BrushCursorItem()
        self._cursor_item.setZValue(10)
        self._cursor_item.setVisible(False)
        self._lasso_item = QGraphicsPathItem()
        self._lasso_item.setZValue(11)
        for item in (
            self._photo_item,
            self.tiled_item,
            self.mask_item,
            self.prediction_item,
            self._cursor_item,
            self._lasso_item,
        ):
            self._scene.addItem(item)

        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setBackgroundBrush(QBrush(BACKGROUND_COLOR))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.setMinimumSize(200, 150)

        self._document: MaskDocument | None = None
        self._display: DisplayImage | TiledPhoto | None = None
        self.smart = SmartContext()  # the photo and the model's stones, for the smart tools
        self._tool: Tool = make_tool(tool_settings.tool, self.smart)
        self._message = "Open a folder of photos (Ctrl+O) or drop it here."
        self._banner = ""
        self._fit_mode = True
        self._pan_last: QPointF | None = None
        self._space_held = False
        self._pressed: Qt.MouseButton | None = None
        self._shift = False  # Shift was held when the button went down
        self._last_pos: QPointF | None = None
        self._interaction: CanvasInteraction | None = None

        tool_settings.tool_changed.connect(self._on_settings_tool_changed)
        tool_settings.brush_size_changed.connect(self._on_settings_brush_size_changed)
        tool_settings.overlay_changed.connect(self._on_settings_overlay_changed)
        self._on_settings_overlay_changed()
        self._update_view_cursor()

    # ------------------------------------------------------------------ public API
    @property
    def document(self) -> MaskDocument | None:
        return self._document

    @property
    def display_image(self) -> DisplayImage | TiledPhoto | None:
        return self._display

    @property
    def tool(self) -> Tool:
        return self._tool

    @property
    def message(self) -> str:
        return self._message

    def show_image(self, display: DisplayImage | TiledPhoto, document: MaskDocument) -> None:
        """Show a photo and its mask, fitted to the window, ready to paint."""
        if (document.height, document.width) != (display.height, display.width):
            raise ValueError("The mask and the photo must have the same size.")
        self._detach_document()
        self._display = display
        self._document = document
        document.add_listener(self._on_document_changed)
        self._set_photo(display)
        self.mask_item.set_mask(document.mask, tiled=isinstance(display, TiledPhoto))
        self.set_prediction(None)
        self.smart.set_photo(photo_pixels(display))
        self._message = ""
        self._banner = ""
        self._on_settings_overlay_changed()
        self.fit_to_window()
        self._update_lasso()
        self._update_view_cursor()
        self.viewport().update()
        if self._settings.tool.uses_stones:
            self.stones_wanted.emit(False)

    def show_message(self, text: str) -> None:
        """Show no photo, only ``text`` (loading, unreadable file, empty folder...)."""
        self._detach_document()
        self._display = None
        self._set_photo(None)
        self.mask_item.set_mask(None)
        self.set_prediction(None)
        self.smart.set_photo(None)
        self._message = text
        self._banner = ""
        self._cursor_item.setVisible(False)
        self._update_lasso()
        self._update_view_cursor()
        self.setSceneRect(QRectF(0, 0, 1, 1))
        self.viewport().update()

    @property
    def banner(self) -> str:
        return self._banner

    def set_banner(self, text: str) -> None:
        """A short notice drawn over the top of the photo (e.g. 'predicted, not reviewed')."""
        if text != self._banner:
            self._banner = text
            self.viewport().update()

    def set_prediction(self, mask: np.ndarray | None) -> None:
        """A second overlay in its own colour (a model's mask); None hides it."""
        if mask is not None and self._display is not None:
            if mask.shape[:2] != (self._display.height, self._display.width):
                raise ValueError("The prediction must have the size of the photo.")
        self.prediction_item.set_mask(mask, tiled=isinstance(self._display, TiledPhoto))
        self._style_prediction()
        self.prediction_item.setVisible(mask is not None and self._settings.overlay_visible)
        self.viewport().update()  # the legend

    @property
    def stone_layer(self) -> StoneLayer | None:
        return self.smart.stones

    def set_stone_layer(self, stones: StoneLayer | None) -> None:
        """The model's stones for the photo shown (the smart tools'); a click that waited
        for them is applied now."""
        document = self._document
        if stones is not None and document is not None and stones.shape != document.shape:
            raise ValueError("The stones must have the size of the photo.")
        waiting = self._tool.wants_stones
        self.smart.stones = stones
        if waiting and stones is not None and self._document is not None:
            self._tool.apply_pending(self._document)
            self._after_tool()

    def prediction_outlined(self) -> bool:
        """Whether the prediction is drawn as outlines: always over a mask that has stones
        (orange filled over cyan blended to olive, and neither could be read), else as the
        overlay setting says."""
        mask = self.mask_item.mask
        return self._settings.outline_only or (mask is not None and bool(mask.any()))

    def _style_prediction(self) -> None:
        if self.prediction_item.mask is not None:
            self.prediction_item.set_outline(self.prediction_outlined())

    def legend_text(self) -> str:
        """The overlay's legend drawn in the photo's corner while a prediction is shown."""
        if self.prediction_item.mask is None or not self.prediction_item.isVisible():
            return ""
        # as styled when shown (never a scan of the mask on each repaint)
        how = "outlines" if self.prediction_item.outline else "filled"
        return f"■ your mask (cyan)    ▢ the model's prediction (orange {how})"

    def zoom(self) -> float:
        return self.transform().m11()

    def is_fitted(self) -> bool:
        return self._fit_mode

    def fit_to_window(self) -> None:
        if self._display is None:
            return
        vw, vh = self.viewport().width(), self.viewport().height()
        w, h = self._display.width, self._display.height
        scale = min((vw - 2 * FIT_MARGIN) / w, (vh - 2 * FIT_MARGIN) / h)
        scale = max(scale, 1e-3)
        self._apply_zoom(scale, None)
        self.centerOn(w / 2, h / 2)
        self._fit_mode = True

    def zoom_to_actual_size(self) -> None:
        """100 %: one photo pixel per screen pixel, around the pointer if it is on the view."""
        self.set_zoom(1.0, self._pointer_anchor())

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom() * 1.25, self._pointer_anchor())

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom() / 1.25, self._pointer_anchor())

    def set_zoom(self, scale: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the scene point under ``anchor`` (viewport coordinates) in place."""
        if self._display is None:
            return
        self._apply_zoom(scale, anchor)
        self._fit_mode = False

    def viewport_to_image(self, pos: QPointF) -> QPointF:
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(QPointF(pos))

    def image_to_viewport(self, x: float, y: float) -> QPointF:
        return self.viewportTransform().map(QPointF(x, y))

    @property
    def interaction(self) -> CanvasInteraction | None:
        return self._interaction

    def set_interaction(self, interaction: CanvasInteraction | None) -> None:
        """Lend the left button to ``interaction`` instead of the painting tool; None gives it back."""
        if interaction is self._interaction:
            return
        previous, self._interaction = self._interaction, interaction
        if previous is not None:
            previous.reset()
        if self._document is not None:
            self._tool.cancel(self._document)
            self._pressed = None
        self._update_lasso()
        self._update_cursor_item(self._last_pos)
        self._update_view_cursor()

    def finish_polygon(self) -> None:
        if self._document is not None:
            self._tool.finish(self._document)
            self._update_lasso()

    def cancel_tool(self) -> None:
        if self._document is not None:
            self._tool.cancel(self._document)
        self._update_lasso()

    def visible_image_rect(self) -> QRectF:
        """The part of the photo's coordinates that the viewport shows."""
        return self.mapToScene(self.viewport().rect()).boundingRect()

    # ------------------------------------------------------------------ internals
    def _set_photo(self, display: DisplayImage | TiledPhoto | None) -> None:
        tiled = display if isinstance(display, TiledPhoto) else None
        self._photo_item.set_display(display if isinstance(display, DisplayImage) else None)
        self.tiled_item.drawn_levels.clear()
        self.tiled_item.set_photo(tiled)
        self._tile_errors_shown = 0
        self._preview_shown = False
        self._coarse_shown = False
        self.pyramid_progress.emit(-1.0)  # whatever the last photo was building is over
        if tiled is not None:
            collect_garbage_on_gui_thread()  # the tile threads must never free a Qt object
            tiled.start()
            self._start_tile_poll()
        else:
            self._tile_timer.stop()

    def _start_tile_poll(self) -> None:
        if not self._tile_timer.isActive():
            self._tile_timer.start()

    def _collect_tiles(self) -> None:
        photo = self.tiled_item.photo
        loader = photo.loader if photo is not None else None
        if loader is None:
            self._tile_timer.stop()
            return
        for key in loader.take_ready():
            x0, y0, x1, y1 = photo.grid.image_rect(key)
            self.tiled_item.update(QRectF(x0, y0, x1 - x0, y1 - y0))
        if photo.preview_ready.is_set() and not self._preview_shown:
            self._preview_shown = True
            self.tiled_item.update()
        progress = photo.coarse_progress
        if progress is not None and not photo.coarse_ready.is_set():
            self.pyramid_progress.emit(progress)
        if photo.coarse_ready.is_set() and not self._coarse_shown:
            self._coarse_shown = True
            if not photo.coarse_from_cache:
                self.pyramid_progress.emit(-1.0)
            self.tiled_item.update()  # the coarse tiles, asked again: ready at once now
        if len(loader.errors) > self._tile_errors_shown:
            self._tile_errors_shown = len(loader.errors)
            self.set_banner(f"{photo.path.name}: {loader.errors[-1]}")
        if not loader.pending and not photo.preview_pending and not photo.coarse_pending:
            if photo.coarse_progress is None and not self._coarse_shown:
                self.pyramid_progress.emit(-1.0)  # over without levels (closed, failed)
            self._tile_timer.stop()

    def _detach_document(self) -> None:
        if self._document is not None:
            self._tool.cancel(self._document)
            self._document.remove_listener(self._on_document_changed)
        self._document = None
        self._pressed = None

    def _min_zoom(self) -> float:
        if self._display is None:
            return 0.01
        vw, vh = self.viewport().width(), self.viewport().height()
        fit = min(vw / self._display.width, vh / self._display.height)
        return max(1e-3, min(0.05, fit / 4))

    def _apply_zoom(self, scale: float, anchor: QPointF | None) -> None:
        scale = min(ZOOM_MAX, max(self._min_zoom(), scale))
        if anchor is None:
            anchor = QPointF(self.viewport().width() / 2, self.viewport().height() / 2)
        scene_point = self.viewport_to_image(anchor)
        self.setTransform(QTransform.fromScale(scale, scale))
        self._update_scene_rect()
        moved = self.image_to_viewport(scene_point.x(), scene_point.y()) - anchor
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setValue(hbar.value() + round(moved.x()))
        vbar.setValue(vbar.value() + round(moved.y()))
        self._update_cursor_item(self._last_pos)
        self.zoom_changed.emit(scale)

    def _update_scene_rect(self) -> None:
        if self._display is None:
            return
        m = FIT_MARGIN / max(self.zoom(), 1e-6)
        self.setSceneRect(QRectF(-m, -m, self._display.width + 2 * m, self._display.height + 2 * m))

    def _pointer_anchor(self) -> QPointF | None:
        pos = self.viewport().mapFromGlobal(QCursor.pos())
        if self.viewport().rect().contains(pos):
            return QPointF(pos)
        return None

    def _outline_margin(self) -> float:
        # the outline view is drawn in screen pixels: repaint a few of them around a change
        return 1.0 + 3.0 / max(self.zoom(), 1e-6)

    def _pointer_event(self, pos: QPointF, secondary: bool, shift: bool = False) -> PointerEvent:
        p = self.viewport_to_image(pos)
        return PointerEvent(
            p.x(),
            p.y(),
            secondary=secondary,
            radius=self._settings.brush_radius,
            tolerance=6.0 / max(self.zoom(), 1e-6),
            shift=shift,
        )

    def _tool_event(self, pos: QPointF) -> PointerEvent:
        """The event for the tool while a button is held (or none): the button and Shift
        as they were when it went down."""
        held = self._pressed is not None
        return self._pointer_event(
            pos, self._pressed == Qt.MouseButton.RightButton, held and self._shift
        )

    def _after_tool(self, pressed: bool = False) -> None:
        """After the tool had an event: ask for the model's stones when a click waits for
        them (once, at the press), pass on what the tool says, redraw its preview."""
        if pressed and self._tool.wants_stones:
            self.stones_wanted.emit(True)
        message = self._tool.take_message()
        if message:
            self.tool_message.emit(message)
        self._update_lasso()

    def _on_document_changed(self, change: MaskChange) -> None:
        self.mask_item.refresh(change.region, self._outline_margin())
        # the first stone painted under a filled prediction: the prediction turns to
        # outlines (filled orange over cyan reads as neither); only the changed box is read
        item = self.prediction_item
        if item.mask is not None and not item.outline and self._document is not None:
            if self._document.mask[change.region.slices].any():
                self._style_prediction()
                self.viewport().update()  # the legend says "outlines"

    def _update_cursor_item(self, pos: QPointF | None) -> None:
        item = self._cursor_item
        show = (
            pos is not None
            and self._document is not None
            and self._settings.tool.uses_brush
            and self._interaction is None
            and self._pan_last is None
            and not self._space_held
        )
        if not show:
            item.setVisible(False)
            return
        p = self.viewport_to_image(pos)
        erase = (
            self._settings.tool == ToolKind.ERASER or self._pressed == Qt.MouseButton.RightButton
        )
        item.set_geometry(self._settings.brush_radius, 4.0 / max(self.zoom(), 1e-6), erase)
        item.setPos(p)
        item.setVisible(True)

    def _pixel_info(self, pos: QPointF) -> PixelInfo | None:
        if self._display is None:
            return None
        p = self.viewport_to_image(pos)
        x, y = math.floor(p.x()), math.floor(p.y())
        if not (0 <= x < self._display.width and 0 <= y < self._display.height):
            return None
        stone = bool(self._document.mask[y, x]) if self._document is not None else None
        return PixelInfo(x, y, stone, self._display.pixel_rgb(x, y))

    def _update_lasso(self) -> None:
        """Draw the tool's preview: the lasso's polygon, the box, the wand's outlines."""
        shown = self._document is not None and self._interaction is None
        outlines = [o for o in self._tool.preview_outlines() if len(o) >= 2] if shown else []
        if not outlines:
            self._lasso_item.setVisible(False)
            return
        path = QPainterPath()
        path.setFillRule(Qt.FillRule.OddEvenFill)  # an outline inside another is a hole
        for points in outlines:
            path.moveTo(*points[0])
            for x, y in points[1:]:
                path.lineTo(x, y)
            path.closeSubpath()
        color = ERASE_COLOR if self._tool.erasing else STONE_COLOR
        pen = QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        fill = QColor(color)
        fill.setAlpha(70)
        self._lasso_item.setPen(pen)
        self._lasso_item.setBrush(QBrush(fill))
        self._lasso_item.setPath(path)
        self._lasso_item.setVisible(True)

    def _update_view_cursor(self) -> None:
        if self._pan_last is not None:
            shape = Qt.CursorShape.ClosedHandCursor
        elif self._space_held:
            shape = Qt.CursorShape.OpenHandCursor
        elif self._document is None:
            shape = Qt.CursorShape.ArrowCursor
        else:
            shape = Qt.CursorShape.CrossCursor
        self.viewport().setCursor(shape)

    # ------------------------------------------------------------------ settings
    def _on_settings_tool_changed(self, kind: ToolKind) -> None:
        if self._document is not None:
            self._tool.cancel(self._document)
        self._tool = make_tool(kind, self.smart)
        self._update_lasso()
        self._update_cursor_item(self._last_pos)
        if kind.uses_stones and self._document is not None and self.smart.stones is None:
            self.stones_wanted.emit(False)

    def _on_settings_brush_size_changed(self, size: int) -> None:
        self._update_cursor_item(self._last_pos)

    def _on_settings_overlay_changed(self) -> None:
        s = self._settings
        for item in (self.mask_item, self.prediction_item):
            item.set_opacity(s.opacity)
        self.mask_item.set_outline(s.outline_only)
        self._style_prediction()
        self.mask_item.setVisible(s.overlay_visible and self.mask_item.mask is not None)
        self.prediction_item.setVisible(s.overlay_visible and self.prediction_item.mask is not None)
        self.viewport().update()  # the legend

    # ------------------------------------------------------------------ Qt events
    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        pos = event.position()
        self._last_pos = pos
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space_held
        ):
            self._pan_last = pos
            self._update_cursor_item(None)
            self._update_view_cursor()
            event.accept()
            return
        if self._interaction is not None and button in (
            Qt.MouseButton.LeftButton,
            Qt.MouseButton.RightButton,
        ):
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            if button == Qt.MouseButton.LeftButton and self._display is not None:
                p = self.viewport_to_image(pos)
                ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
                self._interaction.press(p.x(), p.y(), ctrl)
            event.accept()
            return
        if button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            if self._document is not None and self._pressed is None:
                self._pressed = button
                self._shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                self._tool.press(self._document, self._tool_event(pos))
                self._after_tool(pressed=True)
                self._update_cursor_item(pos)
            event.accept()
            return
        event.ignore()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        self._last_pos = pos
        if self._pan_last is not None:
            delta = pos - self._pan_last
            self._pan_last = pos
            hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
            hbar.setValue(hbar.value() - round(delta.x()))
            vbar.setValue(vbar.value() - round(delta.y()))
            self._fit_mode = False
            event.accept()
            return
        self._update_cursor_item(pos)
        if self._interaction is not None:
            if self._display is not None:
                p = self.viewport_to_image(pos)
                held = bool(event.buttons() & Qt.MouseButton.LeftButton)
                self._interaction.move(p.x(), p.y(), held)
        elif self._document is not None:
            ev = self._tool_event(pos)
            if self._pressed is not None:
                self._tool.move(self._document, ev)
            else:
                self._tool.hover(ev)
            self._after_tool()
        self.cursor_moved.emit(self._pixel_info(pos))  # after the edit: shows what is there now
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        button = event.button()
        if self._pan_last is not None and button in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_last = None
            self._update_view_cursor()
            self._update_cursor_item(pos)
            event.accept()
            return
        if self._interaction is not None:
            if button == Qt.MouseButton.LeftButton and self._display is not None:
                p = self.viewport_to_image(pos)
                self._interaction.release(p.x(), p.y())
            event.accept()
            return
        if self._pressed is not None and button == self._pressed:
            ev = self._tool_event(pos)
            self._pressed = None
            if self._document is not None:
                self._tool.release(self._document, ev)
            self._after_tool()
            self._update_cursor_item(pos)
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if self._interaction is not None:
            self.mousePressEvent(event)
            return
        if (
            button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton)
            and not self._space_held
        ):
            if self._document is not None and self._pressed is None:
                if self._settings.tool.uses_brush:
                    self._pressed = button  # a stroke starts; its release ends it
                self._shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                ev = self._pointer_event(
                    event.position(), button == Qt.MouseButton.RightButton, self._shift
                )
                self._tool.double_click(self._document, ev)
                self._after_tool()
            event.accept()
            return
        self.mousePressEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta == 0:
            delta = event.pixelDelta().y()
        if delta == 0 or self._display is None:
            event.ignore()
            return
        ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if not ctrl and self._document is not None and self._tool.wheel(delta / 120):
            self._after_tool()  # the magic wand's tolerance; Ctrl+wheel still zooms
            event.accept()
            return
        self.set_zoom(self.zoom() * (1.0015**delta), event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = True
                self._update_cursor_item(None)
                self._update_view_cursor()
            event.accept()
            return
        if self._interaction is not None and key == Qt.Key.Key_Escape:
            self._interaction.cancel()
            event.accept()
            return
        if self._document is not None and self._tool.busy:
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.finish_polygon()
                event.accept()
                return
            if key == Qt.Key.Key_Escape:
                self.cancel_tool()
                event.accept()
                return
            if key == Qt.Key.Key_Backspace:
                self._tool.remove_last_point()
                self._update_lasso()
                event.accept()
                return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            self._update_view_cursor()
            self._update_cursor_item(self._last_pos)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:
        self._space_held = False
        self._update_view_cursor()
        super().focusOutEvent(event)

    def leaveEvent(self, event) -> None:
        self._last_pos = None
        self._cursor_item.setVisible(False)
        self.cursor_moved.emit(None)
        super().leaveEvent(event)

    def _draw_legend(self, painter: QPainter, text: str) -> None:
        """``text`` in a dark box at the photo view's bottom-left corner, its two marks in the
        overlays' colours."""
        painter.save()
        painter.setTransform(QTransform())
        metrics = painter.fontMetrics()
        width = min(self.viewport().width() - 20, metrics.horizontalAdvance(text) + 20)
        box = QRectF(
            10, self.viewport().height() - metrics.height() - 22, width, metrics.height() + 12
        )
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 22, 26, 210))
        painter.drawRoundedRect(box, 6, 6)
        mask_part, prediction_part = text.split("    ", 1)
        x = box.left() + 10
        for part, color in ((mask_part, STONE_COLOR), (prediction_part, PREDICTION_COLOR)):
            painter.setPen(color)
            painter.drawText(
                QRectF(x, box.top(), box.right() - x, box.height()),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                metrics.elidedText(part, Qt.TextElideMode.ElideRight, int(box.right() - x - 6)),
            )
            x += metrics.horizontalAdvance(part + "    ")
        painter.restore()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit_to_window()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        legend = "" if self._message else self.legend_text()
        if legend:
            self._draw_legend(painter, legend)
        if not self._message and not self._banner:
            return
        painter.save()
        painter.setTransform(QTransform())
        font = QFont(self.font())
        if self._message:
            font.setPointSizeF(font.pointSizeF() * 1.25)
            painter.setFont(font)
            painter.setPen(QColor(200, 203, 210))
            area = QRect(self.viewport().rect()).adjusted(40, 40, -40, -40)
            painter.drawText(
                area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message
            )
        elif self._banner:
            font.setBold(True)
            painter.setFont(font)
            metrics = painter.fontMetrics()
            width = min(self.viewport().width() - 20, metrics.horizontalAdvance(self._banner) + 28)
            box = QRectF((self.viewport().width() - width) / 2, 10, width, metrics.height() + 12)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(227, 162, 26, 230))
            painter.drawRoundedRect(box, box.height() / 2, box.height() / 2)
            painter.setPen(QColor(25, 25, 25))
            text = metrics.elidedText(self._banner, Qt.TextElideMode.ElideRight, int(width - 24))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()
