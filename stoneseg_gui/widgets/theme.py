"""Colours and the application palette, in one place."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from stoneseg_core.io.project import ImageStatus

STONE_COLOR = QColor(0, 190, 255)  # the mask being edited
PREDICTION_COLOR = QColor(255, 150, 20)  # a model's mask, shown beside it
ERASE_COLOR = QColor(255, 90, 90)
GOOD_COLOR = QColor(63, 185, 80)
CANVAS_BACKGROUND = QColor(27, 28, 31)

STATUS_COLORS: dict[ImageStatus, QColor] = {
    ImageStatus.UNLABELLED: QColor(138, 143, 152),
    ImageStatus.LABELLED: QColor(63, 185, 80),
    ImageStatus.PREDICTED: QColor(227, 162, 26),
    ImageStatus.UNREADABLE: QColor(248, 81, 73),
}
STATUS_TEXT: dict[ImageStatus, str] = {
    ImageStatus.UNLABELLED: "Unlabelled",
    ImageStatus.LABELLED: "Labelled",
    ImageStatus.PREDICTED: "Predicted, not reviewed",
    ImageStatus.UNREADABLE: "Unreadable",
}


def apply_theme(app: QApplication) -> None:
    """Fusion with a dark palette: photos and overlays read best on a dark surround."""
    app.setStyle("Fusion")
    p = QPalette()
    window, base, text = QColor(43, 45, 49), QColor(32, 33, 37), QColor(222, 224, 229)
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, QColor(38, 40, 44))
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor(58, 60, 66))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor(140, 144, 152))
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor(52, 54, 59))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.BrightText, QColor(255, 90, 90))
    p.setColor(QPalette.ColorRole.Link, STONE_COLOR)
    p.setColor(QPalette.ColorRole.Highlight, QColor(38, 110, 160))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    p.setColor(QPalette.ColorRole.Mid, QColor(30, 31, 34))
    p.setColor(QPalette.ColorRole.Dark, QColor(24, 25, 28))
    p.setColor(QPalette.ColorRole.Light, QColor(70, 72, 78))
    p.setColor(QPalette.ColorRole.Midlight, QColor(60, 62, 68))
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.WindowText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 123, 130))
    app.setPalette(p)
    app.setStyleSheet(
        "QToolTip { border: 1px solid #55585f; padding: 4px; }"
        "QDockWidget::title { padding: 6px; background: #323438; }"
        "QToolBar { spacing: 3px; border: none; }"
        "QStatusBar QLabel { padding: 0 6px; }"
    )
