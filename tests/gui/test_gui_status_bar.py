"""Status-bar messages get the room they need, and stay readable after they go."""

from __future__ import annotations

from PySide6.QtGui import QFontMetrics

MESSAGE = "Prediction shown (predicted at 1.5x zoom): Ctrl+Return makes it the mask, Esc hides it."


def _room_for_message(bar) -> int:
    """Pixels left of the first visible permanent field (where Qt draws the message)."""
    fields = [w for w in bar.findChildren(type(bar.pixel_label)) if w.isVisible()]
    fields += [bar.masks_button] if bar.masks_button.isVisible() else []
    return min(w.mapTo(bar, w.rect().topLeft()).x() for w in fields)


def test_a_message_is_not_cut_by_the_fields_and_its_text_stays(qtbot, window, tmp_path):
    from guihelpers import make_project, wait_loaded

    root = make_project(tmp_path / "a_project_folder_with_a_long_name" / "photos")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    bar = window.status
    for width in (1366, 1024):
        window.resize(width, 700)
        qtbot.waitUntil(lambda w=width: window.width() == w)
        bar.showMessage(MESSAGE, 5000)
        qtbot.wait(50)
        needed = QFontMetrics(bar.font()).horizontalAdvance(MESSAGE)
        assert _room_for_message(bar) >= needed, width
        # the fields come back when the message goes
        bar.clearMessage()
        qtbot.wait(50)
        assert bar.masks_button.isVisible() and bar.zoom_label.isVisible()
    assert bar.size_label.isVisible() is False  # 1024 px: the photo size steps aside anyway
    window.resize(1366, 700)
    qtbot.waitUntil(lambda: bar.size_label.isVisible())
    # gone from the bar, the text is still in its tooltip, newest first
    bar.showMessage("Saved a.png", 1000)
    assert bar.toolTip().splitlines()[1:3] == ["• Saved a.png", f"• {MESSAGE}"]
