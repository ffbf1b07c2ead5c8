"""The uncertainty overlay: where the model is unsure of the photo shown, as a heat map over
it, and a small legend in the photo view's corner.

The map comes at the model's working scale (``inference.uncertainty``: a few hundred pixels a
side); it is coloured once and drawn stretched over the photo, so showing it costs nothing
per repaint whatever the photo's size.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QLabel, QStyleOptionGraphicsItem, QWidget

from stoneseg_core.inference.uncertainty import UNSURE, Uncertainty

UNCERTAINTY_COLOR = QColor(236, 64, 200)  # magenta: apart from the mask's cyan and orange
OVERLAY_Z = 3  # above the mask (1) and the prediction (2), under the brush cursor (10)
MAX_ALPHA = 210
SURE_BELOW = 32  # map values (0..255) drawn fully transparent: the model is sure there


def color_table(color: QColor = UNCERTAINTY_COLOR) -> list[int]:
    """The 256 colours of the map's values: transparent where the model is sure, the overlay
    colour ever more opaque towards 255 (most unsure); from ``UNSURE`` on at least half."""
    table = []
    for v in range(256):
        if v < SURE_BELOW:
            alpha = 0
        else:
            alpha = round(MAX_ALPHA * (v - SURE_BELOW) / (255 - SURE_BELOW))
            if v >= UNSURE * 255:
                alpha = max(alpha, MAX_ALPHA // 2)
        table.append(QColor(color.red(), color.green(), color.blue(), alpha).rgba())
    return table


class UncertaintyItem(QGraphicsItem):
    """The uncertainty map of the photo shown, stretched over it (``photo_size``)."""

    def __init__(self) -> None:
        super().__init__()
        self._image: QImage | None = None
        self._uncertainty: Uncertainty | None = None
        self._size = (0, 0)  # the photo's (width, height)
        self.setZValue(OVERLAY_Z)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setVisible(False)

    @property
    def uncertainty(self) -> Uncertainty | None:
        return self._uncertainty

    def set_uncertainty(self, uncertainty: Uncertainty | None, photo_size: tuple[int, int]) -> None:
        """Show ``uncertainty``'s map over a photo of ``photo_size`` (width, height); None
        shows nothing."""
        self.prepareGeometryChange()
        self._uncertainty = uncertainty
        self._size = photo_size
        if uncertainty is None:
            self._image = None
        else:
            values = np.ascontiguousarray(uncertainty.map)
            h, w = values.shape
            indexed = QImage(values.data, w, h, values.strides[0], QImage.Format.Format_Indexed8)
            indexed.setColorTable(color_table())
            # coloured once (a copy: the map's memory is not kept alive by the image)
            self._image = indexed.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
        self.update()

    def boundingRect(self) -> QRectF:
        if self._image is None:
            return QRectF()
        return QRectF(0, 0, *self._size)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if self._image is None:
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(self.boundingRect(), self._image, QRectF(self._image.rect()))


class UncertaintyLegend(QLabel):
    """What the heat map means, in the photo view's top-right corner while it is shown."""

    def __init__(self, viewport: QWidget) -> None:
        super().__init__(viewport)
        self.setObjectName("uncertainty_legend")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.setStyleSheet(
            "QLabel { background: rgba(20, 22, 26, 210); color: #e6e6e6; border-radius: 6px;"
            " padding: 5px 9px; }"
        )
        self.hide()
        viewport.installEventFilter(self)

    def show_for(self, uncertainty: Uncertainty) -> None:
        color = UNCERTAINTY_COLOR.name()
        self.setText(
            f"<span style='color:{color}'>■</span> where the model is unsure"
            f" (clear: sure) · {uncertainty.score.short_words()}"
        )
        self.adjustSize()
        self._place()
        self.show()
        self.raise_()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False

    def _place(self) -> None:
        parent = self.parentWidget()
        if parent is not None:
            self.move(max(0, parent.width() - self.width() - 10), 10 + 34)  # under the banner
