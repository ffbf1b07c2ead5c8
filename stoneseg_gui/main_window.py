"""The main window: composes the canvas, docks, toolbars and actions, and wires signals.

It holds no editing or file logic: that is in ``AnnotationSession`` (files, autosave,
recovery), ``MaskDocument`` (pixels, undo), ``MaskCanvas`` (view, mouse) and
``ToolSettings`` (tool, brush, overlay look). Its menus and tool bars are built in
``menus.py``; where the docks go (the default layout, its reset, the remembered one) is
``DockLayout`` in ``layout.py``.

Public API for the parts built on top (the sides: ``WindowHost`` in ``host.py`` names what
they use and the order the window builds them in):

- ``open_folder(path)``, ``project``, ``current_image_path()``, ``current_document()``,
  ``save_current()``, the ``image_changed`` signal;
- ``add_dock(widget, area)`` to add a panel, ``add_action_menu(title)`` for a new menu;
- ``canvas.set_prediction(mask)`` shows a model's mask in its own colour;
  ``session.accept_prediction(mask)`` makes it the editable mask (predicted, not reviewed);
- ``dialogs`` for anything that would wait for the user.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QMimeData,
    QSettings,
    QSignalBlocker,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMenu,
    QWidget,
)

from stoneseg_core import __version__
from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.tools import ToolKind
from stoneseg_core.io.images import IMAGE_EXTENSIONS
from stoneseg_core.io.project import ImageStatus, Project

from .actions import CANVAS_GESTURES, Actions, create_actions
from .editor.canvas import MaskCanvas
from .editor.image_list import ImageListDock
from .editor.session import AnnotationSession
from .editor.status_bar import EditorStatusBar
from .editor.tool_settings import ToolSettings
from .formats import LabelFormats
from .grains.side import GrainSide
from .layout import DockLayout
from .menus import build_menus, build_toolbars, fill_recent_menu
from .model.side import ModelSide
from .model.stone_hints import StoneHints
from .settings import (
    add_recent_folder,
    clear_recent_folders,
    last_image,
    recent_folders,
    remember_last_image,
)
from .widgets.dialogs import Dialogs, ShortcutsDialog
from .widgets.docks import PanelScroller
from .widgets.wheel_guard import install_wheel_guard

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    image_changed = Signal(object)  # Path | None: the photo now shown (or failed to show)

    def __init__(
        self,
        dialogs: Dialogs | None = None,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        install_wheel_guard()  # a field not clicked never changes under the wheel
        self.setObjectName("main_window")
        self.setWindowTitle("StoneSeg")
        self.dialogs = dialogs or Dialogs()
        if self.dialogs.parent is None:
            self.dialogs.parent = self
        self.settings = settings if settings is not None else QSettings()

        self.tool_settings = ToolSettings(self)
        self.session = AnnotationSession(self.dialogs, self)
        self.canvas = MaskCanvas(self.tool_settings)
        self.setCentralWidget(self.canvas)
        self.image_list = ImageListDock(self)
        self.add_dock(self.image_list, Qt.DockWidgetArea.RightDockWidgetArea)
        self.status = EditorStatusBar(self)
        self.setStatusBar(self.status)

        self.ui_actions: Actions = create_actions(self, self._slots())
        self.addActions(list(self.ui_actions))
        self.recent_menu = QMenu("Open &recent", self)
        menus = build_menus(self, self.ui_actions, self.recent_menu, self.session.rescan)
        self.view_menu, self._help_menu, self.rescan_action = menus.view, menus.help, menus.rescan
        self.brush_control, self.opacity_control = build_toolbars(
            self, self.ui_actions, self.tool_settings
        )
        self._connect_signals()
        self._shortcuts_dialog: ShortcutsDialog | None = None

        self.setAcceptDrops(True)
        self.resize(1360, 860)
        # the sides, in the order WindowHost (host.py) documents: each is given this window
        # and uses only what that protocol names, the sides built before it included
        self.model_side = ModelSide(self)  # training, prediction, batch segmentation, export
        self.grain_side = GrainSide(self)  # grain analysis; uses model_side's predictions
        self.label_formats = LabelFormats(self)  # File > Import labels, Export labels
        menus.file.insertSeparator(menus.before_quit)
        menus.file.insertActions(menus.before_quit, self.label_formats.actions())
        # the model's stones for the smart tools (Click a stone, Box a stone)
        self.stone_hints = StoneHints(self.model_side.controller, self.session, self.canvas, self)
        self.stone_hints.notice.connect(lambda text: self.status.showMessage(text, 8000))
        self.dock_layout = DockLayout(self, self.settings, self._docks_in_order, self.reset_layout)
        self.arrange_docks()
        # the first size, once the docks are in (adding them grows the window): fits the
        # screen, a 1366 x 768 laptop included
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        self.layout().activate()  # else the not-yet-laid-out docks hold the window taller
        self.resize(
            min(1360, screen.width()) if screen else 1360,
            min(860, screen.height()) if screen else 860,
        )
        self.reset_layout_action = self.dock_layout.keep_default()
        self.view_menu.addSeparator()
        self.view_menu.addAction(self.reset_layout_action)
        self.dock_layout.restore()
        self.status.show_tool(self.tool_settings.tool)
        self.status.show_brush_size(self.tool_settings.brush_size)
        self.status.show_zoom(None)
        self._rebuild_recent_menu()
        self._refresh_title()
        self._refresh_actions()

    # ------------------------------------------------------------------ public API
    @property
    def project(self) -> Project | None:
        return self.session.project

    def open_folder(self, folder: str | Path) -> bool:
        return self.session.open_folder(folder)

    def open_image(self, path: str | Path) -> bool:
        return self.session.open_image(path)

    def current_image_path(self) -> Path | None:
        return self.session.current_image_path()

    def current_document(self) -> MaskDocument | None:
        return self.session.current_document()

    def save_current(self) -> bool:
        return self.session.save_current()

    def add_dock(
        self,
        widget: QWidget,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
        title: str | None = None,
        scroll: bool = False,
    ) -> QDockWidget:
        """Add a panel. A QDockWidget is added as is; any other widget is wrapped in one
        (inside a scroll area with ``scroll``, so a tall form never makes the window taller
        than a small screen)."""
        if isinstance(widget, QDockWidget):
            dock = widget
        else:
            dock = QDockWidget(title or widget.windowTitle(), self)
            dock.setObjectName(f"{widget.objectName() or type(widget).__name__}_dock")
            if scroll:
                dock.setWidget(PanelScroller(widget))
            else:
                dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # ------------------------------------------------------------------ layout
    def _docks_in_order(self) -> tuple[list[QDockWidget], list[QDockWidget]]:
        """The right-hand column's docks, (upper group, lower group), each in tab order."""
        m, g = self.model_side, self.grain_side
        upper = [self.image_list, m.train_dock, g.dock]
        lower = [m.plot_dock, m.metrics_dock, m.history_dock, g.distribution_dock]
        return upper, lower

    def arrange_docks(self) -> None:
        """The default layout (``DockLayout.arrange`` in ``layout.py``)."""
        self.dock_layout.arrange()

    def _size_docks(self) -> None:
        self.dock_layout.size_docks()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self.dock_layout.sized:
            # first start (no remembered layout): size the column for the real window
            self.dock_layout.sized = True
            QTimer.singleShot(0, self._size_docks)

    def reset_layout(self) -> None:
        """View > Reset layout: every panel back in its place (the photo list in front)."""
        self.dock_layout.reset()

    def add_action_menu(self, title: str) -> QMenu:
        """A new top-level menu placed before Help."""
        menu = QMenu(title, self)
        help_action = self._help_menu.menuAction()
        self.menuBar().insertMenu(help_action, menu)
        return menu

    def show_shortcuts(self) -> ShortcutsDialog:
        if self._shortcuts_dialog is None:
            # every action of the window, including those the model side adds
            actions = list(self.ui_actions)
            actions += [
                a
                for a in self.findChildren(QAction)
                if a not in actions and a.shortcuts() and a.text()
            ]
            self._shortcuts_dialog = ShortcutsDialog(actions, CANVAS_GESTURES, self)
        self._shortcuts_dialog.show()
        self._shortcuts_dialog.raise_()
        return self._shortcuts_dialog

    def show_masks_folder(self) -> None:
        project = self.session.project
        if project is None:
            return
        folder = project.masks_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.dialogs.error("Cannot open the masks folder", f"{folder}: {exc}")
            return
        self.dialogs.show_folder(folder)

    # ------------------------------------------------------------------ building
    def _slots(self) -> dict[str, object]:
        ts, session, canvas = self.tool_settings, self.session, self.canvas

        def tool_slot(kind: ToolKind):
            return lambda checked: ts.set_tool(kind) if checked else None

        return {
            "open_folder": self._on_open_folder_requested,
            "save": lambda: session.save_current(background=True),
            "show_masks_folder": self.show_masks_folder,
            "quit": self.close,
            "undo": session.undo,
            "redo": session.redo,
            "fill_holes": session.fill_holes,
            "invert_mask": session.invert_mask,
            "clear_mask": session.clear_mask,
            "mark_reviewed": session.mark_reviewed,
            "tool_brush": tool_slot(ToolKind.BRUSH),
            "tool_eraser": tool_slot(ToolKind.ERASER),
            "tool_fill": tool_slot(ToolKind.FILL),
            "tool_lasso_fill": tool_slot(ToolKind.LASSO_FILL),
            "tool_lasso_erase": tool_slot(ToolKind.LASSO_ERASE),
            "tool_click_stone": tool_slot(ToolKind.CLICK_STONE),
            "tool_box_stone": tool_slot(ToolKind.BOX_STONE),
            "tool_magic_wand": tool_slot(ToolKind.MAGIC_WAND),
            "brush_smaller": ts.shrink_brush,
            "brush_bigger": ts.grow_brush,
            "toggle_overlay": ts.set_overlay_visible,
            "outline_only": ts.set_outline_only,
            "opacity_down": lambda: ts.change_opacity(-0.1),
            "opacity_up": lambda: ts.change_opacity(0.1),
            "zoom_in": canvas.zoom_in,
            "zoom_out": canvas.zoom_out,
            "zoom_fit": canvas.fit_to_window,
            "zoom_100": canvas.zoom_to_actual_size,
            "next_image": lambda: session.open_relative(1),
            "previous_image": lambda: session.open_relative(-1),
            "toggle_image_list": self.image_list.setVisible,
            "shortcuts": self.show_shortcuts,
            "about": self._on_about_requested,
        }

    def _connect_signals(self) -> None:
        s, ts, c, lst, st = (
            self.session,
            self.tool_settings,
            self.canvas,
            self.image_list,
            self.status,
        )
        s.project_opened.connect(self._on_session_project_opened)
        s.images_rescanned.connect(self._on_session_images_rescanned)
        s.start_image_name = lambda project: last_image(self.settings, project.root)
        s.image_load_started.connect(self._on_session_image_load_started)
        s.image_opened.connect(self._on_session_image_opened)
        s.image_failed.connect(self._on_session_image_failed)
        s.image_changed.connect(self._on_session_image_changed)
        s.status_changed.connect(self._on_session_status_changed)
        s.dirty_changed.connect(self._on_session_dirty_changed)
        s.history_changed.connect(self._refresh_actions)
        s.notice.connect(lambda text: st.showMessage(text, 6000))
        s.saving_changed.connect(lambda text: st.show_busy(text or None, job="save"))
        c.pyramid_progress.connect(
            lambda f: st.show_busy(None if f < 0 else "Building the overview", f, job="pyramid")
        )
        lst.image_activated.connect(self._on_image_list_image_activated)
        lst.image_unreadable.connect(s.mark_unreadable)
        lst.visibilityChanged.connect(self._on_image_list_visibility_changed)
        c.cursor_moved.connect(st.show_pixel)
        c.tool_message.connect(lambda text: st.showMessage(text, 8000))
        c.zoom_changed.connect(st.show_zoom)
        ts.tool_changed.connect(self._on_tool_settings_tool_changed)
        ts.brush_size_changed.connect(st.show_brush_size)
        ts.overlay_changed.connect(self._on_tool_settings_overlay_changed)
        st.masks_folder_clicked.connect(self.show_masks_folder)
        self.recent_menu.aboutToShow.connect(self._rebuild_recent_menu)

    # ------------------------------------------------------------------ slots
    def _on_open_folder_requested(self) -> None:
        start = self.project.root if self.project else None
        folder = self.dialogs.choose_folder("Open a folder of photos", start)
        if folder is not None:
            self.open_folder(folder)

    def _on_about_requested(self) -> None:
        self.dialogs.info(
            "About StoneSeg",
            f"StoneSeg {__version__}\nFind the stones in geological photographs: paint masks, "
            'train a U-Net, segment folders.\n\nThe bundled sample photos are from the "CDM" rock '
            "dataset (Roboflow Universe, CC BY 4.0); see the sample project's SOURCE.md.",
        )

    def _on_session_project_opened(self, project: Project) -> None:
        self.image_list.set_images(
            [(p, self.session.image_status(p)) for p in self.session.images()]
        )
        self.status.show_masks_folder(
            project.masks_dir, read_only_source=project.data_dir != project.root
        )
        add_recent_folder(self.settings, project.root)
        self._rebuild_recent_menu()
        self.tool_settings.set_tool(ToolKind.BRUSH)
        self._refresh_title()
        self._refresh_actions()

    def _on_session_image_load_started(self, path: Path) -> None:
        self.canvas.show_message(f"Opening {path.name}…")
        self.image_list.select_path(path)
        self.status.show_image_size(None)
        self.status.show_zoom(None)

    def _on_session_images_rescanned(self, images: list[Path]) -> None:
        self.image_list.set_images([(p, self.session.image_status(p)) for p in images])
        self.image_list.select_path(self.session.current_image_path())
        self._refresh_actions()

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        # back in the window (after copying photos into the folder, say): look again
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            self.session.rescan()

    def _on_session_image_opened(self, path: Path) -> None:
        display, document = self.session.current_display(), self.session.current_document()
        if display is None or document is None:
            return
        self.tool_settings.fit_brush_to_photo(display.width, display.height)
        self.canvas.show_image(display, document)
        self.canvas.setFocus(Qt.FocusReason.OtherFocusReason)
        self.status.show_image_size((display.width, display.height))
        if self.project is not None:
            remember_last_image(self.settings, self.project.root, path)
        self._refresh_banner()

    def _on_session_image_failed(self, path: Path, reason: str) -> None:
        self.canvas.show_message(f"{reason}\n\nThe other photos still work: pick one in the list.")

    def _on_session_image_changed(self, path: Path | None) -> None:
        if path is None and self.project is not None:
            self.canvas.show_message(
                f"No photos in {self.project.images_dir}.\n"
                f"StoneSeg reads {', '.join(IMAGE_EXTENSIONS)} files. Open another folder with Ctrl+O."
            )
        self.image_list.select_path(path)
        self._refresh_title()
        self._refresh_actions()
        self.image_changed.emit(path)

    def _on_session_status_changed(self, path: Path, status: ImageStatus, reason: str) -> None:
        self.image_list.set_status(path, status, reason)
        if path == self.session.current_image_path():
            self._refresh_actions()
            self._refresh_banner()

    def _refresh_banner(self) -> None:
        predicted = (
            self.session.current_document() is not None
            and self.session.current_status() == ImageStatus.PREDICTED
        )
        self.canvas.set_banner(
            "Predicted by a model, not reviewed: correct it, or press Ctrl+R to accept it"
            if predicted
            else ""
        )

    def _on_session_dirty_changed(self, path: Path, dirty: bool) -> None:
        if path is not None:
            self.image_list.set_dirty(path, dirty)
        self._refresh_title()

    def _on_image_list_image_activated(self, path: Path) -> None:
        if not self.session.open_image(path):
            self.image_list.select_path(self.session.current_image_path())

    def _on_image_list_visibility_changed(self, visible: bool) -> None:
        if not self.isMinimized():
            with QSignalBlocker(self.ui_actions.toggle_image_list):
                self.ui_actions.toggle_image_list.setChecked(self.image_list.isVisible())

    def _on_tool_settings_tool_changed(self, kind: ToolKind) -> None:
        self.ui_actions.tool_action(kind).setChecked(True)
        self.status.show_tool(kind)

    def _on_tool_settings_overlay_changed(self) -> None:
        a, ts = self.ui_actions, self.tool_settings
        with QSignalBlocker(a.toggle_overlay), QSignalBlocker(a.outline_only):
            a.toggle_overlay.setChecked(ts.overlay_visible)
            a.outline_only.setChecked(ts.outline_only)

    def _refresh_title(self) -> None:
        parts = []
        path = self.session.current_image_path()
        if path is not None:
            parts.append(f"{path.name}[*]")
        if self.project is not None:
            name = self.project.root.name or str(self.project.root)
            parts.append(f"{name} (read-only)" if self.session.read_only else name)
        parts.append("StoneSeg")
        self.setWindowTitle(" — ".join(parts))
        self.setWindowModified(self.session.is_dirty)

    def _refresh_actions(self) -> None:
        a = self.ui_actions
        document = self.session.current_document()
        a.set_group_enabled("project", self.project is not None)
        a.set_group_enabled("image", document is not None)
        a.set_group_enabled("document", document is not None)
        a.undo.setEnabled(document is not None and document.can_undo)
        a.redo.setEnabled(document is not None and document.can_redo)
        a.undo.setText(
            f"&Undo {document.undo_label}"
            if document is not None and document.undo_label
            else "&Undo"
        )
        a.redo.setText(
            f"&Redo {document.redo_label}"
            if document is not None and document.redo_label
            else "&Redo"
        )
        a.mark_reviewed.setEnabled(self.session.current_status() == ImageStatus.PREDICTED)

    def _rebuild_recent_menu(self) -> None:
        folders = recent_folders(self.settings)
        fill_recent_menu(
            self.recent_menu, folders, self.open_folder, self._on_clear_recent_requested
        )

    def _on_clear_recent_requested(self) -> None:
        clear_recent_folders(self.settings)
        self._rebuild_recent_menu()

    # ------------------------------------------------------------------ Qt events
    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.status.fit_width(event.size().width())

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.model_side.may_close():
            event.ignore()
            return
        if self.session.close_when_saved(self.close):  # a big mask: closes once written
            event.ignore()
            return
        if not self.session.shutdown():
            event.ignore()
            return
        self.image_list.stop_thumbnails(wait=True)
        self.dock_layout.save()
        event.accept()

    @staticmethod
    def _dropped_path(mime: QMimeData) -> Path | None:
        for url in mime.urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS):
                    return path
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if self._dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_path(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        if path.is_dir():
            self.open_folder(path)
            return
        # a photo: open its project (the folder above images/ when there is one), then it
        folder = path.parent.parent if path.parent.name == "images" else path.parent
        if self.project is None or self.project.root != folder.resolve():
            if not self.open_folder(folder):
                return
        self.session.open_image(path.resolve())
