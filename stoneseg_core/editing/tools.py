"""Mouse tools as plain objects: pointer events in image coordinates -> MaskDocument edits.

No Qt here (napari's habit): the canvas turns Qt events into ``PointerEvent`` and calls
``press``/``move``/``release``; tests drive the tools directly with fake events. The painting
tools are here; the smart ones (a model's stones, GrabCut, the magic wand) in
``smart_tools``, given a ``SmartContext``; ``make_tool`` makes any of them. ``ToolKind``,
``PointerEvent`` and ``Tool`` live in ``tool_base`` and are named here too.
"""

from __future__ import annotations

import math

from stoneseg_core.editing.mask_document import MaskDocument, Point
from stoneseg_core.editing.smart_tools import (
    BoxStoneTool,
    ClickStoneTool,
    MagicWandTool,
    SmartContext,
)
from stoneseg_core.editing.tool_base import PointerEvent, Tool, ToolKind
from stoneseg_core.io.images import BACKGROUND, STONE

__all__ = [
    "BrushTool",
    "FillTool",
    "LassoTool",
    "PointerEvent",
    "SmartContext",
    "Tool",
    "ToolKind",
    "make_tool",
]


class BrushTool(Tool):
    """Paints (brush) or erases (eraser) round strokes; one drag is one undo step."""

    def __init__(self, kind: ToolKind) -> None:
        self.kind = kind
        self._value = STONE if kind == ToolKind.BRUSH else BACKGROUND
        self._last: Point | None = None
        self._stroke_value = self._value

    @property
    def busy(self) -> bool:
        return self._last is not None

    def press(self, doc: MaskDocument, ev: PointerEvent) -> None:
        self._stroke_value = (STONE + BACKGROUND - self._value) if ev.secondary else self._value
        # an action, not the tool: the Edit menu reads "Undo Eraser stroke", never "Undo Eraser"
        # as if the eraser were still the tool in use
        label = "Brush stroke" if self._stroke_value == STONE else "Eraser stroke"
        doc.begin_stroke(label)
        doc.paint_disc(ev.point, ev.radius, self._stroke_value, label)
        self._last = ev.point

    def move(self, doc: MaskDocument, ev: PointerEvent) -> None:
        if self._last is None:
            return
        if ev.point != self._last:
            doc.paint_line(self._last, ev.point, ev.radius, self._stroke_value)
            self._last = ev.point

    def release(self, doc: MaskDocument, ev: PointerEvent) -> None:
        if self._last is None:
            return
        self.move(doc, ev)
        self._last = None
        doc.end_stroke()

    def double_click(self, doc: MaskDocument, ev: PointerEvent) -> None:
        self.press(doc, ev)

    def cancel(self, doc: MaskDocument) -> None:
        if self._last is not None:
            self._last = None
            doc.end_stroke()


class FillTool(Tool):
    """Click inside a closed outline to fill it; right-click a stone to remove it."""

    kind = ToolKind.FILL

    def press(self, doc: MaskDocument, ev: PointerEvent) -> None:
        doc.fill_region(ev.point, BACKGROUND if ev.secondary else STONE)


class LassoTool(Tool):
    """Polygon fill or erase.

    Drag to draw a freehand outline, closed on release; or click the corners one by one
    and close with a double-click, Enter, or a click on the first corner. Backspace removes
    the last corner, Escape drops the polygon.
    """

    def __init__(self, kind: ToolKind) -> None:
        self.kind = kind
        self._value = STONE if kind == ToolKind.LASSO_FILL else BACKGROUND
        self._points: list[Point] = []
        self._hover: Point | None = None
        self._pressed_at: Point | None = None
        self._freehand = False
        self._started_by_press = False
        self._polygon_value = self._value

    @property
    def busy(self) -> bool:
        return bool(self._points)

    @property
    def points(self) -> list[Point]:
        return list(self._points)

    @property
    def erasing(self) -> bool:
        value = self._polygon_value if self._points else self._value
        return value == BACKGROUND

    def press(self, doc: MaskDocument, ev: PointerEvent) -> None:
        p = ev.point
        self._pressed_at = p
        self._freehand = False
        if not self._points:
            self._polygon_value = (
                (STONE + BACKGROUND - self._value) if ev.secondary else self._value
            )
            self._points = [p]
            self._started_by_press = True
            return
        self._started_by_press = False
        first = self._points[0]
        if len(self._points) >= 3 and math.dist(p, first) <= ev.tolerance:
            self.finish(doc)
            self._pressed_at = None
            return
        self._points.append(p)

    def move(self, doc: MaskDocument, ev: PointerEvent) -> None:
        p = ev.point
        self._hover = p
        if self._pressed_at is None or not self._points:
            return
        if not self._freehand and math.dist(p, self._pressed_at) > ev.tolerance:
            self._freehand = True
        if self._freehand and math.dist(p, self._points[-1]) >= max(0.5, ev.tolerance / 4):
            self._points.append(p)

    def hover(self, ev: PointerEvent) -> None:
        self._hover = ev.point

    def release(self, doc: MaskDocument, ev: PointerEvent) -> None:
        if self._pressed_at is None:
            return
        self.move(doc, ev)
        self._pressed_at = None
        if self._freehand and self._started_by_press:
            self.finish(doc)

    def double_click(self, doc: MaskDocument, ev: PointerEvent) -> None:
        # the first click of the double-click already added this corner
        self._pressed_at = None
        self.finish(doc)

    def finish(self, doc: MaskDocument) -> None:
        points, self._points = self._points, []
        self._pressed_at = None
        self._freehand = False
        if len(points) >= 3:
            doc.fill_polygon(points, self._polygon_value)

    def cancel(self, doc: MaskDocument) -> None:
        self._points = []
        self._pressed_at = None
        self._freehand = False

    def remove_last_point(self) -> None:
        if self._points:
            self._points.pop()

    def preview(self) -> list[Point]:
        if not self._points:
            return []
        if self._hover is not None and self._pressed_at is None:
            return [*self._points, self._hover]
        return list(self._points)


def make_tool(kind: ToolKind, context: SmartContext | None = None) -> Tool:
    """The tool of ``kind``; the smart ones read the photo and the model's stones from
    ``context`` (the canvas's; a fresh empty one when None)."""
    if kind.is_smart:
        context = context if context is not None else SmartContext()
        smart = {
            ToolKind.CLICK_STONE: ClickStoneTool,
            ToolKind.BOX_STONE: BoxStoneTool,
            ToolKind.MAGIC_WAND: MagicWandTool,
        }[kind]
        return smart(context)
    if kind.uses_brush:
        return BrushTool(kind)
    if kind.is_lasso:
        return LassoTool(kind)
    return FillTool()
