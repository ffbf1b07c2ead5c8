"""The canvas with real mouse presses and drags on its viewport, asserting mask pixels."""

from __future__ import annotations

import numpy as np
import pytest
from guihelpers import click, drag, to_view
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QWheelEvent
from PySide6.QtWidgets import QApplication

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.tools import ToolKind
from stoneseg_gui.editor.canvas import MaskCanvas
from stoneseg_gui.editor.display import make_display_image
from stoneseg_gui.editor.tool_settings import ToolSettings

GREY = 120


@pytest.fixture
def settings() -> ToolSettings:
    return ToolSettings()


@pytest.fixture
def canvas(qtbot, settings):
    view = MaskCanvas(settings)
    qtbot.addWidget(view)
    view.resize(640, 480)
    view.show()
    qtbot.waitExposed(view)
    return view


def show(canvas: MaskCanvas, width: int = 200, height: int = 100, mask=None) -> MaskDocument:
    rgb = np.full((height, width, 3), GREY, np.uint8)
    doc = MaskDocument(mask) if mask is not None else MaskDocument(shape=(height, width))
    canvas.show_image(make_display_image(rgb), doc)
    QApplication.processEvents()
    return doc


def pixel(canvas: MaskCanvas, x: float, y: float) -> QColor:
    image = canvas.viewport().grab().toImage()
    return image.pixelColor(to_view(canvas, x, y))


def test_a_photo_opens_fitted_and_ready_to_paint(canvas, settings) -> None:
    doc = show(canvas)
    assert canvas.is_fitted()
    top_left, bottom_right = canvas.image_to_viewport(0, 0), canvas.image_to_viewport(200, 100)
    vp = canvas.viewport().rect()
    assert top_left.x() >= 0 and bottom_right.x() <= vp.width()
    assert abs((bottom_right.x() - top_left.x()) - (vp.width() - 24)) <= 1  # fills the width
    assert settings.tool == ToolKind.BRUSH and canvas.document is doc
    assert canvas.viewport().cursor().shape() == Qt.CursorShape.CrossCursor


def test_left_drag_paints_along_the_path_as_one_undo_step(qtbot, canvas, settings) -> None:
    settings.set_brush_size(6)
    doc = show(canvas)
    drag(qtbot, canvas, [(20.5, 50.5), (60.5, 50.5), (100.5, 50.5), (150.5, 50.5)])
    assert doc.mask[50, 20:151].all()
    assert doc.mask[48:53, 80].all() and not doc.mask[45, 80] and not doc.mask[56, 80]
    assert not doc.mask[50, 160:].any()
    assert doc.undo_steps == 1
    assert pixel(canvas, 80.5, 50.5) != QColor(GREY, GREY, GREY)  # the overlay shows it
    doc.undo()
    assert not doc.mask.any()


def test_right_drag_with_the_brush_erases(qtbot, canvas, settings) -> None:
    doc = show(canvas, mask=np.full((100, 200), 255, np.uint8))
    settings.set_brush_size(10)
    drag(qtbot, canvas, [(50.5, 50.5), (120.5, 50.5)], button=Qt.MouseButton.RightButton)
    assert not doc.mask[50, 50:121].any()
    assert doc.mask[10, 50:121].all()


def test_eraser_tool_erases_with_the_left_button(qtbot, canvas, settings) -> None:
    doc = show(canvas, mask=np.full((100, 200), 255, np.uint8))
    settings.set_tool(ToolKind.ERASER)
    settings.set_brush_size(4)
    drag(qtbot, canvas, [(10.5, 10.5), (40.5, 10.5)])
    assert not doc.mask[10, 10:41].any() and doc.mask[20, 20]


def test_fill_tool_click_fills_a_closed_outline(qtbot, canvas, settings) -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[20:60, 40] = mask[20:60, 90] = mask[20, 40:91] = mask[59, 40:91] = 255
    doc = show(canvas, mask=mask)
    settings.set_tool(ToolKind.FILL)
    click(qtbot, canvas, 60.5, 40.5)
    assert doc.mask[21:59, 41:90].all() and not doc.mask[80, 150]
    click(qtbot, canvas, 60.5, 40.5, Qt.MouseButton.RightButton)
    assert not doc.mask.any()


def test_lasso_corners_and_double_click_fill_the_polygon(qtbot, canvas, settings) -> None:
    doc = show(canvas)
    settings.set_tool(ToolKind.LASSO_FILL)
    for x, y in [(20.5, 20.5), (80.5, 20.5), (80.5, 70.5)]:
        click(qtbot, canvas, x, y)
    assert not doc.mask.any()  # not closed yet
    # a real double-click: press, release, then the double-click event (and its release)
    click(qtbot, canvas, 20.5, 70.5)
    qtbot.mouseDClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=to_view(canvas, 20.5, 70.5))
    assert doc.mask[45, 50] == 255 and doc.mask[10, 50] == 0 and doc.mask[45, 100] == 0
    assert doc.undo_steps == 1


def test_lasso_erase_freehand_drag_and_escape_cancels(qtbot, canvas, settings) -> None:
    doc = show(canvas, mask=np.full((100, 200), 255, np.uint8))
    settings.set_tool(ToolKind.LASSO_ERASE)
    drag(qtbot, canvas, [(100.5, 20.5), (160.5, 20.5), (160.5, 80.5), (100.5, 80.5)])
    assert not doc.mask[30:70, 110:150].any() and doc.mask[50, 50]
    click(qtbot, canvas, 10.5, 10.5)
    click(qtbot, canvas, 40.5, 10.5)
    assert canvas.tool.busy
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert not canvas.tool.busy


def test_middle_drag_pans_without_painting(qtbot, canvas) -> None:
    doc = show(canvas, 400, 300)
    canvas.set_zoom(4.0)
    before = canvas.viewport_to_image(QPointF(320, 240))
    drag(qtbot, canvas, [(100, 100), (80, 90)], button=Qt.MouseButton.MiddleButton)
    after = canvas.viewport_to_image(QPointF(320, 240))
    assert after.x() > before.x() + 10 and after.y() > before.y() + 5
    assert not doc.mask.any()


def test_space_held_turns_a_left_drag_into_a_pan(qtbot, canvas) -> None:
    doc = show(canvas, 400, 300)
    canvas.set_zoom(4.0)
    canvas.setFocus()
    before = canvas.viewport_to_image(QPointF(320, 240))
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    assert canvas.viewport().cursor().shape() == Qt.CursorShape.OpenHandCursor
    vp = canvas.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=QPoint(300, 200))
    qtbot.mouseMove(vp, QPoint(250, 150))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=QPoint(250, 150))
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    after = canvas.viewport_to_image(QPointF(320, 240))
    assert after.x() > before.x() + 10
    assert not doc.mask.any()
    assert canvas.viewport().cursor().shape() == Qt.CursorShape.CrossCursor


def wheel(canvas: MaskCanvas, pos: QPointF, delta: int) -> None:
    event = QWheelEvent(
        pos,
        canvas.viewport().mapToGlobal(pos),
        QPoint(0, 0),
        QPoint(0, delta),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas.viewport(), event)


def test_wheel_zooms_around_the_pointer(canvas) -> None:
    show(canvas, 400, 300)
    zoom = canvas.zoom()
    anchor = QPointF(200, 150)
    under = canvas.viewport_to_image(anchor)
    wheel(canvas, anchor, 240)
    assert canvas.zoom() > zoom * 1.3
    assert not canvas.is_fitted()
    still = canvas.viewport_to_image(anchor)
    assert abs(still.x() - under.x()) < 1.0 and abs(still.y() - under.y()) < 1.0
    wheel(canvas, anchor, -480)
    assert canvas.zoom() < zoom


def test_fit_and_actual_size(canvas) -> None:
    show(canvas, 2000, 1000)
    fitted = canvas.zoom()
    assert fitted < 0.5
    canvas.zoom_to_actual_size()
    assert canvas.zoom() == pytest.approx(1.0)
    canvas.fit_to_window()
    assert canvas.zoom() == pytest.approx(fitted) and canvas.is_fitted()


def test_brush_cursor_is_a_circle_of_the_true_size(qtbot, canvas, settings) -> None:
    show(canvas)
    settings.set_brush_size(30)
    qtbot.mouseMove(canvas.viewport(), to_view(canvas, 100, 50))
    item = canvas._cursor_item
    assert item.isVisible()
    assert item.radius == pytest.approx(15)
    on_screen = canvas.mapFromScene(item.mapRectToScene(item.boundingRect())).boundingRect()
    assert on_screen.width() == pytest.approx(30 * canvas.zoom(), abs=12)
    settings.set_tool(ToolKind.FILL)
    assert not item.isVisible()


def test_overlay_toggle_opacity_and_outline_view(canvas, settings) -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[20:80, 40:160] = 255
    show(canvas, mask=mask)
    grey = QColor(GREY, GREY, GREY)
    inside = pixel(canvas, 100.5, 50.5)
    assert inside != grey and inside.blue() > inside.red()
    settings.set_opacity(0.9)
    stronger = pixel(canvas, 100.5, 50.5)
    assert abs(stronger.blue() - inside.blue()) + abs(stronger.red() - inside.red()) > 40
    settings.toggle_overlay()
    assert pixel(canvas, 100.5, 50.5) == grey
    settings.toggle_overlay()
    settings.set_outline_only(True)
    assert pixel(canvas, 100.5, 50.5) == grey  # the inside is no longer tinted
    edge = pixel(canvas, 40.2, 50.5)
    assert edge != grey and edge.blue() > 200


def test_prediction_overlay_has_its_own_colour(canvas) -> None:
    show(canvas)
    prediction = np.zeros((100, 200), np.uint8)
    prediction[10:40, 10:40] = 255
    canvas.set_prediction(prediction)
    colour = pixel(canvas, 20.5, 20.5)
    assert colour.red() > colour.blue() + 30  # orange, not the stone blue
    canvas.set_prediction(None)
    assert pixel(canvas, 20.5, 20.5) == QColor(GREY, GREY, GREY)


def test_status_information_follows_the_pointer(qtbot, canvas) -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[30, 70] = 255
    show(canvas, mask=mask)
    seen = []
    canvas.cursor_moved.connect(seen.append)
    qtbot.mouseMove(canvas.viewport(), to_view(canvas, 70.5, 30.5))
    assert seen[-1].x == 70 and seen[-1].y == 30 and seen[-1].stone is True
    assert seen[-1].rgb == (GREY, GREY, GREY)


def test_a_stroke_on_a_6000x4000_photo_repaints_only_what_it_changed(
    qtbot, canvas, settings
) -> None:
    height, width = 4000, 6000
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 1] = 90
    doc = MaskDocument(shape=(height, width))
    canvas.show_image(make_display_image(rgb), doc)
    assert len(canvas.display_image.levels) >= 3  # a pyramid for zoomed-out views
    refreshed = []
    real_refresh = canvas.mask_item.refresh
    canvas.mask_item.refresh = lambda region, margin=1.0: (
        refreshed.append(region),
        real_refresh(region, margin),
    )
    settings.set_brush_size(60)
    drag(qtbot, canvas, [(2000, 2000), (2300, 2100), (2600, 2000)])
    assert doc.mask[2000, 2000] == 255 and doc.mask[2000, 2600] == 255
    assert refreshed and max(r.area for r in refreshed) < 0.01 * width * height
    assert doc.undo_nbytes < 0.01 * doc.mask.nbytes
    canvas.zoom_to_actual_size()
    drag(qtbot, canvas, [(2450.5, 2300.5), (2470.5, 2300.5)], button=Qt.MouseButton.MiddleButton)
    assert doc.undo_steps == 1


def test_message_replaces_the_photo(canvas) -> None:
    show(canvas)
    canvas.show_message("Cannot read image broken.jpg: the file is damaged")
    assert canvas.document is None and canvas.display_image is None
    assert "broken.jpg" in canvas.message
