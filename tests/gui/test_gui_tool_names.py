"""One name for each painting tool: the tool's title, its action, the key list and the docs."""

from __future__ import annotations

import re
from pathlib import Path

from stoneseg_core.editing.tools import ToolKind
from stoneseg_gui.actions import CANVAS_GESTURES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "app.md"


def test_each_tool_has_one_name_in_the_window_and_the_docs(window):
    docs = DOCS.read_text().lower()
    keys = " ".join(" ".join(row) for row in CANVAS_GESTURES).lower()
    for kind in ToolKind:
        action = window.ui_actions.tool_action(kind).text().replace("&", "")
        assert action == kind.title
        assert kind.title.lower() in docs, kind.title
    assert not re.search(r"polygon (fill|erase)", docs)
    assert "polygon" not in keys


def test_undo_names_the_action_not_a_tool(qtbot, window, tmp_path):
    # "Undo Eraser" with the brush in hand read as if the eraser were still the tool
    from guihelpers import drag, make_project, wait_loaded

    root = make_project(tmp_path / "proj", names=("a.png",))
    window.open_folder(root)
    wait_loaded(qtbot, window)
    drag(qtbot, window.canvas, [(10, 10), (40, 20)])  # the brush paints
    window.tool_settings.set_tool(ToolKind.ERASER)
    drag(qtbot, window.canvas, [(10, 10), (40, 20)])  # the eraser takes it away
    window.tool_settings.set_tool(ToolKind.BRUSH)
    undo = window.ui_actions.undo.text().replace("&", "")
    assert undo == "Undo Eraser stroke"
    assert undo.removeprefix("Undo ") not in {kind.title for kind in ToolKind}
