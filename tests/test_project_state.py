"""Two windows (or a window and a script) on one project: the state file keeps both's work."""

from __future__ import annotations

import json

from stoneseg_core.io.project import Project
from stoneseg_core.io.project_state import merge_state


def test_merge_keeps_their_changes_where_we_changed_nothing():
    base = {"active_model": "models/a", "predicted": ["p1"], "scales": {"x": 1.0}}
    ours = {"active_model": "models/b", "predicted": ["p1", "p2"], "scales": {"x": 1.0}}
    theirs = {
        "active_model": "models/a",
        "predicted": ["p1", "p3"],
        "scales": {"x": 1.0, "y": 2.0},
        "grain_edits": {"q": [1]},
    }
    assert merge_state(base, ours, theirs) == {
        "active_model": "models/b",  # ours changed it
        "predicted": ["p1", "p2", "p3"],  # both added one
        "scales": {"x": 1.0, "y": 2.0},  # theirs added one, ours did nothing
        "grain_edits": {"q": [1]},  # theirs only
    }


def test_merge_by_photo_and_removals():
    base = {"edits": {"a": [1], "b": [2]}, "predicted": ["a", "b"], "gone": 1}
    ours = {"edits": {"a": [1, 9]}, "predicted": ["b"]}  # b's edits and photo a dropped
    theirs = {"edits": {"a": [1], "b": [2], "c": [3]}, "predicted": ["a", "b", "c"], "gone": 1}
    assert merge_state(base, ours, theirs) == {
        "edits": {"a": [1, 9], "c": [3]},
        "predicted": ["b", "c"],
    }


def test_two_windows_saving_the_state_keep_each_others_photos(tmp_path):
    (tmp_path / "images").mkdir()
    first, second = Project.open(tmp_path), Project.open(tmp_path)
    first.set_predicted("a", True)  # the first window predicts photo a
    second.set_predicted("b", True)  # the second, photo b, without reading the file again
    second.state.setdefault("scale_mm_per_px", {})["b"] = 0.4
    second.save_state()
    first.set_active_model(tmp_path)
    on_disk = json.loads((tmp_path / "stoneseg.json").read_text())
    assert on_disk["predicted"] == ["a", "b"]  # the old code kept only one of them
    assert on_disk["scale_mm_per_px"] == {"b": 0.4}
    assert "active_model" in on_disk
    assert first.predicted_stems() == {"a", "b"}  # the window sees the merged state
    # a photo the first window un-predicts goes, the other's stays
    first.set_predicted("a", False)
    assert json.loads((tmp_path / "stoneseg.json").read_text())["predicted"] == ["b"]
