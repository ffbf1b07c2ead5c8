"""How a row of the image list is drawn (thumbnail, name, a coloured state line, and for a
photo not labelled yet how unsure the model was of it), and the roles the list's model
answers for it."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from stoneseg_core.inference.uncertainty import UncertaintyScore
from stoneseg_core.io.project import ImageStatus

from ..widgets.theme import STATUS_COLORS, STATUS_TEXT

ROW_HEIGHT = 64

PathRole = Qt.ItemDataRole.UserRole + 1
StatusRole = Qt.ItemDataRole.UserRole + 2
ReasonRole = Qt.ItemDataRole.UserRole + 3
DirtyRole = Qt.ItemDataRole.UserRole + 4
ThumbRole = Qt.ItemDataRole.UserRole + 5
UncertaintyRole = Qt.ItemDataRole.UserRole + 6  # UncertaintyScore | None (not yet labelled)
# int | None: the place in the order to label in (0 most useful; None: not labelled, no score)
UsefulRankRole = Qt.ItemDataRole.UserRole + 7


class ImageDelegate(QStyledItemDelegate):
    """Thumbnail, name (with * when unsaved) and a coloured state line."""

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(200, ROW_HEIGHT)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        painter.save()
        style = option.widget.style() if option.widget else None
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        if style is not None:
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, opt, painter, option.widget
            )
        r = option.rect
        status: ImageStatus = index.data(StatusRole)
        color = STATUS_COLORS[status]
        # state stripe
        painter.fillRect(QRect(r.left(), r.top() + 4, 3, r.height() - 8), color)
        # thumbnail
        thumb_rect = QRect(r.left() + 10, r.top() + 4, ROW_HEIGHT - 8, ROW_HEIGHT - 8)
        thumb: QPixmap | None = index.data(ThumbRole)
        painter.fillRect(thumb_rect, QColor(20, 21, 24))
        if thumb is not None:
            scaled = thumb.scaled(
                thumb_rect.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            x = thumb_rect.left() + (thumb_rect.width() - scaled.width()) // 2
            y = thumb_rect.top() + (thumb_rect.height() - scaled.height()) // 2
            painter.drawPixmap(x, y, scaled)
        elif status == ImageStatus.UNREADABLE:
            painter.setPen(color)
            painter.drawText(thumb_rect, Qt.AlignmentFlag.AlignCenter, "✕")
        # text
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        text_color = palette.highlightedText().color() if selected else palette.text().color()
        text_left = thumb_rect.right() + 10
        name_rect = QRect(text_left, r.top() + 8, r.right() - text_left - 6, 20)
        font = QFont(option.font)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(text_color)
        name = index.data(Qt.ItemDataRole.DisplayRole)
        painter.drawText(
            name_rect,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            painter.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, name_rect.width()),
        )
        state_rect = QRect(text_left, r.top() + 32, r.right() - text_left - 6, 20)
        painter.setFont(option.font)
        dot = QRect(state_rect.left(), state_rect.center().y() - 4, 9, 9)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawEllipse(dot)
        painter.setPen(text_color if selected else color.lighter(115))
        text = STATUS_TEXT[status]
        if index.data(DirtyRole):
            text += " · unsaved"
        score: UncertaintyScore | None = index.data(UncertaintyRole)
        if score is not None:  # first: the dot's colour already tells the state
            text = score.short_words() + " · " + text
        text_rect = state_rect.adjusted(15, 0, 0, 0)
        painter.drawText(
            text_rect,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, text_rect.width()),
        )
        painter.restore()
