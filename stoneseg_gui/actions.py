"""Every QAction of the window, made by one factory from one table (labelme's habit).

``ACTION_SPECS`` says, for each action, its text, keys, tip, icon and the groups it
belongs to; ``create_actions`` builds them and connects the slots it is given. Groups are
enabled together: "project" needs an open folder, "image" a shown photo, "document" an
editable mask. Part 2 adds its own actions with ``make_action``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence

from stoneseg_core.editing.tools import ToolKind

from .widgets.icons import icon


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcuts: tuple[str, ...]
    tip: str
    icon: str | None = None
    checkable: bool = False
    checked: bool = False
    groups: tuple[str, ...] = ()


ACTION_SPECS: tuple[ActionSpec, ...] = (
    # File
    ActionSpec(
        "open_folder",
        "&Open folder…",
        ("Ctrl+O",),
        "Open a folder of photos (with images/ and masks/, or just photos)",
        "open",
    ),
    ActionSpec(
        "save",
        "&Save mask",
        ("Ctrl+S",),
        "Save this photo's mask now (it is also saved when you switch photo or quit)",
        "save",
        groups=("document",),
    ),
    ActionSpec(
        "show_masks_folder",
        "Show &masks folder",
        ("Ctrl+Shift+M",),
        "Open the folder where the masks are saved",
        "masks_folder",
        groups=("project",),
    ),
    ActionSpec("quit", "&Quit", ("Ctrl+Q",), "Save the mask and quit"),
    # Edit
    ActionSpec(
        "undo",
        "&Undo",
        ("Ctrl+Z",),
        "Undo the last stroke, fill or lasso",
        "undo",
        groups=("document",),
    ),
    ActionSpec(
        "redo",
        "&Redo",
        ("Ctrl+Shift+Z", "Ctrl+Y"),
        "Redo what was undone",
        "redo",
        groups=("document",),
    ),
    ActionSpec(
        "fill_holes",
        "Fill &holes",
        ("H",),
        "Make stone every background area enclosed by stone",
        "fill_holes",
        groups=("document",),
    ),
    ActionSpec(
        "invert_mask",
        "&Invert mask",
        ("Ctrl+I",),
        "Swap stone and background",
        "invert",
        groups=("document",),
    ),
    ActionSpec(
        "clear_mask",
        "&Clear mask",
        ("Ctrl+Delete", "Ctrl+Backspace"),
        "Remove all stone from this mask",
        "clear",
        groups=("document",),
    ),
    ActionSpec(
        "mark_reviewed",
        "Mark as &reviewed",
        ("Ctrl+R",),
        "Accept a predicted mask as checked, so that training uses it",
        "reviewed",
        groups=("predicted",),
    ),
    # Tools
    ActionSpec(
        "tool_brush",
        "&Brush",
        ("B",),
        "Paint stone; right button erases",
        "brush",
        checkable=True,
        checked=True,
        groups=("tools",),
    ),
    ActionSpec(
        "tool_eraser",
        "&Eraser",
        ("E",),
        "Erase stone; right button paints",
        "eraser",
        checkable=True,
        groups=("tools",),
    ),
    ActionSpec(
        "tool_fill",
        "&Fill region",
        ("F",),
        "Click inside a closed outline to fill it; right-click a stone to remove it",
        "fill",
        checkable=True,
        groups=("tools",),
    ),
    ActionSpec(
        "tool_lasso_fill",
        "&Lasso fill",
        ("L",),
        "Drag an outline, or click corners (double-click or Enter closes), to fill it with stone",
        "lasso_fill",
        checkable=True,
        groups=("tools",),
    ),
    ActionSpec(
        "tool_lasso_erase",
        "Lasso &erase",
        ("Shift+L",),
        "Like lasso fill, but removes stone inside the outline",
        "lasso_erase",
        checkable=True,
        groups=("tools",),
    ),
    ActionSpec(
        "tool_click_stone",
        "&Click a stone",
        ("C",),
        "Click a stone to add it as the model predicts it (drag: every stone crossed); "
        "Shift+click or right-click removes one. Predicts the photo first if need be",
        "click_stone",
        checkable=True,
        groups=("tools",),
    ),
    ActionSpec(
        "tool_box_stone",
        "Bo&x a stone",
        ("R",),
        "Drag a box round one stone: the model's stone in it, else GrabCut finds it; "
        "Shift or the right button removes it",
        "box_stone",
        checkable=True,
        groups=("tools",),
    ),
    ActionSpec(
        "tool_magic_wand",
        "Magic &wand",
        ("W",),
        "Click an area of like colour to make it stone (outlined before you click); the "
        "wheel changes the tolerance, Ctrl+wheel zooms; Shift or the right button removes",
        "magic_wand",
        checkable=True,
        groups=("tools",),
    ),
    ActionSpec("brush_smaller", "Brush s&maller", ("[",), "Make the brush about 20 % smaller"),
    ActionSpec("brush_bigger", "Brush bi&gger", ("]",), "Make the brush about 20 % bigger"),
    # View
    ActionSpec(
        "toggle_overlay",
        "Show &mask",
        ("V",),
        "Show or hide the mask over the photo",
        "show_mask",
        checkable=True,
        checked=True,
    ),
    ActionSpec(
        "outline_only",
        "&Outline only",
        ("O",),
        "Draw only the borders of the stones",
        "outline",
        checkable=True,
    ),
    ActionSpec("opacity_down", "Mask more &transparent", ("Ctrl+[",), "Lower the mask's opacity"),
    ActionSpec("opacity_up", "Mask more o&paque", ("Ctrl+]",), "Raise the mask's opacity"),
    ActionSpec(
        "zoom_in",
        "Zoom &in",
        ("Ctrl++", "Ctrl+=", "+"),
        "Zoom in (or turn the mouse wheel)",
        "zoom_in",
        groups=("image",),
    ),
    ActionSpec(
        "zoom_out",
        "Zoom o&ut",
        ("Ctrl+-", "-"),
        "Zoom out (or turn the mouse wheel)",
        "zoom_out",
        groups=("image",),
    ),
    ActionSpec(
        "zoom_fit",
        "&Fit to window",
        ("Ctrl+0",),
        "Show the whole photo",
        "zoom_fit",
        groups=("image",),
    ),
    ActionSpec(
        "zoom_100",
        "&Actual size (100 %)",
        ("Ctrl+1",),
        "One photo pixel per screen pixel",
        "zoom_100",
        groups=("image",),
    ),
    ActionSpec(
        "next_image",
        "&Next photo",
        ("PgDown", "D"),
        "Save and open the next photo",
        "next",
        groups=("project",),
    ),
    ActionSpec(
        "previous_image",
        "&Previous photo",
        ("PgUp", "A"),
        "Save and open the previous photo",
        "previous",
        groups=("project",),
    ),
    ActionSpec(
        "toggle_image_list",
        "Image &list",
        ("F9",),
        "Show or hide the list of photos",
        checkable=True,
        checked=True,
    ),
    # Help
    ActionSpec(
        "shortcuts", "&Keyboard shortcuts", ("F1",), "List every key and mouse gesture", "help"
    ),
    ActionSpec("about", "&About StoneSeg", ("Shift+F1",), "Version and licences"),
)

TOOL_ACTIONS: dict[ToolKind, str] = {
    ToolKind.BRUSH: "tool_brush",
    ToolKind.ERASER: "tool_eraser",
    ToolKind.FILL: "tool_fill",
    ToolKind.LASSO_FILL: "tool_lasso_fill",
    ToolKind.LASSO_ERASE: "tool_lasso_erase",
    ToolKind.CLICK_STONE: "tool_click_stone",
    ToolKind.BOX_STONE: "tool_box_stone",
    ToolKind.MAGIC_WAND: "tool_magic_wand",
}

# Keys handled by the canvas itself, listed in the help dialog beside the actions.
CANVAS_GESTURES: tuple[tuple[str, str, str], ...] = (
    ("Paint / use tool", "Left button", "Brush paints, eraser erases, fill fills, lasso draws"),
    ("Opposite of tool", "Right button", "Brush erases, fill removes a stone, lasso fill erases"),
    (
        "Zoom around pointer",
        "Mouse wheel (Ctrl+wheel with the Magic wand)",
        "Turn the wheel over the photo",
    ),
    (
        "Remove with a smart tool",
        "Shift+click, or right button",
        "Click a stone, Box a stone, Magic wand: remove stone instead of adding it",
    ),
    (
        "Magic wand tolerance",
        "Mouse wheel (Magic wand)",
        "Ctrl+wheel zooms while the wand is in hand",
    ),
    ("Pan", "Middle button drag, or Space + drag", "Move the photo in the window"),
    (
        "Close the lasso",
        "Enter, double-click, or click the first corner",
        "Lasso tools: fill the outline",
    ),
    ("Remove last corner", "Backspace", "Lasso tools"),
    ("Cancel the lasso", "Esc", "Lasso tools: drop the outline"),
    ("Recent folders", "Alt+F, R, then 1–9", "File ▸ Open recent"),
    (
        "Draw a line (grain tools)",
        "Two clicks, or a drag",
        "Measure scale bar and Split stone; Esc drops the line, Esc again leaves the tool",
    ),
    ("Choose a second stone", "Ctrl+click", "Pick stones: add a stone to the choice, to merge"),
)


def make_action(
    parent: QObject,
    text: str,
    slot: Callable[..., object] | None = None,
    shortcuts: Sequence[str] = (),
    tip: str = "",
    icon_name: str | None = None,
    checkable: bool = False,
    checked: bool = False,
) -> QAction:
    """One QAction with text, keys (shown in its tooltip), icon and slot."""
    action = QAction(text, parent)
    if shortcuts:
        action.setShortcuts([QKeySequence(s) for s in shortcuts])
    keys = ", ".join(
        QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText) for s in shortcuts
    )
    plain = text.replace("&", "").rstrip("…")
    action.setToolTip(f"{plain} ({keys})\n{tip}" if keys else f"{plain}\n{tip}" if tip else plain)
    action.setStatusTip(tip)
    action.setWhatsThis(tip)
    if icon_name:
        action.setIcon(icon(icon_name))
    if checkable:
        action.setCheckable(True)
        action.setChecked(checked)
    if slot is not None:
        if checkable:
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda _checked=False, fn=slot: fn())
    return action


@dataclass
class Actions:
    """The window's actions, one typed attribute each, plus the enable groups."""

    open_folder: QAction
    save: QAction
    show_masks_folder: QAction
    quit: QAction
    undo: QAction
    redo: QAction
    fill_holes: QAction
    invert_mask: QAction
    clear_mask: QAction
    mark_reviewed: QAction
    tool_brush: QAction
    tool_eraser: QAction
    tool_fill: QAction
    tool_lasso_fill: QAction
    tool_lasso_erase: QAction
    tool_click_stone: QAction
    tool_box_stone: QAction
    tool_magic_wand: QAction
    brush_smaller: QAction
    brush_bigger: QAction
    toggle_overlay: QAction
    outline_only: QAction
    opacity_down: QAction
    opacity_up: QAction
    zoom_in: QAction
    zoom_out: QAction
    zoom_fit: QAction
    zoom_100: QAction
    next_image: QAction
    previous_image: QAction
    toggle_image_list: QAction
    shortcuts: QAction
    about: QAction
    groups: dict[str, list[QAction]] = field(default_factory=dict)
    tool_group: QActionGroup | None = None

    def __iter__(self) -> Iterator[QAction]:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, QAction):
                yield value

    def get(self, name: str) -> QAction:
        return getattr(self, name)

    def tool_action(self, kind: ToolKind) -> QAction:
        return self.get(TOOL_ACTIONS[kind])

    def set_group_enabled(self, group: str, enabled: bool) -> None:
        for action in self.groups.get(group, []):
            action.setEnabled(enabled)


def create_actions(parent: QObject, slots: Mapping[str, Callable[..., object]]) -> Actions:
    """Build every action of ``ACTION_SPECS``; ``slots`` maps action names to callables.

    A checkable action's slot receives the new checked state.
    """
    unknown = set(slots) - {s.name for s in ACTION_SPECS}
    if unknown:
        raise KeyError(f"Slots for unknown actions: {sorted(unknown)}")
    made: dict[str, QAction] = {}
    groups: dict[str, list[QAction]] = {}
    tool_group = QActionGroup(parent)
    tool_group.setExclusive(True)
    for spec in ACTION_SPECS:
        action = make_action(
            parent,
            spec.text,
            slots.get(spec.name),
            spec.shortcuts,
            spec.tip,
            spec.icon,
            spec.checkable,
            spec.checked,
        )
        action.setObjectName(spec.name)
        made[spec.name] = action
        for group in spec.groups:
            groups.setdefault(group, []).append(action)
        if "tools" in spec.groups:
            tool_group.addAction(action)
    return Actions(**made, groups=groups, tool_group=tool_group)
