"""Two windows on one project (a second click on the launcher): nobody's work is lost.

The issue's reproduction: both windows show the same photo; a stroke saved in the first, then
another saved in the second, left 0 % of the first stroke on disk, without a word.
"""

from __future__ import annotations

import numpy as np
from guihelpers import FakeDialogs, make_project, read_png, wait_loaded

from stoneseg_core.io.images import write_mask
from stoneseg_core.io.project_lock import LOCK_FILE


def _stroke(window, rows: slice) -> np.ndarray:
    """An edit of the open photo's mask (a band of stone across ``rows``); its pixels."""
    document = window.current_document()
    mask = document.mask.copy()
    mask[rows, 10:70] = 255
    document.replace(mask, "test stroke")
    return mask


def _save(qtbot, window) -> None:
    """File > Save (Ctrl+S) in ``window`` (the other window may be the active one)."""
    window.ui_actions.save.trigger()


def test_a_second_window_opens_read_only_and_saves_a_copy(qtbot, make_window, tmp_path):
    root = make_project(tmp_path / "proj", names=("a.png",))
    first = make_window(FakeDialogs())
    first.open_folder(root)
    wait_loaded(qtbot, first)
    assert (root / LOCK_FILE).is_file()

    second = make_window(FakeDialogs())  # the second click: asked, opens read-only
    second.open_folder(root)
    wait_loaded(qtbot, second)
    title, text, choices = second.dialogs.questions[-1]
    assert title == "Open in another window" and "another StoneSeg window" in text
    assert choices == ("Open read-only", "Take over", "Cancel")
    assert second.session.read_only and "(read-only)" in second.windowTitle()

    mine = _stroke(first, slice(5, 15))
    _save(qtbot, first)  # the first window owns the project: saved, no question
    assert not first.dialogs.questions
    assert np.array_equal(read_png(root / "masks" / "a.png"), mine)

    theirs = _stroke(second, slice(40, 50))
    _save(qtbot, second)
    assert second.dialogs.questions[-1][0] == "Another window edits this project"
    # the default keeps both: the first stroke stays in the mask, the second in a copy
    assert np.array_equal(read_png(root / "masks" / "a.png"), mine)
    copies = sorted((root / "masks").glob("a.conflict-*.png"))
    assert len(copies) == 1 and np.array_equal(read_png(copies[0]), theirs)
    assert not second.session.is_dirty  # saved (as a copy): closing does not ask again


def test_taking_over_stops_the_first_window_from_overwriting(qtbot, make_window, tmp_path):
    root = make_project(tmp_path / "proj", names=("a.png",))
    first = make_window(FakeDialogs())
    first.open_folder(root)
    wait_loaded(qtbot, first)
    dialogs = FakeDialogs()
    dialogs.answers["Open in another window"] = "Take over"
    second = make_window(dialogs)
    second.open_folder(root)
    wait_loaded(qtbot, second)
    assert not second.session.read_only

    theirs = _stroke(second, slice(40, 50))
    _save(qtbot, second)
    assert np.array_equal(read_png(root / "masks" / "a.png"), theirs)

    first.dialogs.answers["Another window edits this project"] = "Cancel"
    _stroke(first, slice(5, 15))
    _save(qtbot, first)  # taken over: asked, cancelled; nothing written, edits kept
    title, text, _ = first.dialogs.questions[-1]
    assert title == "Another window edits this project" and "taken over" in text
    assert np.array_equal(read_png(root / "masks" / "a.png"), theirs)
    assert first.session.is_dirty

    # taking it back: the first window's mask is written (the user chose it)
    first.dialogs.answers["Another window edits this project"] = "Take over and save"
    first.dialogs.answers["The mask changed on disk"] = "Overwrite"
    _save(qtbot, first)
    assert not first.session.is_dirty and read_png(root / "masks" / "a.png")[10, 20] == 255


def test_a_mask_changed_on_disk_is_not_overwritten_silently(qtbot, window, tmp_path):
    root = make_project(tmp_path / "proj", names=("a.png",))
    window.open_folder(root)
    wait_loaded(qtbot, window)
    other = np.zeros((60, 80), np.uint8)
    other[20:30, :] = 255
    write_mask(root / "masks" / "a.png", other)  # a script or another program
    mine = _stroke(window, slice(5, 15))
    _save(qtbot, window)
    assert window.dialogs.questions[-1][0] == "The mask changed on disk"
    assert np.array_equal(read_png(root / "masks" / "a.png"), other)  # kept: both
    copies = list((root / "masks").glob("a.conflict-*.png"))
    assert len(copies) == 1 and np.array_equal(read_png(copies[0]), mine)
    # saving again after the window's own write asks nothing more
    window.dialogs.questions.clear()
    window.dialogs.answers["The mask changed on disk"] = "Overwrite"
    _stroke(window, slice(50, 55))
    _save(qtbot, window)
    assert read_png(root / "masks" / "a.png")[52, 20] == 255
    _stroke(window, slice(56, 58))
    window.dialogs.questions.clear()
    _save(qtbot, window)
    assert window.dialogs.questions == []  # its own last write is the version it knows


def test_a_read_only_window_leaves_the_other_windows_recovery_copies(qtbot, make_window, tmp_path):
    from stoneseg_core.editing.recovery import recovery_dir

    root = make_project(tmp_path / "proj", names=("a.png",))
    first = make_window(FakeDialogs())
    first.open_folder(root)
    wait_loaded(qtbot, first)
    _stroke(first, slice(5, 15))
    qtbot.waitUntil((recovery_dir(root) / "a.json").is_file, timeout=10_000)
    second = make_window(FakeDialogs())
    second.open_folder(root)
    wait_loaded(qtbot, second)
    assert [q[0] for q in second.dialogs.questions] == ["Open in another window"]
    assert (recovery_dir(root) / "a.json").is_file()  # not offered, not discarded
