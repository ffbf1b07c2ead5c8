"""The main window's own menus and tool bars, built from its ``Actions``.

The sides add theirs through the window (``add_action_menu``, before Help; their docks'
toggles in the View menu).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu, QToolBar

from .actions import Actions
from .editor.tool_options import BrushSizeControl, OpacityControl
from .editor.tool_settings import ToolSettings


@dataclass
class WindowMenus:
    view: QMenu  # the sides add their docks' toggles here
    help: QMenu  # the sides' menus go before it
    rescan: QAction  # File > Rescan the folder (F5)
    file: QMenu  # File: more entries go before ``before_quit``
    before_quit: QAction  # the separator above File > Quit


def build_menus(
    window: QMainWindow, a: Actions, recent_menu: QMenu, rescan_folder: Callable[[], None]
) -> WindowMenus:
    """File, Edit, Tools, View and Help in the window's menu bar."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addAction(a.open_folder)
    file_menu.addMenu(recent_menu)
    rescan = QAction("&Rescan the folder", window)
    rescan.setShortcut("F5")
    rescan.setToolTip("Show photos added to the folder since it was opened")
    rescan.triggered.connect(rescan_folder)
    window.addAction(rescan)
    file_menu.addAction(rescan)
    file_menu.addSeparator()
    file_menu.addActions([a.save, a.show_masks_folder])
    before_quit = file_menu.addSeparator()
    file_menu.addAction(a.quit)
    edit_menu = bar.addMenu("&Edit")
    edit_menu.addActions([a.undo, a.redo])
    edit_menu.addSeparator()
    edit_menu.addActions([a.fill_holes, a.invert_mask, a.clear_mask])
    edit_menu.addSeparator()
    edit_menu.addAction(a.mark_reviewed)
    tools_menu = bar.addMenu("&Tools")
    tools_menu.addActions(
        [a.tool_brush, a.tool_eraser, a.tool_fill, a.tool_lasso_fill, a.tool_lasso_erase]
    )
    tools_menu.addSeparator()
    tools_menu.addActions([a.tool_click_stone, a.tool_box_stone, a.tool_magic_wand])
    tools_menu.addSeparator()
    tools_menu.addActions([a.brush_smaller, a.brush_bigger])
    view_menu = bar.addMenu("&View")
    view_menu.addActions([a.toggle_overlay, a.outline_only, a.opacity_down, a.opacity_up])
    view_menu.addSeparator()
    view_menu.addActions([a.zoom_in, a.zoom_out, a.zoom_fit, a.zoom_100])
    view_menu.addSeparator()
    view_menu.addActions([a.previous_image, a.next_image])
    view_menu.addSeparator()
    view_menu.addAction(a.toggle_image_list)
    help_menu = bar.addMenu("&Help")
    help_menu.addActions([a.shortcuts, a.about])
    return WindowMenus(view_menu, help_menu, rescan, file_menu, before_quit)


def build_toolbars(
    window: QMainWindow, a: Actions, tool_settings: ToolSettings
) -> tuple[BrushSizeControl, OpacityControl]:
    """Main and tool options at the top, the painting tools at the left; returns the
    tool options' brush size and opacity controls."""
    main = QToolBar("Main", window)
    main.setObjectName("main_toolbar")
    main.setIconSize(QSize(22, 22))
    main.addActions([a.open_folder, a.save])
    main.addSeparator()
    main.addActions([a.undo, a.redo])
    main.addSeparator()
    main.addActions([a.previous_image, a.next_image])
    main.addSeparator()
    main.addActions([a.zoom_fit, a.zoom_100])
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, main)

    options = QToolBar("Tool options", window)
    options.setObjectName("tool_options_toolbar")
    options.setIconSize(QSize(22, 22))
    brush_control = BrushSizeControl(tool_settings)
    opacity_control = OpacityControl(tool_settings)
    options.addWidget(brush_control)
    options.addSeparator()
    options.addWidget(opacity_control)
    options.addActions([a.toggle_overlay, a.outline_only])
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, options)

    tools = QToolBar("Tools", window)
    tools.setObjectName("tools_toolbar")
    tools.setIconSize(QSize(26, 26))
    tools.setOrientation(Qt.Orientation.Vertical)
    tools.addActions(
        [a.tool_brush, a.tool_eraser, a.tool_fill, a.tool_lasso_fill, a.tool_lasso_erase]
    )
    tools.addActions([a.tool_click_stone, a.tool_box_stone, a.tool_magic_wand])
    tools.addSeparator()
    tools.addActions([a.fill_holes, a.invert_mask, a.clear_mask])
    window.addToolBar(Qt.ToolBarArea.LeftToolBarArea, tools)
    return brush_control, opacity_control


def fill_recent_menu(
    menu: QMenu,
    folders: list[Path],
    open_folder: Callable[[Path], object],
    clear: Callable[[], object],
) -> None:
    """File > Open recent: the recent folders (those gone greyed out), then Clear."""
    menu.clear()
    for i, folder in enumerate(folders, start=1):
        label = f"&{i} {folder}" if i < 10 else str(folder)
        action: QAction = menu.addAction(label)
        action.setData(str(folder))
        action.setEnabled(folder.is_dir())
        action.triggered.connect(lambda _checked=False, f=folder: open_folder(f))
    if not folders:
        menu.addAction("(no recent folders)").setEnabled(False)
    menu.addSeparator()
    menu.addAction("Clear recent folders").triggered.connect(clear)
