"""What the sides (``ModelSide``, ``GrainSide``) need from the window that hosts them.

Each side is given a ``WindowHost`` in its constructor and uses only these members; the
window (``MainWindow``) is the one host. The order it builds things in is the order this
protocol needs, top to bottom:

1. ``settings`` and ``dialogs``;
2. the editor: ``session``, ``canvas``;
3. the window's own actions and menus: ``ui_actions`` (its ``tool_group``: the painting
   tools), ``view_menu`` (each side adds its docks' toggles), ``add_action_menu``;
4. ``model_side``: built first of the sides, from 1-3;
5. ``GrainSide``: built last, from 1-4 (it analyses the model's predictions).

The host is also the Qt parent of the sides' docks, actions and dialogs (``add_dock``,
``addActions``), and its status bar shows their short notices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QSettings, Qt, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QStatusBar, QWidget

if TYPE_CHECKING:
    from stoneseg_core.mask_edit import MaskDocument
    from stoneseg_core.project import Project

    from .actions import Actions
    from .editor.canvas import MaskCanvas
    from .editor.session import AnnotationSession
    from .model.side import ModelSide
    from .widgets.dialogs import Dialogs


class WindowHost(Protocol):
    """The window as the sides see it (see the module's docstring for the build order)."""

    # 1. what every side asks the user through, and where it remembers things
    settings: QSettings
    dialogs: Dialogs
    # 2. the editor
    session: AnnotationSession
    canvas: MaskCanvas
    image_changed: SignalInstance  # Path | None: the photo now shown (or failed to show)
    # 3. the window's actions and menus
    ui_actions: Actions
    view_menu: QMenu
    # 4. the sides built before the one being built
    model_side: ModelSide

    @property
    def project(self) -> Project | None: ...

    def current_image_path(self) -> Path | None: ...

    def current_document(self) -> MaskDocument | None: ...

    def save_current(self) -> bool: ...

    def add_dock(
        self,
        widget: QWidget,
        area: Qt.DockWidgetArea = ...,
        title: str | None = None,
        scroll: bool = False,
    ) -> QDockWidget: ...

    def add_action_menu(self, title: str) -> QMenu: ...

    def addActions(self, actions: list[QAction]) -> None: ...  # Qt's name

    def statusBar(self) -> QStatusBar: ...  # Qt's name
