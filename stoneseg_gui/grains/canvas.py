"""What the grain tools put on the canvas: numbered stone outlines, a line guide, mouse modes.

- ``StoneOutlineItem`` draws the outline and number of every stone of a label image. An
  outline is traced once per stone (``cv2.findContours`` on that stone's own box) and
  traced again only for the stones an edit cut or merged; ``paint`` draws only the
  stones in the exposed rectangle, with pens of constant screen width, and writes a
  number only where the stone is large enough on screen to hold it.
- ``LineGuideItem`` is the line being drawn (scale bar, cut) with its length.
- ``LineInteraction`` and ``PickInteraction`` are plain-Python ``CanvasInteraction``s:
  image coordinates in, callbacks out, so they are tested without a mouse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPolygonF, QTransform
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from stoneseg_core.grains import Stone

from ..widgets.interaction import CanvasInteraction

Point = tuple[float, float]

OUTLINE_COLOR = QColor(255, 214, 10)  # stones kept: amber, apart from the blue mask
EXCLUDED_COLOR = QColor(170, 174, 182)  # stones left out: grey, dashed
SELECTED_COLOR = QColor(255, 70, 190)  # chosen stones: magenta, filled
HALO_COLOR = QColor(0, 0, 0, 160)
GUIDE_COLOR = QColor(255, 255, 255)


@dataclass
class _Outline:
    path: QPainterPath
    rect: QRectF  # the stone's box in image pixels
    centre: QPointF
    excluded: bool


def _trace(mask: np.ndarray, row0: int, col0: int) -> QPainterPath:
    """Outline of a boolean stone mask through its border pixels' centres, in image coordinates."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    path = QPainterPath()
    for contour in contours:
        pts = contour[:, 0, :].astype(np.float64) + (col0 + 0.5, row0 + 0.5)
        if len(pts) == 1:  # a one-pixel stone: its own square
            x, y = pts[0]
            path.addRect(QRectF(x - 0.5, y - 0.5, 1.0, 1.0))
            continue
        path.addPolygon(QPolygonF([QPointF(x, y) for x, y in pts]))
        path.closeSubpath()
    return path


class StoneOutlineItem(QGraphicsItem):
    """Numbered outlines of the stones of one label image, drawn over the photo."""

    def __init__(self) -> None:
        super().__init__()
        self._outlines: dict[int, _Outline] = {}
        self._bounds = QRectF()
        self._selected: tuple[int, ...] = ()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(5)
        self.setVisible(False)

    # ------------------------------------------------------------------ data
    def labels(self) -> list[int]:
        """The stones outlined, in label order (for tests and the status bar)."""
        return sorted(self._outlines)

    @property
    def selected(self) -> tuple[int, ...]:
        return self._selected

    def clear(self) -> None:
        self.prepareGeometryChange()
        self._outlines.clear()
        self._bounds = QRectF()
        self._selected = ()
        self.update()

    def set_stones(self, labels: np.ndarray, stones: Sequence[Stone]) -> None:
        """Trace every stone of ``labels``; ``stones`` says which ones are excluded."""
        self.prepareGeometryChange()
        h, w = labels.shape
        self._bounds = QRectF(0, 0, w, h)
        self._outlines.clear()
        self._retrace(labels, stones, [s.label for s in stones])
        self.update()

    def update_stones(
        self, labels: np.ndarray, stones: Sequence[Stone], changed: Iterable[int]
    ) -> None:
        """Trace again only the ``changed`` labels (cut or merged); refresh every exclusion flag."""
        changed = {int(k) for k in changed}
        dirty = QRectF()
        for k in changed:
            old = self._outlines.pop(k, None)
            if old is not None:
                dirty = dirty.united(old.rect)
        alive = {s.label for s in stones}
        self._retrace(labels, stones, [k for k in changed if k in alive])
        for k in changed & alive:
            dirty = dirty.united(self._outlines[k].rect)
        for s in stones:
            outline = self._outlines.get(s.label)
            if outline is not None and outline.excluded != s.excluded:
                outline.excluded = s.excluded
                dirty = dirty.united(outline.rect)
        self._selected = tuple(k for k in self._selected if k in self._outlines)
        self._update_rect(dirty)

    def set_excluded(self, stones: Sequence[Stone]) -> None:
        for s in stones:
            outline = self._outlines.get(s.label)
            if outline is not None:
                outline.excluded = s.excluded
        self.update()

    def set_selected(self, labels: Sequence[int]) -> None:
        labels = tuple(k for k in labels if k in self._outlines)
        if labels == self._selected:
            return
        dirty = QRectF()
        for k in set(labels) ^ set(self._selected):
            dirty = dirty.united(self._outlines[k].rect)
        self._selected = labels
        self._update_rect(dirty)

    def _retrace(self, labels: np.ndarray, stones: Sequence[Stone], which: Sequence[int]) -> None:
        if not which:
            return
        by_label = {s.label: s for s in stones}
        for k in which:
            s = by_label[k]
            r0, c0, r1, c1 = s.bbox
            mask = labels[r0:r1, c0:c1] == k
            self._outlines[k] = _Outline(
                _trace(mask, r0, c0),
                QRectF(c0, r0, c1 - c0, r1 - r0),
                QPointF(s.centroid_x + 0.5, s.centroid_y + 0.5),
                s.excluded,
            )

    def _update_rect(self, rect: QRectF) -> None:
        if not rect.isEmpty():
            self.update(rect.adjusted(-2, -2, 2, 2))  # pens are drawn a little outside the box

    # ------------------------------------------------------------------ drawing
    def boundingRect(self) -> QRectF:
        return self._bounds.adjusted(-2, -2, 2, 2) if not self._bounds.isEmpty() else QRectF()

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        exposed = option.exposedRect.adjusted(-2, -2, 2, 2)
        shown = [(k, o) for k, o in self._outlines.items() if o.rect.intersects(exposed)]
        if not shown:
            return
        selected = set(self._selected)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        halo = QPen(HALO_COLOR, 3.2)
        halo.setCosmetic(True)
        kept = QPen(OUTLINE_COLOR, 1.4)
        kept.setCosmetic(True)
        left_out = QPen(EXCLUDED_COLOR, 1.4, Qt.PenStyle.DashLine)
        left_out.setCosmetic(True)
        chosen = QPen(SELECTED_COLOR, 2.4)
        chosen.setCosmetic(True)
        fill = QColor(SELECTED_COLOR)
        fill.setAlpha(70)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(halo)
        for _, o in shown:
            painter.drawPath(o.path)
        for k, o in shown:
            if k in selected:
                continue
            painter.setPen(left_out if o.excluded else kept)
            painter.drawPath(o.path)
        painter.setBrush(QBrush(fill))
        painter.setPen(chosen)
        for k, o in shown:
            if k in selected:
                painter.drawPath(o.path)
        self._paint_numbers(painter, shown, selected)

    def _paint_numbers(
        self, painter: QPainter, shown: list[tuple[int, _Outline]], selected: set[int]
    ) -> None:
        """Numbers at a constant screen size, where the stone is big enough on screen."""
        transform = painter.worldTransform()
        painter.save()
        painter.setTransform(QTransform())
        font = QFont(painter.font())
        font.setPointSizeF(8.5)
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        text_h = metrics.height()
        painter.setPen(Qt.PenStyle.NoPen)
        for k, o in shown:
            box = transform.mapRect(o.rect)
            text = str(k)
            text_w = metrics.horizontalAdvance(text)
            if min(box.width(), box.height()) < max(text_h, text_w) + 4:
                continue
            centre = transform.map(o.centre)
            label = QRectF(centre.x() - text_w / 2 - 3, centre.y() - text_h / 2, text_w + 6, text_h)
            painter.setBrush(SELECTED_COLOR if k in selected else QColor(0, 0, 0, 165))
            painter.drawRoundedRect(label, 3, 3)
        painter.setPen(QColor(255, 255, 255))
        for k, o in shown:
            box = transform.mapRect(o.rect)
            text = str(k)
            if min(box.width(), box.height()) < max(text_h, metrics.horizontalAdvance(text)) + 4:
                continue
            centre = transform.map(o.centre)
            painter.drawText(
                QRectF(centre.x() - 40, centre.y() - text_h / 2, 80, text_h),
                Qt.AlignmentFlag.AlignCenter,
                text,
            )
        painter.restore()


class LineGuideItem(QGraphicsItem):
    """The line being drawn, with end ticks and a caption (its length), visible on any photo."""

    def __init__(self) -> None:
        super().__init__()
        self._p0 = QPointF()
        self._p1 = QPointF()
        self._caption = ""
        self._rect = QRectF()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(12)
        self.setVisible(False)

    @property
    def caption(self) -> str:
        return self._caption

    def set_line(self, p0: Point | None, p1: Point | None = None, caption: str = "") -> None:
        if p0 is None:
            self.setVisible(False)
            return
        p1 = p0 if p1 is None else p1
        self.prepareGeometryChange()
        self._p0, self._p1 = QPointF(*p0), QPointF(*p1)
        self._caption = caption
        self._rect = QRectF(self._p0, self._p1).normalized()
        self.setVisible(True)
        self.update()

    def boundingRect(self) -> QRectF:
        # pens and caption are in screen pixels: a generous margin in image pixels
        scale = 1.0
        scene = self.scene()
        if scene is not None and scene.views():
            scale = max(scene.views()[0].transform().m11(), 1e-3)
        m = 160.0 / scale
        return self._rect.adjusted(-m, -m, m, m)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        transform = painter.worldTransform()
        a, b = transform.map(self._p0), transform.map(self._p1)
        painter.save()
        painter.setTransform(QTransform())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        dx, dy = b.x() - a.x(), b.y() - a.y()
        length = math.hypot(dx, dy)
        nx, ny = (-dy / length, dx / length) if length > 0 else (0.0, 1.0)
        ticks = [
            (QPointF(p.x() - 6 * nx, p.y() - 6 * ny), QPointF(p.x() + 6 * nx, p.y() + 6 * ny))
            for p in (a, b)
        ]
        for pen in (QPen(HALO_COLOR, 4.0), QPen(GUIDE_COLOR, 1.6)):
            painter.setPen(pen)
            painter.drawLine(a, b)
            for t0, t1 in ticks:
                painter.drawLine(t0, t1)
        if self._caption:
            metrics = painter.fontMetrics()
            w, h = metrics.horizontalAdvance(self._caption) + 12, metrics.height() + 6
            box = QRectF(b.x() + 10, b.y() + 10, w, h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(20, 20, 22, 215))
            painter.drawRoundedRect(box, 4, 4)
            painter.setPen(GUIDE_COLOR)
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self._caption)
        painter.restore()


class LineInteraction(CanvasInteraction):
    """Draw a segment by two clicks, or by one drag; ``on_line(p0, p1)`` receives it.

    ``on_preview(p0, p1)`` follows the pointer (``(None, None)`` when nothing is drawn);
    Escape drops a started line, or, with none started, calls ``on_leave`` (leave the mode).
    ``drag_threshold()`` is a few screen pixels in image pixels: a shorter drag is a click.
    """

    def __init__(
        self,
        on_line: Callable[[Point, Point], None],
        on_preview: Callable[[Point | None, Point | None], None],
        on_leave: Callable[[], None],
        drag_threshold: Callable[[], float] = lambda: 3.0,
    ) -> None:
        self._on_line, self._on_preview, self._on_leave = on_line, on_preview, on_leave
        self._threshold = drag_threshold
        self._start: Point | None = None
        self._pressed_at: Point | None = None

    @property
    def busy(self) -> bool:
        return self._start is not None

    def press(self, x: float, y: float, ctrl: bool) -> None:
        if self._start is None:
            self._start = self._pressed_at = (x, y)
            self._on_preview(self._start, self._start)
        else:
            self._finish((x, y))

    def move(self, x: float, y: float, dragging: bool) -> None:
        if self._start is not None:
            self._on_preview(self._start, (x, y))

    def release(self, x: float, y: float) -> None:
        pressed, self._pressed_at = self._pressed_at, None
        if self._start is None or pressed is None:
            return
        if math.hypot(x - pressed[0], y - pressed[1]) > self._threshold():
            self._finish((x, y))  # a drag: the line is done

    def cancel(self) -> None:
        if self._start is None:
            self._on_leave()
            return
        self.reset()

    def reset(self) -> None:
        if self._start is not None:
            self._start = self._pressed_at = None
            self._on_preview(None, None)

    def _finish(self, end: Point) -> None:
        start = self._start
        self._start = self._pressed_at = None
        self._on_preview(None, None)
        if start is not None:
            self._on_line(start, end)


class PickInteraction(CanvasInteraction):
    """A click chooses the stone under it; Ctrl+click adds it to (or drops it from) the choice."""

    def __init__(
        self, on_pick: Callable[[float, float, bool], None], on_leave: Callable[[], None]
    ) -> None:
        self._on_pick, self._on_leave = on_pick, on_leave

    def press(self, x: float, y: float, ctrl: bool) -> None:
        self._on_pick(x, y, ctrl)

    def cancel(self) -> None:
        self._on_leave()


__all__ = [
    "LineGuideItem",
    "LineInteraction",
    "PickInteraction",
    "StoneOutlineItem",
]
