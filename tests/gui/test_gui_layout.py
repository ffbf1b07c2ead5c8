"""The layout: the photo dominates at 1366 x 768, everything still fits at 800 x 600, the
user's layout is remembered, and View > Reset layout brings the default back."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt

RIGHT = Qt.DockWidgetArea.RightDockWidgetArea


def _docks(window):
    upper, lower = window._docks_in_order()
    return [*upper, *lower]


def _at(qtbot, window, width: int, height: int) -> None:
    for _ in range(3):  # the offscreen platform settles a shrinking dock layout in steps
        window.resize(width, height)
        qtbot.wait(100)
        if window.size().toTuple() == (width, height):
            break
    assert window.size().toTuple() == (width, height), window.size().toTuple()


def _canvas_rect(window) -> QRect:
    return QRect(window.canvas.mapTo(window, window.canvas.rect().topLeft()), window.canvas.size())


def test_the_photo_dominates_on_a_field_laptop_and_everything_fits_at_800_by_600(qtbot, window):
    _at(qtbot, window, 1366, 768)
    window.reset_layout()
    for dock in _docks(window):
        assert window.dockWidgetArea(dock) == RIGHT and not dock.isFloating()
    canvas = window.canvas.size()
    assert canvas.width() >= 0.6 * 1366 and canvas.height() >= 0.8 * 768

    _at(qtbot, window, 800, 600)  # the window can be this small: nothing forces it larger
    assert window.minimumSizeHint().width() <= 800 and window.minimumSizeHint().height() <= 600
    canvas = _canvas_rect(window)
    assert canvas.width() >= 300 and canvas.height() >= 400
    for dock in _docks(window):
        if dock.isVisible() and not dock.visibleRegion().isEmpty():
            area = QRect(dock.mapTo(window, dock.rect().topLeft()), dock.size())
            assert not area.intersects(canvas), dock.windowTitle()


def test_reset_layout_and_a_remembered_layout(qtbot, make_window):
    window = make_window()
    m = window.model_side
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, m.plot_dock)
    m.history_dock.setFloating(True)
    window.close()

    again = make_window()  # the user's layout comes back
    assert again.dockWidgetArea(again.model_side.plot_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    again.reset_layout_action.trigger()
    for dock in _docks(again):
        assert again.dockWidgetArea(dock) == RIGHT and not dock.isFloating()
    assert "Reset layout" in [a.text().replace("&", "") for a in again.view_menu.actions()]
