"""What every mouse tool shares: its kind (``ToolKind``), the pointer events it is given
(``PointerEvent``) and the ``Tool`` base class the canvas drives. No Qt, no torch.

The painting tools are in ``editing.tools``, the smart ones (a model's stones, GrabCut, the
magic wand) in ``editing.smart_tools``; ``tools.make_tool`` makes any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from stoneseg_core.editing.mask_document import MaskDocument, Point


class ToolKind(str, Enum):
    BRUSH = "brush"
    ERASER = "eraser"
    FILL = "fill"
    LASSO_FILL = "lasso_fill"
    LASSO_ERASE = "lasso_erase"
    CLICK_STONE = "click_stone"
    BOX_STONE = "box_stone"
    MAGIC_WAND = "magic_wand"

    @property
    def title(self) -> str:
        return {
            ToolKind.BRUSH: "Brush",
            ToolKind.ERASER: "Eraser",
            ToolKind.FILL: "Fill region",
            ToolKind.LASSO_FILL: "Lasso fill",
            ToolKind.LASSO_ERASE: "Lasso erase",
            ToolKind.CLICK_STONE: "Click a stone",
            ToolKind.BOX_STONE: "Box a stone",
            ToolKind.MAGIC_WAND: "Magic wand",
        }[self]

    @property
    def uses_brush(self) -> bool:
        return self in (ToolKind.BRUSH, ToolKind.ERASER)

    @property
    def is_lasso(self) -> bool:
        return self in (ToolKind.LASSO_FILL, ToolKind.LASSO_ERASE)

    @property
    def uses_stones(self) -> bool:
        """The tool reads the model's predicted stones (``editing.stone_layer``)."""
        return self in (ToolKind.CLICK_STONE, ToolKind.BOX_STONE)

    @property
    def is_smart(self) -> bool:
        """A tool of ``editing.smart_tools``: it reads the photo or the model, not only the mask."""
        return self in (ToolKind.CLICK_STONE, ToolKind.BOX_STONE, ToolKind.MAGIC_WAND)


@dataclass(frozen=True)
class PointerEvent:
    """A mouse event in image coordinates.

    ``secondary`` (the right button) does the opposite of the tool: the brush erases, the
    fill removes the stone clicked, the lasso fill erases. ``shift`` (held with the left
    button) does the same for the smart tools. ``tolerance`` is a few screen pixels
    expressed in image pixels (it depends on the zoom).
    """

    x: float
    y: float
    secondary: bool = False
    radius: float = 5.0
    tolerance: float = 4.0
    shift: bool = False

    @property
    def point(self) -> Point:
        return (self.x, self.y)


class Tool:
    kind: ToolKind

    @property
    def busy(self) -> bool:
        """True while a stroke or a polygon is in progress."""
        return False

    def press(self, doc: MaskDocument, ev: PointerEvent) -> None: ...

    def move(self, doc: MaskDocument, ev: PointerEvent) -> None:
        """The pointer moved with a button held."""

    def hover(self, ev: PointerEvent) -> None:
        """The pointer moved with no button held."""

    def release(self, doc: MaskDocument, ev: PointerEvent) -> None: ...

    def double_click(self, doc: MaskDocument, ev: PointerEvent) -> None:
        self.press(doc, ev)

    def finish(self, doc: MaskDocument) -> None:
        """Enter: complete what is in progress."""

    def cancel(self, doc: MaskDocument) -> None:
        """Escape: drop what is in progress (a finished stroke stays, it is undoable)."""

    def remove_last_point(self) -> None:
        """Backspace."""

    def preview(self) -> list[Point]:
        """Points of an unfinished polygon, for the canvas to draw."""
        return []

    def preview_outlines(self) -> list[list[Point]]:
        """Closed outlines to draw (a polygon in progress, a box, what the wand would fill);
        holes are outlines inside outlines."""
        points = self.preview()
        return [points] if points else []

    @property
    def erasing(self) -> bool:
        """True when what is in progress will remove stone (drawn in red)."""
        return False

    @property
    def wants_stones(self) -> bool:
        """A click waits for the model's stones (``apply_pending`` once they are there)."""
        return False

    def apply_pending(self, doc: MaskDocument) -> None:
        """The stones a waiting click needed have arrived: apply it."""

    def wheel(self, steps: float) -> bool:
        """The mouse wheel turned ``steps`` notches (positive: away from the user); True
        when the tool used it (the canvas then does not zoom)."""
        return False

    def take_message(self) -> str:
        """What the tool has to tell the user since last asked ("" for nothing)."""
        return ""
