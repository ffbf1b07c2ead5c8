"""What the sides (``ModelSide``, ``GrainSide``) need from the window that hosts them.

Each side is given a ``WindowHost`` in its constructor and uses only these members; the
window (``MainWindow``) is the one host. The order it builds things in is the order this
protocol needs, top to bottom:

1. ``settings`` and ``dialogs``;
2. the editor: ``session``, ``canvas``, ``image_list``;
3. the window's own actions and menus: ``ui_actions`` (its ``tool_group``: the painting
   tools), ``view_menu`` (each side adds its docks' toggles), ``add_action_menu``;
4. ``model_side``: built first of the sides, from 1-3;
5. ``GrainSide``: built last, from 1-4 (it analyses the model's predictions).

The host is also the Qt parent of the sides' docks, actions and dialogs (``add_dock``,
``addActions``), and its status bar shows their short notices.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6.QtCore import QSettings, Qt, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDockWidget,
    QGraphicsScene,
    QMenu,
    QStatusBar,
    QToolBar,
    QWidget,
)

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.inference.segmenter import Prediction
from stoneseg_core.inference.uncertainty import UncertaintyScore
from stoneseg_core.io.project import ImageStatus, Project

from .actions import Actions
from .widgets.dialogs import Dialogs
from .widgets.interaction import CanvasInteraction


class EditorSession(Protocol):
    """The editor's session (``editor.session.AnnotationSession``) as the sides use it:
    the project and photo open, their masks, saving."""

    project_opened: SignalInstance  # Project
    image_opened: SignalInstance  # Path
    image_changed: SignalInstance  # Path | None
    history_changed: SignalInstance
    status_changed: SignalInstance  # Path, ImageStatus, str
    mask_saved: SignalInstance  # Path

    @property
    def project(self) -> Project | None: ...

    @property
    def is_dirty(self) -> bool: ...

    def current_image_path(self) -> Path | None: ...

    def images(self) -> list[Path]: ...  # the project's photos, in the list's order

    def open_image(self, path: str | Path) -> bool: ...

    def current_document(self) -> MaskDocument | None: ...

    def current_display(self) -> object | None: ...  # the photo shown (``georeference``)

    def current_status(self) -> ImageStatus | None: ...

    def image_status(self, path: Path) -> ImageStatus: ...

    def save_current(self) -> bool: ...

    def must_save_in_background(self) -> bool: ...

    def after_saving(self, action: Callable[[], object], doing: str) -> None: ...

    def accept_prediction(self, mask: np.ndarray) -> None: ...

    def reload_current(self) -> None: ...

    def mark_unreadable(self, path: Path, reason: str) -> None: ...


class EditorCanvas(Protocol):
    """The photo view (``editor.canvas.MaskCanvas``) as the sides use it."""

    def scene(self) -> QGraphicsScene: ...

    def viewport(self) -> QWidget: ...  # Qt's name: where the overlays' legends go

    def window(self) -> QWidget: ...

    def zoom(self) -> float: ...

    def set_prediction(self, mask: np.ndarray | None) -> None: ...

    def set_interaction(self, interaction: CanvasInteraction | None) -> None: ...


class PhotoList(Protocol):
    """The list of photos (``editor.image_list.ImageListDock``) as the sides use it: how
    unsure the model was of each photo, to show the most useful to label first."""

    def set_uncertainties(self, scores: dict[Path, UncertaintyScore]) -> None: ...

    def set_uncertainty(self, path: Path, score: UncertaintyScore | None) -> None: ...


class Predictions(Protocol):
    """The model side's latest prediction, as the grain side reads it
    (``model.controller.ModelController``)."""

    prediction_ready: SignalInstance  # Path of the photo predicted
    prediction: Prediction | None


class PredictingSide(Protocol):
    controller: Predictions


class WindowHost(Protocol):
    """The window as the sides see it (see the module's docstring for the build order)."""

    # 1. what every side asks the user through, and where it remembers things
    settings: QSettings
    dialogs: Dialogs
    # 2. the editor
    session: EditorSession
    canvas: EditorCanvas
    image_list: PhotoList
    image_changed: SignalInstance  # Path | None: the photo now shown (or failed to show)
    # 3. the window's actions and menus
    ui_actions: Actions
    view_menu: QMenu
    # 4. the sides built before the one being built
    model_side: PredictingSide  # its controller's predictions

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

    def addToolBar(self, toolbar: QToolBar) -> None: ...  # Qt's name
