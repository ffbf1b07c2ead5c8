"""The mouse wheel over a field the user did not click scrolls the panel, never the value."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea


def wheel(widget, notches: int = -1) -> None:
    """Turn the wheel over the middle of ``widget`` (negative: towards the user, down)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(
        centre,
        QPointF(widget.mapToGlobal(centre.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def scroller_of(widget) -> QScrollArea:
    parent = widget.parentWidget()
    while not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    return parent


def test_wheel_over_an_unclicked_field_scrolls_the_panel(qtbot, window):
    window.resize(1366, 500)  # the Training panel taller than its dock: it scrolls
    panel = window.model_side.panel
    window.model_side.train_dock.raise_()
    qtbot.waitUntil(lambda: panel.lr.isVisible())
    scroller = scroller_of(panel.lr)
    bar = scroller.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(0)
    window.canvas.setFocus()
    lr, epochs, encoder = panel.lr.value(), panel.epochs.value(), panel.encoder.currentIndex()
    for _ in range(8):  # the eight notches over "Learning rate"
        wheel(panel.lr)
    wheel(panel.epochs)
    wheel(panel.encoder)
    assert (panel.lr.value(), panel.epochs.value(), panel.encoder.currentIndex()) == (
        lr,
        epochs,
        encoder,
    )
    assert not panel.lr.hasFocus()  # the wheel gave it no focus
    assert bar.value() > 0  # the panel scrolled instead

    # clicked (focused), the field takes the wheel as usual
    panel.lr.setFocus()
    qtbot.waitUntil(panel.lr.hasFocus)
    wheel(panel.lr, notches=1)
    assert panel.lr.value() > lr
