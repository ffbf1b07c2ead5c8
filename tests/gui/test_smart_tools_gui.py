"""The smart tools in the real window: keys, the F1 list, a click with and without a
prediction (predicted first on the worker), Box a stone, the magic wand's preview and wheel,
and all three on a big tiled photo."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from guihelpers import click, drag, to_view, wait_loaded, write_photo
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from stoneseg_core.editing.stone_layer import LabelledStones, MaskPieces
from stoneseg_core.editing.tools import ToolKind
from stoneseg_core.inference.segmenter import Prediction
from stoneseg_gui.editor.tiled_photo import TiledPhoto

SMART = {
    ToolKind.CLICK_STONE: Qt.Key.Key_C,
    ToolKind.BOX_STONE: Qt.Key.Key_R,
    ToolKind.MAGIC_WAND: Qt.Key.Key_W,
}
DISCS = ((50, 45, 22), (120, 50, 18), (85, 115, 25))  # (x, y, radius): apart from each other


def disc_photo(path: Path, size=(200, 160), discs=DISCS) -> np.ndarray:
    """Bright flat stones on a darker blue-grey ground (as the tiny model was trained on);
    returns the stones' mask."""
    w, h = size
    rng = np.random.default_rng(5)
    rgb = rng.normal((70, 70, 85), 3, (h, w, 3)).clip(0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for x, y, r in discs:
        cv2.circle(mask, (x, y), r, 255, -1)
    rgb[mask > 0] = (190, 182, 175)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return mask


def open_photo(qtbot, window, tmp_path) -> tuple[Path, np.ndarray]:
    root = tmp_path / "proj"
    mask = disc_photo(root / "images" / "a.png")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    return root, mask


def disc_at(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    n, labels = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    return labels == labels[y, x]


def wheel(canvas, notches: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    centre = QPointF(canvas.viewport().rect().center())
    event = QWheelEvent(
        centre,
        QPointF(canvas.viewport().mapToGlobal(centre.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas.viewport(), event)


def test_keys_choose_the_smart_tools_which_are_in_the_menu_toolbar_and_f1(qtbot, window, tmp_path):
    open_photo(qtbot, window, tmp_path)
    tools_menu = next(
        a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Tools"
    )
    for kind, key in SMART.items():
        qtbot.keyClick(window.canvas, key)
        assert window.tool_settings.tool == kind
        action = window.ui_actions.tool_action(kind)
        assert action.isChecked() and action in tools_menu.actions()
        assert window.status.tool_label.text() == kind.title
    qtbot.keyClick(window, Qt.Key.Key_F1)
    rows = dict(window.show_shortcuts().rows())
    assert (rows["Click a stone"], rows["Box a stone"], rows["Magic wand"]) == ("C", "R", "W")
    assert "Shift" in rows["Remove with a smart tool"]
    assert "Mouse wheel" in rows["Magic wand tolerance"]


def test_click_with_a_prediction_adds_the_stone_as_split_and_one_undo_step(qtbot, window, tmp_path):
    root, truth = open_photo(qtbot, window, tmp_path)
    controller = window.model_side.controller
    prediction = Prediction((truth / 255).astype(np.float32), truth.copy())
    controller.prediction = prediction  # as if the model had predicted this photo
    controller.prediction_ready.emit(root / "images" / "a.png")
    notices = []
    window.stone_hints.notice.connect(notices.append)
    qtbot.keyClick(window.canvas, Qt.Key.Key_C)  # the tool wants stones: split on a worker
    qtbot.waitUntil(lambda: window.canvas.stone_layer is not None, timeout=20_000)
    assert isinstance(window.canvas.stone_layer, LabelledStones)
    assert window.canvas.stone_layer.count == 3
    # the status bar said what the tool waited for, then that the stones are there
    assert notices[0].startswith("Finding the stones in the prediction of a.png")
    assert notices[-1] == "3 predicted stones ready to click or box."
    doc = window.current_document()
    click(qtbot, window.canvas, 120.5, 50.5)
    assert np.array_equal(doc.mask > 0, disc_at(truth, 120, 50))
    assert doc.undo_steps == 1 and window.ui_actions.undo.text() == "&Undo Add stone"
    drag(qtbot, window.canvas, [(40, 45), (85, 100), (90, 118)])  # two stones, one drag
    assert np.array_equal(doc.mask > 0, truth > 0)
    assert doc.undo_steps == 2
    qtbot.mouseClick(  # Shift+click removes one
        window.canvas.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ShiftModifier,
        to_view(window.canvas, 50.5, 45.5),
    )
    assert np.array_equal(doc.mask > 0, (truth > 0) & ~disc_at(truth, 50, 45))
    window.ui_actions.undo.trigger()
    window.ui_actions.undo.trigger()
    assert np.array_equal(doc.mask > 0, disc_at(truth, 120, 50))


def test_click_without_a_prediction_predicts_first_then_adds_the_stone(
    qtbot, window, tmp_path, trained_model
):
    root, truth = open_photo(qtbot, window, tmp_path)
    shutil.copytree(trained_model, root / "models" / "run-1")
    controller = window.model_side.controller
    controller.set_active_model(root / "models" / "run-1")
    assert controller.prediction is None
    qtbot.keyClick(window.canvas, Qt.Key.Key_C)
    doc = window.current_document()
    click(qtbot, window.canvas, 85.5, 115.5)  # the centre of the biggest stone
    assert "predicting it first" in window.status.currentMessage()
    assert controller.is_busy and not doc.mask.any()  # on the worker: the window goes on
    qtbot.waitUntil(lambda: window.canvas.stone_layer is not None, timeout=120_000)
    qtbot.waitUntil(lambda: doc.mask.any(), timeout=5_000)
    stone = window.canvas.stone_layer.stone_at(85, 115)
    assert stone is not None
    added = np.zeros(doc.shape, bool)
    added[stone.region.slices] = stone.pixels
    assert np.array_equal(doc.mask > 0, added)
    clicked = disc_at(truth, 85, 115)
    assert (added & clicked).sum() / (added | clicked).sum() > 0.5  # the stone clicked
    assert doc.undo_steps == 1 and not window.dialogs.errors


def test_click_with_no_model_says_so_and_waits_for_nothing(qtbot, window, tmp_path):
    open_photo(qtbot, window, tmp_path)
    qtbot.keyClick(window.canvas, Qt.Key.Key_C)
    click(qtbot, window.canvas, 85.5, 115.5)
    assert "no model yet" in window.status.currentMessage()
    assert not window.canvas.tool.wants_stones and not window.current_document().mask.any()
    assert not window.dialogs.errors and not window.model_side.controller.is_busy


def test_box_a_stone_by_grabcut_and_the_wand_previews_then_fills(qtbot, window, tmp_path):
    _, truth = open_photo(qtbot, window, tmp_path)
    canvas, doc = window.canvas, window.current_document()
    qtbot.keyClick(canvas, Qt.Key.Key_R)
    drag(qtbot, canvas, [(24, 20), (60, 40), (76, 70)])  # round the first stone
    first = disc_at(truth, 50, 45)
    assert ((doc.mask > 0) & first).sum() / ((doc.mask > 0) | first).sum() > 0.9
    assert doc.undo_steps == 1 and "GrabCut" in window.status.currentMessage()

    qtbot.keyClick(canvas, Qt.Key.Key_W)
    qtbot.mouseMove(canvas.viewport(), to_view(canvas, 120.5, 50.5))
    outline = canvas.tool.preview_outlines()
    assert outline and doc.undo_steps == 1  # shown, nothing changed yet
    xs = [p[0] for p in outline[0]]
    assert 100 <= min(xs) <= 104 and 136 <= max(xs) <= 140  # the second stone's width
    tolerance, zoom = window.canvas.smart.wand_tolerance, canvas.zoom()
    wheel(canvas, 2)  # the wheel changes the tolerance, not the zoom
    assert canvas.smart.wand_tolerance == tolerance + 4 and canvas.zoom() == zoom
    assert "tolerance" in window.status.currentMessage()
    wheel(canvas, 2, Qt.KeyboardModifier.ControlModifier)  # Ctrl+wheel zooms
    assert canvas.zoom() > zoom and canvas.smart.wand_tolerance == tolerance + 4
    canvas.fit_to_window()
    before = doc.mask > 0
    click(qtbot, canvas, 120.5, 50.5)
    second = disc_at(truth, 120, 50)
    assert np.array_equal((doc.mask > 0) & ~before, second & ~before)  # the stone exactly
    assert window.ui_actions.undo.text() == "&Undo Magic wand fill"
    click(qtbot, canvas, 120.5, 50.5, button=Qt.MouseButton.RightButton)
    assert not doc.mask[second].any()


SIZE = 4096  # over the threshold above which TIFFs go through the tile pyramid
BIG_DISCS = ((1000, 1200, 150), (2600, 3000, 220), (3500, 600, 180))


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory) -> tuple[Path, np.ndarray]:
    rgb = np.empty((SIZE, SIZE, 3), np.uint8)
    rgb[:] = (70, 70, 85)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for x, y, r in BIG_DISCS:
        cv2.circle(mask, (x, y), r, 255, -1)
    rgb[mask > 0] = (185, 180, 175)
    path = tmp_path_factory.mktemp("big") / "ortho.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    return path, mask


def test_the_smart_tools_on_a_big_tiled_photo(qtbot, window, tmp_path, big_tiff):
    path, truth = big_tiff
    (tmp_path / "proj" / "images").mkdir(parents=True)
    (tmp_path / "proj" / "images" / "ortho.tif").symlink_to(path)
    write_photo(tmp_path / "proj" / "images" / "small.png")  # opened second in the list
    window.open_folder(tmp_path / "proj")
    wait_loaded(qtbot, window, tmp_path / "proj" / "images" / "ortho.tif", timeout=30_000)
    canvas, doc = window.canvas, window.current_document()
    assert isinstance(canvas.display_image, TiledPhoto) and doc.shape == (SIZE, SIZE)
    # the wand, read from the file a window at a time
    qtbot.keyClick(canvas, Qt.Key.Key_W)
    click(qtbot, canvas, 1000.5, 1200.5)
    first = disc_at(truth, 1000, 1200)
    assert np.array_equal(doc.mask > 0, first)
    assert canvas.smart.lab_cache.region.area <= 1024 * 1024
    # Box a stone (GrabCut on a crop of the file)
    qtbot.keyClick(canvas, Qt.Key.Key_R)
    drag(qtbot, canvas, [(3280, 380), (3720, 820)])
    third = disc_at(truth, 3500, 600)
    found = (doc.mask > 0) & ~first
    assert (found & third).sum() / (found | third).sum() > 0.9
    # Click a stone, with the prediction's pieces as the stones
    qtbot.keyClick(canvas, Qt.Key.Key_C)
    canvas.set_stone_layer(MaskPieces(truth))
    click(qtbot, canvas, 2600.5, 3000.5)
    assert np.array_equal(doc.mask > 0, first | disc_at(truth, 2600, 3000) | found)
    assert doc.undo_steps == 3
    # another photo: the stones and the photo's pixels are the new photo's
    window.ui_actions.next_image.trigger()
    wait_loaded(qtbot, window, tmp_path / "proj" / "images" / "small.png")
    assert canvas.stone_layer is None and canvas.smart.photo.width == 80
