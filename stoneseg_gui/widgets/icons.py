"""Small icons drawn with QPainter, so they look the same on every platform and theme.

Each icon is drawn on a 64x64 grid in the palette's text colour plus the stone colour.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QApplication

from .theme import ERASE_COLOR, GOOD_COLOR, STONE_COLOR

STONE = STONE_COLOR
ERASE = ERASE_COLOR
GOOD = GOOD_COLOR

SIZE = 64


def _fg() -> QColor:
    app = QApplication.instance()
    if app is None:
        return QColor(220, 222, 228)
    return app.palette().windowText().color()  # type: ignore[union-attr]


def _pen(color: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pen


def _blob() -> QPainterPath:
    path = QPainterPath(QPointF(14, 30))
    path.cubicTo(10, 14, 30, 6, 44, 12)
    path.cubicTo(58, 18, 56, 40, 46, 50)
    path.cubicTo(34, 60, 16, 52, 14, 30)
    return path


def _lasso_polygon() -> QPolygonF:
    return QPolygonF(
        [QPointF(x, y) for x, y in ((10, 20), (30, 8), (54, 16), (50, 44), (28, 56), (12, 42))]
    )


def _draw_brush(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 7))
    p.drawLine(QPointF(54, 10), QPointF(33, 33))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(STONE)
    tip = QPainterPath(QPointF(34, 28))
    tip.cubicTo(42, 36, 36, 46, 24, 48)
    tip.cubicTo(16, 50, 10, 56, 8, 58)
    tip.cubicTo(8, 46, 12, 34, 22, 30)
    tip.closeSubpath()
    p.drawPath(tip)


def _draw_eraser(p: QPainter, fg: QColor) -> None:
    p.save()
    p.translate(32, 32)
    p.rotate(-40)
    p.setPen(_pen(fg, 3))
    p.setBrush(fg)
    p.drawRoundedRect(QRectF(-4, -12, 26, 24), 3, 3)
    p.setBrush(ERASE)
    p.drawRoundedRect(QRectF(-24, -12, 20, 24), 3, 3)
    p.restore()
    p.setPen(_pen(fg, 3))
    p.drawLine(QPointF(8, 58), QPointF(56, 58))


def _draw_fill(p: QPainter, fg: QColor) -> None:
    """A paint bucket pouring stone colour."""
    p.save()
    p.translate(26, 36)
    p.rotate(-30)
    p.setPen(_pen(fg, 3))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawArc(QRectF(-11, -26, 22, 22), 0, 180 * 16)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(STONE)
    p.drawRoundedRect(QRectF(-14, 0, 28, 16), 3, 3)
    p.setPen(_pen(fg, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRoundedRect(QRectF(-14, -14, 28, 30), 3, 3)
    p.restore()
    drop = QPainterPath(QPointF(52, 30))
    drop.cubicTo(60, 42, 60, 52, 52, 54)
    drop.cubicTo(44, 52, 44, 42, 52, 30)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(STONE)
    p.drawPath(drop)


def _draw_fill_holes(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 3))
    p.setBrush(STONE)
    p.drawEllipse(QPointF(32, 32), 26, 26)
    p.setPen(_pen(QColor(255, 255, 255), 3, Qt.PenStyle.DotLine))
    p.setBrush(QColor(STONE).lighter(140))
    p.drawEllipse(QPointF(32, 32), 11, 11)


def _draw_lasso(p: QPainter, fg: QColor, erase: bool) -> None:
    color = QColor(ERASE if erase else STONE)
    color.setAlpha(150)
    p.setBrush(color)
    p.setPen(_pen(fg, 3.5, Qt.PenStyle.DashLine))
    p.drawPolygon(_lasso_polygon())
    if erase:
        p.setPen(_pen(QColor(255, 255, 255), 5))
        p.drawLine(QPointF(22, 32), QPointF(42, 32))


def _draw_click_stone(p: QPainter, fg: QColor) -> None:
    """A stone with a mouse pointer clicking it."""
    p.setPen(_pen(fg, 3))
    p.setBrush(STONE)
    p.save()
    p.scale(0.85, 0.85)
    p.drawPath(_blob())
    p.restore()
    arrow = QPolygonF(
        [
            QPointF(x, y)
            for x, y in ((30, 26), (56, 42), (45, 45), (52, 58), (46, 60), (39, 48), (31, 55))
        ]
    )
    p.setPen(_pen(QColor(30, 30, 30), 2.5))
    p.setBrush(QColor(255, 255, 255))
    p.drawPolygon(arrow)


def _draw_box_stone(p: QPainter, fg: QColor) -> None:
    """A stone inside a dashed box."""
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(STONE)
    p.drawEllipse(QRectF(17, 19, 30, 26))
    p.setPen(_pen(fg, 3.5, Qt.PenStyle.DashLine))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(QRectF(8, 10, 48, 44))


def _draw_magic_wand(p: QPainter, fg: QColor) -> None:
    """A wand with a sparkle at its tip."""
    p.setPen(_pen(fg, 7))
    p.drawLine(QPointF(10, 56), QPointF(38, 28))
    p.setPen(_pen(STONE, 3.5))
    for dx, dy in ((0, -12), (0, 12), (-12, 0), (12, 0)):
        p.drawLine(QPointF(46 + dx * 0.4, 20 + dy * 0.4), QPointF(46 + dx, 20 + dy))
    for dx, dy in ((-8, -8), (8, 8), (8, -8)):
        p.drawLine(QPointF(46 + dx * 0.5, 20 + dy * 0.5), QPointF(46 + dx, 20 + dy))


def _draw_invert(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(QPointF(32, 32), 24, 24)
    path = QPainterPath()
    path.moveTo(32, 8)
    path.arcTo(QRectF(8, 8, 48, 48), 90, 180)
    path.closeSubpath()
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(STONE)
    p.drawPath(path)


def _draw_clear(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRoundedRect(QRectF(10, 10, 44, 44), 5, 5)
    p.setPen(_pen(ERASE, 5))
    p.drawLine(QPointF(22, 22), QPointF(42, 42))
    p.drawLine(QPointF(42, 22), QPointF(22, 42))


def _draw_undo(p: QPainter, fg: QColor, mirror: bool = False) -> None:
    if mirror:
        p.translate(64, 0)
        p.scale(-1, 1)
    p.setPen(_pen(fg, 6))
    p.setBrush(Qt.BrushStyle.NoBrush)
    path = QPainterPath(QPointF(16, 26))
    path.cubicTo(30, 12, 56, 16, 54, 38)
    path.cubicTo(52, 50, 40, 54, 30, 54)
    p.drawPath(path)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(fg)
    p.drawPolygon(QPolygonF([QPointF(6, 18), QPointF(26, 14), QPointF(18, 36)]))


def _draw_folder(p: QPainter, fg: QColor, accent: QColor | None = None) -> None:
    p.setPen(_pen(fg, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    path = QPainterPath(QPointF(6, 52))
    path.lineTo(6, 14)
    path.lineTo(24, 14)
    path.lineTo(30, 20)
    path.lineTo(58, 20)
    path.lineTo(58, 52)
    path.closeSubpath()
    p.drawPath(path)
    if accent is not None:
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(accent)
        p.drawEllipse(QPointF(32, 37), 9, 9)


def _draw_save(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    path = QPainterPath(QPointF(8, 8))
    path.lineTo(46, 8)
    path.lineTo(56, 18)
    path.lineTo(56, 56)
    path.lineTo(8, 56)
    path.closeSubpath()
    p.drawPath(path)
    p.drawRect(QRectF(18, 8, 22, 14))
    p.setBrush(STONE)
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRect(QRectF(16, 34, 32, 16))


def _draw_zoom(p: QPainter, fg: QColor, sign: str) -> None:
    p.setPen(_pen(fg, 5))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(QPointF(26, 26), 17, 17)
    p.setPen(_pen(fg, 8))
    p.drawLine(QPointF(39, 39), QPointF(56, 56))
    p.setPen(_pen(STONE, 5))
    p.drawLine(QPointF(18, 26), QPointF(34, 26))
    if sign == "+":
        p.drawLine(QPointF(26, 18), QPointF(26, 34))


def _draw_fit(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 5))
    for x, y, dx, dy in ((8, 8, 1, 1), (56, 8, -1, 1), (8, 56, 1, -1), (56, 56, -1, -1)):
        p.drawLine(QPointF(x, y), QPointF(x + 14 * dx, y))
        p.drawLine(QPointF(x, y), QPointF(x, y + 14 * dy))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(STONE)
    p.drawRoundedRect(QRectF(20, 22, 24, 20), 3, 3)


def _draw_actual(p: QPainter, fg: QColor) -> None:
    p.setPen(fg)
    font = QFont()
    font.setPixelSize(30)
    font.setBold(True)
    p.setFont(font)
    p.drawText(QRectF(0, 0, 64, 64), Qt.AlignmentFlag.AlignCenter, "1:1")


def _draw_eye(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    path = QPainterPath(QPointF(4, 32))
    path.quadTo(32, 2, 60, 32)
    path.quadTo(32, 62, 4, 32)
    p.drawPath(path)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(STONE)
    p.drawEllipse(QPointF(32, 32), 11, 11)


def _draw_outline(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(QColor(0, 0, 0, 160), 8))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawPath(_blob())
    p.setPen(_pen(STONE, 4))
    p.drawPath(_blob())


def _draw_chevron(p: QPainter, fg: QColor, right: bool) -> None:
    p.setPen(_pen(fg, 7))
    if right:
        p.drawPolyline(QPolygonF([QPointF(24, 12), QPointF(44, 32), QPointF(24, 52)]))
    else:
        p.drawPolyline(QPolygonF([QPointF(40, 12), QPointF(20, 32), QPointF(40, 52)]))


def _draw_help(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(fg, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(QPointF(32, 32), 26, 26)
    font = QFont()
    font.setPixelSize(36)
    font.setBold(True)
    p.setFont(font)
    p.drawText(QRectF(0, 0, 64, 64), Qt.AlignmentFlag.AlignCenter, "?")


def _draw_check(p: QPainter, fg: QColor) -> None:
    p.setPen(_pen(GOOD, 8))
    p.drawPolyline(QPolygonF([QPointF(10, 34), QPointF(26, 50), QPointF(54, 16)]))


_PAINTERS: dict[str, Callable[[QPainter, QColor], None]] = {
    "brush": _draw_brush,
    "eraser": _draw_eraser,
    "fill": _draw_fill,
    "fill_holes": _draw_fill_holes,
    "lasso_fill": lambda p, fg: _draw_lasso(p, fg, False),
    "lasso_erase": lambda p, fg: _draw_lasso(p, fg, True),
    "click_stone": _draw_click_stone,
    "box_stone": _draw_box_stone,
    "magic_wand": _draw_magic_wand,
    "invert": _draw_invert,
    "clear": _draw_clear,
    "undo": _draw_undo,
    "redo": lambda p, fg: _draw_undo(p, fg, mirror=True),
    "open": _draw_folder,
    "masks_folder": lambda p, fg: _draw_folder(p, fg, STONE),
    "save": _draw_save,
    "zoom_in": lambda p, fg: _draw_zoom(p, fg, "+"),
    "zoom_out": lambda p, fg: _draw_zoom(p, fg, "-"),
    "zoom_fit": _draw_fit,
    "zoom_100": _draw_actual,
    "show_mask": _draw_eye,
    "outline": _draw_outline,
    "next": lambda p, fg: _draw_chevron(p, fg, True),
    "previous": lambda p, fg: _draw_chevron(p, fg, False),
    "help": _draw_help,
    "reviewed": _draw_check,
}


def icon_names() -> list[str]:
    return sorted(_PAINTERS)


@cache
def icon(name: str) -> QIcon:
    """The icon called ``name`` (see ``icon_names``); an empty icon for an unknown name."""
    painter_fn = _PAINTERS.get(name)
    if painter_fn is None:
        return QIcon()
    result = QIcon()
    fg = _fg()
    for mode, color in (
        (QIcon.Mode.Normal, fg),
        (QIcon.Mode.Disabled, QColor(fg.red(), fg.green(), fg.blue(), 90)),
    ):
        pixmap = QPixmap(SIZE, SIZE)
        pixmap.fill(Qt.GlobalColor.transparent)
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if mode == QIcon.Mode.Disabled:
            p.setOpacity(0.35)
        painter_fn(p, color)
        p.end()
        result.addPixmap(pixmap, mode)
    return result
