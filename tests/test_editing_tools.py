"""The mouse tools, driven with plain events: no Qt involved."""

from __future__ import annotations

import numpy as np

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.tools import (
    BrushTool,
    FillTool,
    LassoTool,
    PointerEvent,
    ToolKind,
    make_tool,
)


def ev(x: float, y: float, secondary: bool = False, radius: float = 2.0) -> PointerEvent:
    return PointerEvent(x, y, secondary=secondary, radius=radius, tolerance=2.0)


def test_brush_drag_is_one_undo_step_and_right_button_erases() -> None:
    doc = MaskDocument(shape=(30, 40))
    brush = BrushTool(ToolKind.BRUSH)
    brush.press(doc, ev(5, 10))
    assert brush.busy
    for x in range(6, 35):
        brush.move(doc, ev(x, 10))
    brush.release(doc, ev(35, 10))
    assert not brush.busy
    assert doc.mask[10, 5:35].all() and doc.undo_steps == 1
    brush.press(doc, ev(20, 10, secondary=True))
    brush.release(doc, ev(20, 10, secondary=True))
    assert doc.mask[10, 20] == 0 and doc.mask[10, 10] == 255


def test_eraser_erases_and_right_button_paints() -> None:
    doc = MaskDocument(np.full((20, 20), 255, np.uint8))
    eraser = make_tool(ToolKind.ERASER)
    eraser.press(doc, ev(5, 5))
    eraser.release(doc, ev(5, 5))
    assert doc.mask[4, 4] == 0
    doc2 = MaskDocument(shape=(20, 20))
    eraser.press(doc2, ev(5, 5, secondary=True))
    eraser.release(doc2, ev(5, 5, secondary=True))
    assert doc2.mask[4, 4] == 255


def test_fill_tool_fills_and_right_click_removes_a_stone() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5] = mask[5:15, 14] = mask[5, 5:15] = mask[14, 5:15] = 255
    doc = MaskDocument(mask)
    fill = FillTool()
    fill.press(doc, ev(10, 10))
    assert doc.mask[5:15, 5:15].all()
    fill.press(doc, ev(10, 10, secondary=True))
    assert not doc.mask.any()


def test_lasso_freehand_drag_fills_on_release() -> None:
    doc = MaskDocument(shape=(40, 40))
    lasso = LassoTool(ToolKind.LASSO_FILL)
    lasso.press(doc, ev(10, 10))
    for p in [(30, 10), (30, 30), (10, 30)]:
        lasso.move(doc, ev(*p))
    assert len(lasso.preview()) >= 4
    lasso.release(doc, ev(10, 30))
    assert not lasso.busy
    assert doc.mask[12:28, 12:28].all() and not doc.mask[35, 35]
    assert doc.undo_steps == 1


def test_lasso_click_mode_closes_on_first_corner_enter_or_double_click() -> None:
    doc = MaskDocument(shape=(40, 40))
    lasso = LassoTool(ToolKind.LASSO_FILL)
    for p in [(5, 5), (20, 5), (20, 20)]:
        lasso.press(doc, ev(*p))
        lasso.release(doc, ev(*p))
    lasso.hover(ev(5, 20))
    assert lasso.preview()[-1] == (5, 20)  # rubber band to the pointer
    assert not doc.mask.any()
    lasso.press(doc, ev(5.5, 5.5))  # on the first corner: close
    assert not lasso.busy and doc.mask[6, 15] == 255 and doc.mask[15, 6] == 0

    erase = LassoTool(ToolKind.LASSO_ERASE)
    for p in [(0, 0), (40, 0), (40, 10)]:
        erase.press(doc, ev(*p))
        erase.release(doc, ev(*p))
    assert erase.erasing
    erase.finish(doc)  # Enter
    assert doc.mask[0:5, 30:40].sum() == 0

    doc2 = MaskDocument(shape=(40, 40))
    lasso.press(doc2, ev(2, 2))
    lasso.release(doc2, ev(2, 2))
    lasso.press(doc2, ev(30, 2))
    lasso.release(doc2, ev(30, 2))
    lasso.press(doc2, ev(30, 30))
    lasso.double_click(doc2, ev(30, 30))
    assert doc2.mask[10, 20] == 255


def test_lasso_backspace_escape_and_right_button() -> None:
    doc = MaskDocument(shape=(30, 30))
    lasso = LassoTool(ToolKind.LASSO_FILL)
    for p in [(1, 1), (20, 1), (20, 20), (25, 25)]:
        lasso.press(doc, ev(*p))
        lasso.release(doc, ev(*p))
    lasso.remove_last_point()
    assert lasso.points == [(1, 1), (20, 1), (20, 20)]
    lasso.cancel(doc)
    assert not lasso.busy and not doc.mask.any()
    full = MaskDocument(np.full((30, 30), 255, np.uint8))
    lasso.press(full, ev(2, 2, secondary=True))
    for p in [(20, 2), (20, 20), (2, 20)]:
        lasso.move(full, ev(*p, secondary=True))
    lasso.release(full, ev(2, 20, secondary=True))
    assert full.mask[10, 10] == 0 and full.mask[25, 25] == 255
