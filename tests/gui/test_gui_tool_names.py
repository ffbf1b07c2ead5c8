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
