"""The Grains dock used as a geologist would: scale, analyse, pick, cut, merge, export, pool.

The masks hold discs of known radius (skimage ``disk``: the pixels whose centres lie
strictly inside the circle). A digitised disc's boundary is uncertain by half a pixel on
each side, so its b-axis is held to 2r within 1 px; measured errors are about 0.4 px.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from guihelpers import click, drag, make_project, to_view, wait_loaded
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from skimage.draw import disk

from stoneseg_core.grains import CSV_COLUMNS, distribution_of
from stoneseg_core.inference.segmenter import Prediction
from stoneseg_gui.grains.controller import SCALES_KEY

SIZE = (160, 100)  # width, height
SEPARATE = {6: (25, 20), 9: (25, 60), 12: (30, 120)}  # radius: (row, col)
TOUCHING = ((70, 40), (70, 58))  # two discs of radius 10 overlapping by 1 px: a narrow neck
EDGE = (2, 95, 8)  # row, col, radius: cut by the top edge


def disc_labels(with_edge: bool = False) -> np.ndarray:
    w, h = SIZE
    labels = np.zeros((h, w), np.int32)
    shapes = [(r, c, rad) for rad, (r, c) in SEPARATE.items()]
    shapes += [(r, c, 10) for r, c in TOUCHING]
    if with_edge:
        shapes.append(EDGE)
    for i, (r, c, rad) in enumerate(shapes, start=1):
        rr, cc = disk((r, c), rad, shape=labels.shape)
        labels[rr, cc] = i
    return labels


def disc_mask(with_edge: bool = False) -> np.ndarray:
    return np.where(disc_labels(with_edge) > 0, 255, 0).astype(np.uint8)


def open_project(qtbot, window, tmp_path: Path, with_edge: bool = False) -> Path:
    mask = disc_mask(with_edge)
    root = make_project(
        tmp_path / "proj", names=("a.png", "b.png"), size=SIZE, masks={"a": mask, "b": mask}
    )
    window.open_folder(root)
    wait_loaded(qtbot, window, root / "images" / "a.png")
    return root


def analyse(qtbot, window) -> None:
    side = window.grain_side
    side.analysis = None
    qtbot.keyClick(window.canvas, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: side.analysis is not None, timeout=10_000)


def stone_at(side, x: float, y: float) -> int:
    return side.analysis.label_at(x, y)


def saved_state(root: Path) -> dict:
    return json.loads((root / "stoneseg.json").read_text())


def test_analyse_shows_every_stone_measured(qtbot, window, tmp_path):
    root = open_project(qtbot, window, tmp_path)
    side, panel = window.grain_side, window.grain_side.panel
    panel.scale.setValue(0.5)  # typed: saved with the project at once
    assert saved_state(root)[SCALES_KEY] == {"a": 0.5}
    analyse(qtbot, window)

    assert panel.model.rowCount() == len(side.analysis.stones) == 5  # the touching pair is split
    assert panel.table.model().headerData(1, Qt.Orientation.Horizontal) == "b-axis\n(mm)"
    for radius, (row, col) in SEPARATE.items():
        stone = side.analysis.stone(stone_at(side, col, row))
        assert (stone.centroid_x, stone.centroid_y) == (pytest.approx(col), pytest.approx(row))
        assert stone.b_axis_px == pytest.approx(2 * radius, abs=1.0)
        assert stone.b_axis_mm == pytest.approx(0.5 * 2 * radius, abs=0.5)
    pair = {stone_at(side, c, r) for r, c in TOUCHING}
    assert len(pair) == 2 and 0 not in pair

    dist = side.distribution
    text = dist.percentiles_text()
    for name in ("D10", "D16", "D50", "D84", "D90"):
        assert name in text
    assert "mm" in text and "ψ" in text
    assert dist.plot.curve_points() > 0
    assert {"D16", "D50", "D84"} <= set(dist.plot.mark_names())
    assert "by count" in dist.caption.text() and "5 stones" in dist.caption.text()
    assert side.outlines.isVisible() and side.outlines.labels() == [1, 2, 3, 4, 5]

    # the pick tool is on after analysing: a click shows the stone and selects its row
    assert side.mode == "pick"
    row, col = SEPARATE[12]
    click(qtbot, window.canvas, col + 0.5, row + 0.5)
    label = stone_at(side, col, row)
    assert side.selected == (label,)
    assert panel.chosen_labels() == (label,)
    assert f"Stone {label}" in panel.details.text()
    # by area: the choice is shown, the curve changes
    d50_count = side.curve_view().marks[50]
    panel.by_area.setChecked(True)
    assert "by area" in dist.caption.text()
    assert side.curve_view().marks[50] > d50_count  # big stones weigh more
    # B goes back to painting
    qtbot.keyClick(window.canvas, Qt.Key.Key_B)
    assert side.mode is None and window.canvas.interaction is None
    assert not window.dialogs.errors


def test_scale_bar_two_clicks_and_a_typed_length(qtbot, window, tmp_path):
    root = open_project(qtbot, window, tmp_path)
    side, canvas = window.grain_side, window.canvas
    window.dialogs.numbers = [50.0]
    qtbot.keyClick(canvas, Qt.Key.Key_K)
    assert side.mode == "scale"
    p0, p1 = (20.5, 50.5), (120.5, 50.5)
    click(qtbot, canvas, *p0)
    qtbot.mouseMove(canvas.viewport(), to_view(canvas, 80, 50))
    assert side.guide.isVisible() and side.guide.caption.endswith("px")
    click(qtbot, canvas, *p1)
    # what the clicks really hit, after rounding to screen pixels
    a, b = (canvas.viewport_to_image(to_view(canvas, *p)) for p in (p0, p1))
    length = math.hypot(b.x() - a.x(), b.y() - a.y())
    assert length == pytest.approx(100, abs=1.0)
    assert side.scale == pytest.approx(50.0 / length, rel=1e-9)
    assert saved_state(root)[SCALES_KEY]["a"] == pytest.approx(50.0 / length, rel=1e-9)
    assert window.grain_side.panel.scale.value() == pytest.approx(side.scale, abs=1e-6)
    assert (
        "100" in window.dialogs.number_questions[0][1]
        or "99" in window.dialogs.number_questions[0][1]
    )
    assert not side.guide.isVisible() and side.mode is None
    # each photo has its own scale
    window.open_image(root / "images" / "b.png")
    wait_loaded(qtbot, window, root / "images" / "b.png")
    assert side.scale is None and side.panel.scale.text() == "not set"
    window.open_image(root / "images" / "a.png")
    wait_loaded(qtbot, window, root / "images" / "a.png")
    assert side.scale == pytest.approx(50.0 / length, rel=1e-9)


def test_cut_a_merged_stone_then_merge_it_back(qtbot, window, tmp_path):
    open_project(qtbot, window, tmp_path)
    side, canvas = window.grain_side, window.canvas
    side.panel.separation.setValue(30)  # centres 18 px apart are now one stone
    analyse(qtbot, window)
    (r0, c0), (r1, c1) = TOUCHING
    blob = stone_at(side, c0, r0)
    assert blob == stone_at(side, c1, r1) and len(side.analysis.stones) == 4
    mask = disc_mask()

    qtbot.keyClick(canvas, Qt.Key.Key_X)
    assert side.mode == "split"
    neck = (c0 + c1) / 2 + 0.5
    drag(qtbot, canvas, [(neck, r0 - 15), (neck, r0), (neck, r0 + 15)])
    left, right = stone_at(side, c0, r0), stone_at(side, c1, r1)
    assert left != right and 0 not in (left, right)
    assert len(side.analysis.stones) == side.panel.model.rowCount() == 5
    assert np.array_equal(side.analysis.labels > 0, mask > 0)  # no stone pixel lost
    for label in (left, right):
        assert side.analysis.stone(label).b_axis_px == pytest.approx(20, abs=1.5)
    assert set(side.outlines.labels()) == {s.label for s in side.analysis.stones}
    # a line across nothing cuts nothing, and says so
    drag(qtbot, canvas, [(2, 98), (10, 98)])
    assert len(side.analysis.stones) == 5 and "crosses no stone" in side.panel.status.text()

    qtbot.keyClick(canvas, Qt.Key.Key_G)
    click(qtbot, canvas, c0 + 0.5, r0 + 0.5)
    qtbot.mouseClick(
        canvas.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        to_view(canvas, c1 + 0.5, r1 + 0.5),
    )
    assert set(side.selected) == {left, right}
    assert side.actions.merge.isEnabled()
    qtbot.keyClick(canvas, Qt.Key.Key_M)
    merged = stone_at(side, c0, r0)
    assert merged == stone_at(side, c1, r1) == min(left, right)
    assert len(side.analysis.stones) == side.panel.model.rowCount() == 4
    assert side.selected == (merged,)
    assert not window.dialogs.errors


def test_exports_state_the_options(qtbot, window, tmp_path):
    open_project(qtbot, window, tmp_path, with_edge=True)
    side, panel = window.grain_side, window.grain_side.panel
    panel.scale.setValue(0.5)
    panel.exclude_edge.setChecked(True)
    panel.min_size.setValue(6.0)  # mm: the r = 6 disc (b-axis 5.9 mm) is left out
    analyse(qtbot, window)
    stones = side.analysis.stones
    assert len(stones) == 6
    left_out = {s.label: s.exclusion_reason for s in stones if s.excluded}
    edge = stone_at(side, EDGE[1], EDGE[0])
    small = stone_at(side, SEPARATE[6][1], SEPARATE[6][0])
    assert set(left_out) == {edge, small}
    assert "edge" in left_out[edge] and "6 mm" in left_out[small]
    assert "4 stones, 2 left out" in side.distribution.caption.text()

    out = tmp_path / "exports"
    out.mkdir()
    window.dialogs.files_to_save = [out / "a_stones.csv", out / "a_plot.png"]
    side.actions.export_csv.trigger()
    with open(out / "a_stones.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) - 1 == 6
    body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert {r["exclude_edge"] for r in body} == {"true"}
    assert {r["min_size_mm"] for r in body} == {"6"}
    assert {r["weighting"] for r in body} == {"count"}
    assert {r["mm_per_px"] for r in body} == {"0.5"}
    assert sum(r["excluded"] == "true" for r in body) == 2
    report = json.loads((out / "a_stones_percentiles.json").read_text())
    assert report["options"]["exclude_edge"] is True and report["options"]["min_size_mm"] == 6
    assert report["pooled"]["by_count"]["n_stones"] == 4

    side.actions.export_png.trigger()
    data = (out / "a_plot.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = QImage.fromData(data)
    assert not image.isNull() and image.width() == 2000 and image.height() > 1000
    assert not window.dialogs.errors


def test_pool_the_folder_with_scales_from_a_csv(qtbot, window, tmp_path):
    root = open_project(qtbot, window, tmp_path)
    side = window.grain_side
    table = tmp_path / "scales.csv"
    table.write_text("image,mm_per_px\na.png,0.5\nb.png,0.25\nz.png,1\n", encoding="utf-8")
    window.dialogs.files_to_open = [table]
    side.actions.import_scales.trigger()
    assert saved_state(root)[SCALES_KEY] == {"a": 0.5, "b": 0.25}
    assert side.scale == 0.5 and side.panel.scale.value() == 0.5
    title, text = window.dialogs.infos[-1]
    assert "2 photos" in text and "z" in text

    qtbot.keyClick(
        window.canvas,
        Qt.Key.Key_G,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    qtbot.waitUntil(lambda: side.pooled is not None and not side.is_pooling, timeout=20_000)
    results = side.pooled.results
    assert [r.name for r in results] == ["a.png", "b.png"]
    assert [r.mm_per_px for r in results] == [0.5, 0.25]
    assert [len(r.stones) for r in results] == [5, 5]
    dist = side.distribution
    assert dist.view() == "pooled" and "Pooled: 2 photos" in dist.caption.text()
    view = side.curve_view()
    assert view.kept == 10 and view.unit == "mm"
    # the pooled percentiles are those of all ten stones together, each at its own scale
    expected = distribution_of([s for r in results for s in r.stones]).percentiles()
    assert view.marks == pytest.approx(expected)
    assert not side.panel.progress_row.isVisible()

    out = tmp_path / "pooled.csv"
    window.dialogs.files_to_save = [out]
    side.actions.export_csv.trigger()
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert len(rows) - 1 == 10 and {r[0] for r in rows[1:]} == {"a.png", "b.png"}
    report = json.loads((tmp_path / "pooled_percentiles.json").read_text())
    assert report["pooled"]["images"] == 2 and set(report["images"]) == {"a.png", "b.png"}
    assert not window.dialogs.errors


def test_a_shown_prediction_is_split_with_its_probability(qtbot, window, tmp_path):
    root = open_project(qtbot, window, tmp_path)
    side = window.grain_side
    mask = disc_mask()
    probability = np.where(mask > 0, 0.9, 0.05).astype(np.float32)
    prediction = Prediction(probability=probability, mask=mask)
    controller = window.model_side.controller
    controller.prediction = prediction
    controller._prediction_path = root / "images" / "a.png"
    controller.prediction_ready.emit(root / "images" / "a.png")
    window.canvas.set_prediction(mask)
    analyse(qtbot, window)
    assert "probability" in side.analysis.source
    assert side.analysis.options.use_probability
    assert len(side.analysis.stones) == 5


def test_line_and_pick_interactions_without_a_mouse():
    from stoneseg_gui.grains.canvas import LineInteraction, PickInteraction

    lines, previews, left = [], [], []
    tool = LineInteraction(
        lambda a, b: lines.append((a, b)),
        lambda a, b: previews.append((a, b)),
        lambda: left.append(True),
        lambda: 3.0,
    )
    tool.press(1, 1, False)  # a click: the first end
    tool.release(1.5, 1)
    tool.move(8, 1, False)
    assert previews[-1] == ((1, 1), (8, 1)) and not lines
    tool.press(10, 1, False)  # the second click ends it
    tool.release(10, 1)
    assert lines == [((1, 1), (10, 1))] and previews[-1] == (None, None)
    tool.press(0, 0, False)  # a drag
    tool.move(5, 5, True)
    tool.release(20, 0)
    assert lines[-1] == ((0, 0), (20, 0))
    tool.press(0, 0, False)
    tool.cancel()  # Esc drops the started line ...
    assert len(lines) == 2 and not left and not tool.busy
    tool.cancel()  # ... and with none started, leaves the tool
    assert left == [True]

    picks = []
    pick = PickInteraction(lambda x, y, ctrl: picks.append((x, y, ctrl)), lambda: left.append(1))
    pick.press(3, 4, True)
    assert picks == [(3, 4, True)]


def test_one_scale_for_the_whole_folder_and_one_question_for_unscaled_photos(
    qtbot, window, tmp_path
):
    from stoneseg_gui.grains.controller import FOLDER_SCALE_KEY

    root = open_project(qtbot, window, tmp_path)
    side = window.grain_side
    side.set_scale(0.4)  # photo a
    assert saved_state(root)[SCALES_KEY] == {"a": 0.4}
    # pooling with b unscaled: one question naming b, offering a's scale
    window.dialogs.answers["Photos without a scale"] = "Cancel"
    assert not side.pool()
    title, text, choices = window.dialogs.questions[-1]
    assert title == "Photos without a scale" and "b.png" in text and "a.png" not in text
    assert "1 of 2" in text and choices[0] == "Use 0.4 mm/px for them"
    assert FOLDER_SCALE_KEY not in saved_state(root)
    window.dialogs.answers["Photos without a scale"] = "Use 0.4 mm/px for them"
    assert side.pool()
    qtbot.waitUntil(lambda: side.pooled is not None and not side.is_pooling, timeout=20_000)
    assert [r.mm_per_px for r in side.pooled.results] == [0.4, 0.4]
    assert saved_state(root)[FOLDER_SCALE_KEY] == 0.4

    # a fixed camera: the folder's scale from a photo's, and a photo's own still wins
    side.set_scale(0.25)  # a's own
    side.actions.folder_scale.trigger()
    assert saved_state(root)[FOLDER_SCALE_KEY] == 0.25
    window.open_image(root / "images" / "b.png")
    wait_loaded(qtbot, window, root / "images" / "b.png")
    assert side.scale == 0.25 and side.panel.scale.value() == 0.25
    assert side.scale_of("a") == 0.25 and side.scale_of("zzz") == 0.25


def test_cuts_survive_switching_photo_and_reopening_undo_and_a_changed_mask(
    qtbot, make_window, tmp_path
):
    from stoneseg_gui.grains.controller import GRAIN_EDITS_KEY

    window = make_window()
    root = open_project(qtbot, window, tmp_path)
    side, canvas = window.grain_side, window.canvas
    side.dock.show()
    side.panel.separation.setValue(30)  # the touching pair is one stone until cut
    analyse(qtbot, window)
    (r0, c0), (r1, c1) = TOUCHING
    assert stone_at(side, c0, r0) == stone_at(side, c1, r1)
    qtbot.keyClick(canvas, Qt.Key.Key_X)
    neck = (c0 + c1) / 2 + 0.5
    drag(qtbot, canvas, [(neck, r0 - 15), (neck, r0), (neck, r0 + 15)])
    assert stone_at(side, c0, r0) != stone_at(side, c1, r1)
    assert len(saved_state(root)[GRAIN_EDITS_KEY]["a"]["edits"]) == 1

    # undo takes the cut back (and the project forgets it), redo by cutting again
    assert side.actions.undo_edit.isEnabled()
    side.actions.undo_edit.trigger()
    assert stone_at(side, c0, r0) == stone_at(side, c1, r1) and len(side.analysis.stones) == 4
    assert "a" not in saved_state(root).get(GRAIN_EDITS_KEY, {})
    side.set_mode("split")
    drag(qtbot, canvas, [(neck, r0 - 15), (neck, r0), (neck, r0 + 15)])
    assert len(side.analysis.stones) == 5

    # switch photo and back: the stones come back as they were cut
    window.open_image(root / "images" / "b.png")
    wait_loaded(qtbot, window, root / "images" / "b.png")
    window.open_image(root / "images" / "a.png")
    wait_loaded(qtbot, window, root / "images" / "a.png")
    qtbot.waitUntil(lambda: side.analysis is not None and not side.is_analysing, timeout=10_000)
    assert len(side.analysis.stones) == 5 and stone_at(side, c0, r0) != stone_at(side, c1, r1)
    assert "are back" in side.panel.status.text()

    # quit and reopen: the same
    window.close()
    again = make_window()
    again.open_folder(root)
    wait_loaded(qtbot, again, root / "images" / "a.png")
    side2 = again.grain_side
    side2.dock.show()
    side2.panel.separation.setValue(30)
    analyse(qtbot, again)
    assert len(side2.analysis.stones) == 5
    assert stone_at(side2, c0, r0) != stone_at(side2, c1, r1)

    # the mask changes under the cut (the touching pair erased): the cut no longer fits,
    # and the status says so; the edit is kept aside in the project, not erased
    doc = again.current_document()
    labels = disc_labels()
    pair = (labels[r0, c0], labels[r1, c1])
    changed = np.where((labels > 0) & ~np.isin(labels, pair), 255, 0).astype(np.uint8)
    doc.replace(changed, "test edit")
    assert again.save_current()
    qtbot.waitUntil(lambda: not side2.is_analysing, timeout=10_000)
    side2.analysis = None
    assert side2.analyse()
    qtbot.waitUntil(lambda: side2.analysis is not None, timeout=10_000)
    assert "no longer fit" in side2.panel.status.text()
    assert saved_state(root)[GRAIN_EDITS_KEY]["a"]["dropped"][0]["op"] == "split"
