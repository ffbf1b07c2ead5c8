"""The whole window on real folders: open, paint, undo, switch, save, recover."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from guihelpers import (
    drag,
    make_project,
    pretend_crashed,
    read_png,
    to_view,
    wait_loaded,
    write_photo,
)
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication

import stoneseg_core.io.project as project_module
from stoneseg_core.editing.recovery import recovery_dir
from stoneseg_core.editing.tools import ToolKind
from stoneseg_core.io.images import write_mask
from stoneseg_core.io.project import ImageStatus
from stoneseg_gui.actions import ACTION_SPECS
from stoneseg_gui.settings import fallback_data_dir, recent_folders


def paint_line(qtbot, window, y: float = 30.5, x0: float = 10.5, x1: float = 60.5) -> None:
    drag(qtbot, window.canvas, [(x0, y), ((x0 + x1) / 2, y), (x1, y)])


def test_opens_a_project_with_images_and_masks(qtbot, window, tmp_path) -> None:
    mask = np.zeros((60, 80), np.uint8)
    mask[10:20, 10:20] = 255
    root = make_project(tmp_path / "proj", masks={"b": mask})
    assert window.open_folder(root)
    wait_loaded(qtbot, window, root / "images" / "a.png")
    counts = window.image_list.model.counts()
    assert counts[ImageStatus.LABELLED] == 1 and counts[ImageStatus.UNLABELLED] == 2
    assert window.project.root == root.resolve()
    # ready to paint: brush, canvas focused, fitted
    assert window.tool_settings.tool == ToolKind.BRUSH
    assert window.canvas.hasFocus() and window.canvas.is_fitted()
    assert "a.png" in window.windowTitle() and "proj" in window.windowTitle()
    assert window.status.size_label.text() == "80 × 60 px"
    assert (
        "Labelled" in window.image_list.counts_label.text()
        or "labelled" in window.image_list.counts_label.text()
    )
    # the saved mask is loaded with its image
    with qtbot.waitSignal(window.image_changed, timeout=5000) as blocker:
        qtbot.keyClick(window.canvas, Qt.Key.Key_PageDown)
    assert blocker.args == [root / "images" / "b.png"]
    wait_loaded(qtbot, window, root / "images" / "b.png")
    assert np.array_equal(window.current_document().mask, mask)
    qtbot.waitUntil(
        lambda: window.image_list.model.has_thumbnail(root / "images" / "c.png"), timeout=5000
    )


def test_photos_load_in_the_background(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj", names=("a.png", "b.png"))
    window.open_folder(root)
    wait_loaded(qtbot, window)
    assert window.session.open_image(root / "images" / "b.png")
    assert window.session.is_loading and window.current_document() is None  # not decoded yet
    assert "Opening b.png" in window.canvas.message
    wait_loaded(qtbot, window, root / "images" / "b.png")


def test_paint_undo_redo_with_the_keyboard(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    window.tool_settings.set_brush_size(4)
    paint_line(qtbot, window)
    doc = window.current_document()
    assert doc.mask[30, 10:61].all()
    assert window.isWindowModified()
    assert window.image_list.model.is_dirty(root / "images" / "a.png")
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not doc.mask.any()
    assert not window.isWindowModified()
    qtbot.keyClick(
        window.canvas,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert doc.mask[30, 10:61].all()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert doc.mask[30, 10:61].all()
    assert window.ui_actions.undo.isEnabled() and not window.ui_actions.redo.isEnabled()
    qtbot.keyClick(window.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    saved = read_png(root / "masks" / "a.png")
    assert saved.dtype == np.uint8 and saved.shape == (60, 80)
    assert set(np.unique(saved)) == {0, 255}
    assert np.array_equal(saved, doc.mask)
    assert not window.isWindowModified()
    assert window.image_list.model.status_of(root / "images" / "a.png") == ImageStatus.LABELLED


def test_tool_and_view_keys(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    c, ts = window.canvas, window.tool_settings
    for key, tool in [
        (Qt.Key.Key_E, ToolKind.ERASER),
        (Qt.Key.Key_F, ToolKind.FILL),
        (Qt.Key.Key_L, ToolKind.LASSO_FILL),
        (Qt.Key.Key_B, ToolKind.BRUSH),
    ]:
        qtbot.keyClick(c, key)
        assert ts.tool == tool
        assert window.status.tool_label.text() == tool.title
        assert window.ui_actions.tool_action(tool).isChecked()
    qtbot.keyClick(c, Qt.Key.Key_L, Qt.KeyboardModifier.ShiftModifier)
    assert ts.tool == ToolKind.LASSO_ERASE
    size = ts.brush_size
    qtbot.keyClick(c, Qt.Key.Key_BracketRight)
    assert ts.brush_size > size
    assert window.brush_control.spin.value() == ts.brush_size
    assert window.status.brush_label.text() == f"Brush {ts.brush_size} px"
    qtbot.keyClick(c, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(c, Qt.Key.Key_BracketLeft)
    assert ts.brush_size < size
    qtbot.keyClick(c, Qt.Key.Key_V)
    assert not ts.overlay_visible and not window.ui_actions.toggle_overlay.isChecked()
    qtbot.keyClick(c, Qt.Key.Key_V)
    qtbot.keyClick(c, Qt.Key.Key_O)
    assert ts.outline_only
    opacity = ts.opacity
    qtbot.keyClick(c, Qt.Key.Key_BracketRight, Qt.KeyboardModifier.ControlModifier)
    assert ts.opacity > opacity
    assert window.opacity_control.slider.value() == round(ts.opacity * 100)
    c.set_zoom(3.0)
    qtbot.keyClick(c, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert c.is_fitted()
    qtbot.keyClick(c, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert c.zoom() == pytest.approx(1.0)
    assert window.status.zoom_label.text() == "Zoom 100 %"


def test_fill_holes_clear_and_invert_actions(qtbot, window, tmp_path) -> None:
    ring = np.zeros((60, 80), np.uint8)
    ring[10:40, 10:40] = 255
    ring[20:30, 20:30] = 0
    root = make_project(tmp_path / "proj", masks={"a": ring})
    window.open_folder(root)
    wait_loaded(qtbot, window)
    doc = window.current_document()
    qtbot.keyClick(window.canvas, Qt.Key.Key_H)
    assert doc.mask[25, 25] == 255
    qtbot.keyClick(window.canvas, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    assert doc.mask[25, 25] == 0 and doc.mask[0, 0] == 255
    qtbot.keyClick(window.canvas, Qt.Key.Key_Delete, Qt.KeyboardModifier.ControlModifier)
    assert not doc.mask.any()
    for _ in range(3):
        qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.mask, ring)


def test_autosave_when_switching_image(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    paint_line(qtbot, window)
    painted = window.current_document().mask.copy()
    assert not (root / "masks" / "a.png").exists()
    # pick another photo in the list with the mouse
    view = window.image_list.view
    rect = view.visualRect(view.model().index(2, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert np.array_equal(read_png(root / "masks" / "a.png"), painted)
    wait_loaded(qtbot, window, root / "images" / "c.png")
    assert window.image_list.model.status_of(root / "images" / "a.png") == ImageStatus.LABELLED
    assert not window.image_list.model.is_dirty(root / "images" / "a.png")
    # an untouched photo is not given a mask
    qtbot.keyClick(window.canvas, Qt.Key.Key_PageUp)
    wait_loaded(qtbot, window, root / "images" / "b.png")
    assert not (root / "masks" / "c.png").exists()


def test_autosave_when_the_window_closes(qtbot, make_window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window = make_window()
    window.open_folder(root)
    wait_loaded(qtbot, window)
    paint_line(qtbot, window)
    painted = window.current_document().mask.copy()
    assert window.close()
    assert np.array_equal(read_png(root / "masks" / "a.png"), painted)
    assert not recovery_dir(root).exists()


def test_ctrl_q_saves_and_closes(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    paint_line(qtbot, window)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert not window.isVisible()
    assert (root / "masks" / "a.png").is_file()


def test_a_failed_save_keeps_the_user_on_the_edits(qtbot, window, dialogs, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    paint_line(qtbot, window)
    (root / "masks").write_text("not a folder")  # masks/ cannot be created: every save fails
    qtbot.keyClick(window.canvas, Qt.Key.Key_PageDown)
    assert dialogs.errors and dialogs.errors[-1][0] == "Cannot save the mask"
    assert window.current_image_path() == root / "images" / "a.png"
    assert window.current_document().dirty
    assert (
        window.image_list.view.currentIndex().data(Qt.ItemDataRole.DisplayRole).startswith("a.png")
    )
    # closing asks; staying keeps the window open
    dialogs.answers["Quit without saving?"] = "Stay"
    assert not window.close()
    assert window.isVisible()
    (root / "masks").unlink()
    assert window.close()
    assert (root / "masks" / "a.png").is_file()


def test_plain_folder_without_masks(qtbot, window, tmp_path) -> None:
    root = tmp_path / "field-photos"
    for i, name in enumerate(["IMG_2.jpg", "IMG_10.jpg"]):
        write_photo(root / name, 90, 70, seed=i)
    assert window.open_folder(root)
    wait_loaded(qtbot, window, root / "IMG_2.jpg")  # natural order: 2 before 10
    assert window.image_list.model.paths() == [root / "IMG_2.jpg", root / "IMG_10.jpg"]
    assert window.project.masks_dir == root / "masks"
    assert str(root / "masks") in window.status.masks_button.toolTip()
    paint_line(qtbot, window)
    assert window.save_current()
    assert read_png(root / "masks" / "IMG_2.png").max() == 255
    qtbot.keyClick(
        window.canvas,
        Qt.Key.Key_M,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert window.dialogs.shown_folders == [root / "masks"]


def test_read_only_folder_saves_masks_in_a_visible_user_folder(
    qtbot, window, tmp_path, monkeypatch
) -> None:
    existing = np.zeros((60, 80), np.uint8)
    existing[5:15, 5:15] = 255
    root = make_project(tmp_path / "readonly", masks={"a": existing})
    real_access = project_module.os.access
    # tests run as root, where chmod does not stop writes: pretend the folder is read-only
    monkeypatch.setattr(
        project_module.os,
        "access",
        lambda p, mode: False if Path(p) == root.resolve() else real_access(p, mode),
    )
    assert window.open_folder(root)
    wait_loaded(qtbot, window)
    expected = fallback_data_dir(root)
    assert window.project.data_dir == expected
    assert str(tmp_path / "user-data") in str(expected) and "readonly-" in expected.name
    assert np.array_equal(window.current_document().mask, existing)  # the old masks come along
    assert (
        "read-only" in window.status.currentMessage()
        or "read-only" in window.status.masks_button.toolTip()
    )
    paint_line(qtbot, window)
    assert window.save_current()
    assert (expected / "masks" / "a.png").is_file()
    assert np.array_equal(read_png(root / "masks" / "a.png"), existing)  # the source is untouched


def test_unreadable_photos_are_listed_with_the_reason_and_work_goes_on(
    qtbot, window, tmp_path
) -> None:
    root = make_project(tmp_path / "proj", names=("a.jpg", "c.png"))
    images = root / "images"
    (images / "b_garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg \xff\xd9")
    good = (images / "a.jpg").read_bytes()
    (images / "b_truncated.jpg").write_bytes(good[: len(good) // 2])
    window.open_folder(root)
    wait_loaded(qtbot, window, images / "a.jpg")
    model = window.image_list.model
    qtbot.waitUntil(lambda: model.counts()[ImageStatus.UNREADABLE] == 2, timeout=10_000)
    assert "truncated" in model.reason_of(images / "b_truncated.jpg")
    assert "b_garbage.jpg" in model.reason_of(images / "b_garbage.jpg")
    index = model.index(model.row_of(images / "b_truncated.jpg"), 0)
    assert "truncated" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert (
        "1 unreadable" in window.image_list.counts_label.text()
        or "2" in window.image_list.counts_label.text()
    )
    # opening one shows why, and the app keeps working
    window.session.open_image(images / "b_truncated.jpg")
    qtbot.waitUntil(lambda: "truncated" in window.canvas.message, timeout=5000)
    assert window.current_document() is None
    assert not window.ui_actions.undo.isEnabled() and not window.ui_actions.fill_holes.isEnabled()
    drag(qtbot, window.canvas, [(5, 5), (30, 30)])  # nothing to paint on; no crash
    window.image_list.set_filter(ImageStatus.UNREADABLE)
    assert window.image_list.visible_paths() == [
        images / "b_garbage.jpg",
        images / "b_truncated.jpg",
    ]
    window.image_list.set_filter(None)
    window.session.open_image(images / "c.png")
    wait_loaded(qtbot, window, images / "c.png")
    paint_line(qtbot, window)
    assert window.save_current() and (root / "masks" / "c.png").is_file()


def test_a_mask_of_the_wrong_size_is_reported_and_kept(qtbot, window, dialogs, tmp_path) -> None:
    root = make_project(tmp_path / "proj", masks={"a": np.full((10, 10), 255, np.uint8)})
    window.open_folder(root)
    wait_loaded(qtbot, window)
    assert dialogs.errors and "10x10" in dialogs.errors[0][1]
    assert not window.current_document().mask.any()
    paint_line(qtbot, window)
    assert window.save_current()
    assert read_png(root / "masks" / "a.png").shape == (60, 80)
    assert read_png(root / "masks" / "a.png.bak").shape == (10, 10)


def test_recovery_file_after_a_stroke_restored_at_the_next_opening(
    qtbot, make_window, dialogs, tmp_path
) -> None:
    from guihelpers import FakeDialogs

    root = make_project(tmp_path / "proj")
    crashed = make_window()
    crashed.open_folder(root)
    wait_loaded(qtbot, crashed)
    paint_line(qtbot, crashed)
    painted = crashed.current_document().mask.copy()
    recovery_png = recovery_dir(root) / "a.png"
    # debounced, written in the background; the JSON is written last
    qtbot.waitUntil((recovery_dir(root) / "a.json").is_file, timeout=10_000)
    meta = json.loads((recovery_dir(root) / "a.json").read_text())
    assert meta["image"] == "a.png" and (meta["width"], meta["height"]) == (80, 60)
    assert not (root / "masks" / "a.png").exists()
    # the app "crashed": nothing was saved, and its process is gone, so its project lock is
    # stale. The next start offers the edits back.
    pretend_crashed(root)
    second_dialogs = FakeDialogs()
    second_dialogs.answers["Restore unsaved edits?"] = "Restore"
    second = make_window(second_dialogs)
    second.open_folder(root)
    assert second_dialogs.questions and "a.png" in second_dialogs.questions[0][1]
    wait_loaded(qtbot, second)
    assert np.array_equal(read_png(root / "masks" / "a.png"), painted)
    assert np.array_equal(second.current_document().mask, painted)
    assert not recovery_png.exists()


def test_saving_deletes_the_recovery_file_and_discard_is_honoured(
    qtbot, window, make_window, tmp_path
) -> None:
    from guihelpers import FakeDialogs

    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    paint_line(qtbot, window)
    recovery_png = recovery_dir(root) / "a.png"
    qtbot.waitUntil(recovery_png.is_file, timeout=10_000)
    assert window.save_current()
    assert not recovery_png.exists()
    # a recovery left behind and discarded at the next opening
    paint_line(qtbot, window, y=55.5)
    qtbot.waitUntil((recovery_dir(root) / "a.json").is_file, timeout=10_000)
    pretend_crashed(root)
    other = FakeDialogs()
    other.answers["Restore unsaved edits?"] = "Discard"
    second = make_window(other)
    second.open_folder(root)
    assert not recovery_png.exists()
    assert read_png(root / "masks" / "a.png")[52].max() == 0


def test_predicted_masks_are_marked_until_reviewed(qtbot, window, tmp_path) -> None:
    predicted = np.zeros((60, 80), np.uint8)
    predicted[:, :20] = 255
    root = make_project(tmp_path / "proj", masks={"a": predicted, "b": predicted})
    (root / "stoneseg.json").write_text(json.dumps({"predicted": ["a", "b"]}))
    window.open_folder(root)
    wait_loaded(qtbot, window)
    model = window.image_list.model
    assert model.counts()[ImageStatus.PREDICTED] == 2
    assert window.ui_actions.mark_reviewed.isEnabled()
    assert "not reviewed" in window.canvas.banner
    qtbot.keyClick(window.canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert model.status_of(root / "images" / "a.png") == ImageStatus.LABELLED
    assert not window.ui_actions.mark_reviewed.isEnabled()
    assert window.canvas.banner == ""
    # correcting a predicted mask and saving it makes it labelled too
    window.session.open_image(root / "images" / "b.png")
    wait_loaded(qtbot, window, root / "images" / "b.png")
    paint_line(qtbot, window)
    assert window.save_current()
    assert model.status_of(root / "images" / "b.png") == ImageStatus.LABELLED
    assert window.project.predicted_stems() == set()


def test_accepting_a_prediction_keeps_it_unreviewed_until_edited(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    prediction = np.zeros((60, 80), np.uint8)
    prediction[30:, :] = 255
    window.canvas.set_prediction(prediction)
    window.session.accept_prediction(prediction)
    assert window.save_current()
    assert window.project.predicted_stems() == {"a"}
    assert window.image_list.model.status_of(root / "images" / "a.png") == ImageStatus.PREDICTED
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not window.current_document().mask.any()


def test_shortcuts_dialog_lists_every_action_and_keys_are_unique(qtbot, window) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F1)
    dialog = window._shortcuts_dialog
    assert dialog is not None and dialog.isVisible()
    rows = dict(dialog.rows())
    for spec in ACTION_SPECS:
        name = spec.text.replace("&", "")
        assert name in rows, name
        assert rows[name], f"{name} has no shortcut"
    assert "Pan" in rows and "Space" in rows["Pan"]
    seen: dict[str, str] = {}
    for action in window.findChildren(QAction):  # the model side's actions too
        for key in action.shortcuts():
            text = key.toString(QKeySequence.SequenceFormat.PortableText)
            assert text not in seen, f"{text} is used by {seen.get(text)} and {action.text()}"
            seen[text] = action.text()
    assert window.ui_actions.undo.shortcuts()[0] == QKeySequence("Ctrl+Z")
    assert {k.toString() for k in window.ui_actions.redo.shortcuts()} == {"Ctrl+Shift+Z", "Ctrl+Y"}


def test_open_folder_by_dialog_and_recent_folders(qtbot, window, dialogs, tmp_path) -> None:
    first = make_project(tmp_path / "first")
    second = make_project(tmp_path / "second", names=("x.png",))
    dialogs.folders_to_choose = [first]
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    wait_loaded(qtbot, window, first / "images" / "a.png")
    window.open_folder(second)
    wait_loaded(qtbot, window, second / "images" / "x.png")
    assert recent_folders(QSettings()) == [second.resolve(), first.resolve()]
    window.recent_menu.aboutToShow.emit()
    entries = [a for a in window.recent_menu.actions() if a.data()]
    assert [Path(a.data()) for a in entries] == [second.resolve(), first.resolve()]
    assert entries[0].text().startswith("&1 ")
    entries[1].trigger()
    wait_loaded(qtbot, window, first / "images" / "a.png")


def test_dropping_a_folder_or_a_photo_opens_it(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "dropped")

    def drop(path: Path) -> None:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        args = (
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        enter = QDragEnterEvent(QPoint(300, 300), *args)  # 6.11 takes QPoint here
        QApplication.sendEvent(window, enter)
        assert enter.isAccepted()
        QApplication.sendEvent(window, QDropEvent(QPointF(300, 300), *args))

    drop(root)
    wait_loaded(qtbot, window, root / "images" / "a.png")
    drop(root / "images" / "c.png")
    wait_loaded(qtbot, window, root / "images" / "c.png")
    assert window.project.root == root.resolve()


def test_status_bar_shows_the_pixel_under_the_pointer(qtbot, window, tmp_path) -> None:
    mask = np.zeros((60, 80), np.uint8)
    mask[20, 30] = 255
    root = make_project(tmp_path / "proj", masks={"a": mask})
    window.open_folder(root)
    wait_loaded(qtbot, window)
    qtbot.mouseMove(window.canvas.viewport(), to_view(window.canvas, 30.5, 20.5))
    text = window.status.pixel_label.text()
    assert text.startswith("x 30  y 20") and "stone" in text
    qtbot.mouseMove(window.canvas.viewport(), QPoint(2, 2))
    assert window.status.pixel_label.text().startswith("x –")


def test_an_empty_folder_says_so(qtbot, window, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert window.open_folder(empty)
    assert "No photos" in window.canvas.message
    assert not window.ui_actions.next_image.isEnabled() or window.session.images() == []
    assert not window.open_folder(tmp_path / "missing")
    assert window.dialogs.errors[-1][0] == "Cannot open folder"


def test_part_two_can_add_docks_and_menus(qtbot, window) -> None:
    from PySide6.QtWidgets import QLabel

    panel = QLabel("training")
    panel.setObjectName("training_panel")
    dock = window.add_dock(panel, Qt.DockWidgetArea.RightDockWidgetArea, "Training")
    assert dock.widget() is panel and dock.windowTitle() == "Training"
    menu = window.add_action_menu("E&xtras")
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles.index("E&xtras") == titles.index("&Help") - 1
    assert menu.title() == "E&xtras"


def test_masks_written_are_plain_0_255_pngs(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    window.current_document().fill_polygon([(0, 0), (40, 0), (40, 60), (0, 60)])
    window.save_current()
    raw = (root / "masks" / "a.png").read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    mask = read_png(root / "masks" / "a.png")
    assert mask.ndim == 2 and mask.dtype == np.uint8
    assert (mask[:, :40] == 255).all() and (mask[:, 40:] == 0).all()
    leftovers = [p.name for p in (root / "masks").iterdir() if p.name != "a.png"]
    assert leftovers == []  # no temporary files left behind


def test_write_mask_used_by_helpers_matches_the_app(tmp_path) -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 1] = 1
    write_mask(tmp_path / "m.png", mask)
    assert read_png(tmp_path / "m.png")[1, 1] == 255


def test_undo_history_survives_switching_photos(qtbot, window, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    a, b = root / "images" / "a.png", root / "images" / "b.png"
    window.open_folder(root)
    wait_loaded(qtbot, window, a)
    paint_line(qtbot, window, y=20.5)
    paint_line(qtbot, window, y=45.5)
    qtbot.keyClick(window.canvas, Qt.Key.Key_PageDown)  # saves a
    wait_loaded(qtbot, window, b)
    qtbot.keyClick(window.canvas, Qt.Key.Key_PageUp)
    wait_loaded(qtbot, window, a)
    doc = window.current_document()
    assert doc.undo_steps == 2 and not doc.dirty
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.mask[20].any() and not doc.mask[45].any()
    assert window.isWindowModified()
    # a mask changed on disk by someone else drops the old history
    window.save_current()
    qtbot.keyClick(window.canvas, Qt.Key.Key_PageDown)
    wait_loaded(qtbot, window, b)
    write_mask(root / "masks" / "a.png", np.full((60, 80), 255, np.uint8))
    qtbot.keyClick(window.canvas, Qt.Key.Key_PageUp)
    wait_loaded(qtbot, window, a)
    assert window.current_document().undo_steps == 0
    assert window.current_document().mask.all()


def test_saved_masks_are_readable_by_colleagues(qtbot, window, tmp_path) -> None:
    import os

    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    paint_line(qtbot, window)
    assert window.save_current()
    umask = os.umask(0o022)
    os.umask(umask)
    assert (root / "masks" / "a.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_continuous_editing_still_writes_a_recovery_copy(
    qtbot, window, tmp_path, monkeypatch
) -> None:
    import stoneseg_gui.editor.recovery as recovery_module

    monkeypatch.setattr(recovery_module, "RECOVERY_MAX_WAIT_S", 0.0)  # "long ago"
    window.session._recovery._timer.setInterval(3_600_000)  # the quiet-time timer never fires
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    paint_line(qtbot, window)
    qtbot.waitUntil((recovery_dir(root) / "a.json").is_file, timeout=5000)


def test_the_list_filter_never_changes_the_open_photo(qtbot, window, tmp_path) -> None:
    """Choosing a filter, or saving a photo that the filter then hides, keeps it open."""
    mask = np.zeros((60, 80), np.uint8)
    mask[10:20, 10:20] = 255
    root = make_project(tmp_path / "proj", masks={"a": mask})
    window.open_folder(root)
    wait_loaded(qtbot, window, root / "images" / "a.png")
    opened = []
    window.image_changed.connect(opened.append)
    combo = window.image_list.filter_combo
    unlabelled = next(i for i in range(combo.count()) if combo.itemText(i).startswith("Unlabelled"))
    combo.setCurrentIndex(unlabelled)  # a.png (labelled) is hidden
    qtbot.wait(50)
    assert opened == [] and window.session.current_image_path() == root / "images" / "a.png"
    assert not window.image_list.view.currentIndex().isValid()
    combo.setCurrentIndex(0)  # All: a.png shown and highlighted again
    assert (
        window.image_list.view.currentIndex().data(Qt.ItemDataRole.DisplayRole).startswith("a.png")
    )
    combo.setCurrentIndex(unlabelled)
    # the user picks c.png in the filtered list, labels it and saves: the filter hides it
    view = window.image_list.view
    row = next(
        r for r in range(view.model().rowCount()) if "c.png" in view.model().index(r, 0).data()
    )
    qtbot.mouseClick(
        view.viewport(),
        Qt.MouseButton.LeftButton,
        pos=view.visualRect(view.model().index(row, 0)).center(),
    )
    wait_loaded(qtbot, window, root / "images" / "c.png")
    opened.clear()
    paint_line(qtbot, window)
    qtbot.keyClick(window.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert window.image_list.model.status_of(root / "images" / "c.png") == ImageStatus.LABELLED
    assert "c.png" not in [p.name for p in window.image_list.visible_paths()]
    qtbot.wait(50)
    assert opened == [] and window.session.current_image_path() == root / "images" / "c.png"


def test_the_list_does_not_jump_back_to_the_open_photo_when_a_status_changes(qtbot) -> None:
    from stoneseg_gui.editor.image_list import ImageListDock

    dock = ImageListDock()
    qtbot.addWidget(dock)
    dock.resize(300, 300)
    dock.show()
    paths = [Path(f"/nowhere/{i:03d}.png") for i in range(60)]
    dock.set_images([(p, ImageStatus.UNLABELLED) for p in paths])
    dock.stop_thumbnails(wait=True)
    dock.select_path(paths[0])
    bar = dock.view.verticalScrollBar()
    bar.setValue(bar.maximum())  # the user scrolled away to look
    where = bar.value()
    assert where > 0
    dock.set_dirty(paths[0], True)  # painting on the open photo
    dock.set_status(paths[5], ImageStatus.LABELLED)  # another photo saved
    assert bar.value() == where
    assert dock.view.currentIndex().data(Qt.ItemDataRole.DisplayRole).startswith("000.png")
