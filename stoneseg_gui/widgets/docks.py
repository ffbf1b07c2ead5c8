"""Dock layout helpers for the main window."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtWidgets import QFrame, QMainWindow, QScrollArea, QTabBar, QWidget


def hide_stale_tab_bars(window: QMainWindow) -> int:
    """Hide dock tab bars that a later tab group has superseded; returns how many.

    Qt 6.11 quirk: once a window has one group of tabbed docks, tabifying another dock
    leaves the group's previous tab bar behind, visible, where the group used to end; a
    bar whose tabs are a strict subset of another bar's is such a leftover.
    """
    bars = [b for b in window.findChildren(QTabBar) if b.parent() is window]
    tabs = {b: {b.tabText(i) for i in range(b.count())} for b in bars}
    stale = [b for b in bars if any(tabs[b] < tabs[o] for o in bars if o is not b)]
    for bar in stale:
        bar.hide()
    return len(stale)


class PanelScroller(QScrollArea):
    """A panel that scrolls up and down, never sideways, and never squeezes its wrapped texts.

    A resizable scroll area sizes its panel from the panel's minimum size, which knows
    nothing of word-wrapped labels growing a line as the column narrows: on the real screen
    a long "Finished: ..." message squeezed the Training panel's rows into each other and cut
    the message's end off. Here the panel's minimum height is its height for the viewport's
    width, again whenever either changes, so it scrolls instead.
    """

    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        self.setObjectName(f"{panel.objectName() or type(panel).__name__}_scroll")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(panel)
        panel.installEventFilter(self)

    def _fit_height(self) -> None:
        panel = self.widget()
        if panel is not None and panel.hasHeightForWidth():
            needed = panel.heightForWidth(self.viewport().width())
            if needed > 0 and needed != panel.minimumHeight():
                panel.setMinimumHeight(needed)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_height()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            QTimer.singleShot(0, self._fit_height)  # after the layout has taken the change
        return super().eventFilter(watched, event)
