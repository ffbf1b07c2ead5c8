"""Where the main window's docks go: the one default layout, its reset, the remembered one.

``DockLayout`` arranges the docks of the window and of its sides (photos, training and
grains above; curves, metrics, models and grain sizes below, as tabs in one column at the
right), sizes that column for the real window once it is shown, puts everything back on
View > Reset layout, and keeps the user's own layout in the settings between runs.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMainWindow

from .widgets.docks import hide_stale_tab_bars


class DockLayout:
    """The dock layout of one main window (its sides built: their docks are laid out).

    ``docks`` gives the right-hand column's (upper group, lower group) of docks, each in
    tab order; ``reset`` is what View > Reset layout calls (the window's own slot).
    """

    def __init__(
        self,
        window: QMainWindow,
        settings: QSettings,
        docks: Callable[[], tuple[list[QDockWidget], list[QDockWidget]]],
        reset: Callable[[], None],
    ) -> None:
        self.window = window
        self.settings = settings
        self._docks = docks
        self._reset = reset
        self.default_state = QByteArray()
        self.sized = False  # the column has its size (or the user's remembered layout)

    def docks_in_order(self) -> tuple[list[QDockWidget], list[QDockWidget]]:
        """(upper group, lower group) of the right-hand column, as tabs, in tab order."""
        return self._docks()

    def arrange(self) -> None:
        """The default layout, drawn for a 1366 x 768 field laptop and usable at 800 x 600:
        the photo takes the whole height and most of the width; every panel is a tab in one
        column at the right (photos, training and grains above; curves, metrics, models and
        grain sizes below). Panels scroll rather than push the window larger."""
        w = self.window
        upper, lower = self.docks_in_order()
        right = Qt.DockWidgetArea.RightDockWidgetArea
        for dock in (*upper, *lower):
            dock.setFloating(False)
            w.addDockWidget(right, dock)
            dock.show()
        w.splitDockWidget(upper[0], lower[0], Qt.Orientation.Vertical)
        for group in (upper, lower):
            for a, b in zip(group, group[1:]):
                w.tabifyDockWidget(a, b)
            group[0].raise_()
        hide_stale_tab_bars(w)
        if w.isVisible():
            self.size_docks()

    def size_docks(self) -> None:
        """The right-hand column: a third of the window (280 to 440 px), split 55:45.
        Only on a shown window: before that, sizes would grow the window instead."""
        w = self.window
        upper, lower = self.docks_in_order()
        width = max(280, min(440, w.width() // 3))
        w.resizeDocks([upper[0]], [width], Qt.Orientation.Horizontal)
        # what the window leaves to the docks: less the menus, tool bar, status bar, and
        # the two groups' title bars and tabs
        chrome = w.menuBar().sizeHint().height() + w.statusBar().sizeHint().height() + 150
        height = max(200, w.height() - chrome)
        w.resizeDocks(
            [upper[0], lower[0]], [int(height * 0.55), int(height * 0.45)], Qt.Orientation.Vertical
        )

    def keep_default(self) -> QAction:
        """The window as it is now is the default layout; returns View > Reset layout."""
        w = self.window
        self.default_state = w.saveState()
        reset = QAction("&Reset layout", w)
        reset.setToolTip(
            "Put every panel back where it starts: the photo large, panels at the right"
        )
        reset.triggered.connect(self._reset)
        return reset

    def reset(self) -> None:
        """View > Reset layout: every panel back in its place (the photo list in front)."""
        w = self.window
        size = w.size()  # the panels go back; the window keeps its size
        w.restoreState(self.default_state)
        self.arrange()
        w.resize(size)
        self.size_docks()
        self.save()

    # ------------------------------------------------------------------ remembered
    def restore(self) -> None:
        """The window's geometry and layout as the user left them, when remembered."""
        w = self.window
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        self.sized = False
        if isinstance(geometry, QByteArray):
            w.restoreGeometry(geometry)
        if isinstance(state, QByteArray) and w.restoreState(state):
            self.sized = True  # the user's own layout, remembered

    def save(self) -> None:
        w = self.window
        self.settings.setValue("window/geometry", w.saveGeometry())
        self.settings.setValue("window/state", w.saveState())
        self.settings.sync()
