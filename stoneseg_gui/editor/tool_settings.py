"""The editor's current tool, brush size and overlay look: one small model, many views.

Actions, the tool-options toolbar, the canvas and the status bar all read and change this
object instead of talking to each other.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from stoneseg_core.editing.tools import ToolKind

MIN_BRUSH = 1
MAX_BRUSH = 1000
DEFAULT_BRUSH = 20


def next_brush_size(size: int, grow: bool) -> int:
    """About 20 % per step, at least one pixel: fine control small, fast travel large."""
    if grow:
        return min(MAX_BRUSH, max(size + 1, round(size * 1.2)))
    return max(MIN_BRUSH, min(size - 1, round(size / 1.2)))


class ToolSettings(QObject):
    tool_changed = Signal(object)  # ToolKind
    brush_size_changed = Signal(int)  # diameter in image pixels
    overlay_changed = Signal()  # opacity, visibility or outline mode

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tool = ToolKind.BRUSH
        self._brush_size = DEFAULT_BRUSH
        self._brush_chosen = False  # the user set a size: photos no longer resize the brush
        self._opacity = 0.5
        self._overlay_visible = True
        self._outline_only = False

    # ---------------------------------------------------------------- tool
    @property
    def tool(self) -> ToolKind:
        return self._tool

    def set_tool(self, tool: ToolKind) -> None:
        tool = ToolKind(tool)
        if tool != self._tool:
            self._tool = tool
            self.tool_changed.emit(tool)

    # ---------------------------------------------------------------- brush
    @property
    def brush_size(self) -> int:
        return self._brush_size

    @property
    def brush_radius(self) -> float:
        return self._brush_size / 2.0

    def set_brush_size(self, size: int) -> None:
        size = int(min(MAX_BRUSH, max(MIN_BRUSH, round(size))))
        if size != self._brush_size:
            self._brush_size = size
            self.brush_size_changed.emit(size)

    def choose_brush_size(self, size: int) -> None:
        """The user's own size (slider, box, [ ]): kept from photo to photo."""
        self._brush_chosen = True
        self.set_brush_size(size)

    def fit_brush_to_photo(self, width: int, height: int) -> None:
        """Until the user picks a size, the brush is about 1/50 of the photo's long side
        (a 4032-px photo at fit zoom showed the fixed default as a 3-pixel dot)."""
        if not self._brush_chosen:
            self.set_brush_size(max(DEFAULT_BRUSH, round(max(width, height) / 50)))

    def grow_brush(self) -> None:
        self.choose_brush_size(next_brush_size(self._brush_size, True))

    def shrink_brush(self) -> None:
        self.choose_brush_size(next_brush_size(self._brush_size, False))

    # ---------------------------------------------------------------- overlay
    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, opacity: float) -> None:
        opacity = float(min(1.0, max(0.05, opacity)))
        if abs(opacity - self._opacity) > 1e-6:
            self._opacity = opacity
            self.overlay_changed.emit()

    def change_opacity(self, step: float) -> None:
        self.set_opacity(round((self._opacity + step) * 20) / 20)

    @property
    def overlay_visible(self) -> bool:
        return self._overlay_visible

    def set_overlay_visible(self, visible: bool) -> None:
        if bool(visible) != self._overlay_visible:
            self._overlay_visible = bool(visible)
            self.overlay_changed.emit()

    def toggle_overlay(self) -> None:
        self.set_overlay_visible(not self._overlay_visible)

    @property
    def outline_only(self) -> bool:
        return self._outline_only

    def set_outline_only(self, outline: bool) -> None:
        if bool(outline) != self._outline_only:
            self._outline_only = bool(outline)
            self.overlay_changed.emit()
