"""Dock layout helpers for the main window."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow, QTabBar


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
