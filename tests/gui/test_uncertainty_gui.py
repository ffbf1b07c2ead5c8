"""What to label next in the window: U shows where the model is unsure of the photo it just
predicted, the photo list puts the photos not labelled yet in the most useful order and says
why, N opens the most useful one, and the scores outlive the window."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from guihelpers import make_project, wait_loaded
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from stoneseg_core.inference.uncertainty import (
    STATE_KEY,
    Uncertainty,
    UncertaintyScore,
    stored_scores,
)
from stoneseg_core.io.project import STATE_FILE
from stoneseg_gui.editor.image_filter import MOST_USEFUL
from stoneseg_gui.model.uncertainty_overlay import UNCERTAINTY_COLOR

PREDICT_TIMEOUT = 120_000


def _with_model(root: Path, trained_model: Path, window) -> Path:
    model = root / "models" / "run-1"
    shutil.copytree(trained_model, model)
    window.model_side.controller.set_active_model(model)
    return model


def _press(qtbot, window, key) -> None:
    qtbot.keyClick(window.canvas, key)


def test_u_shows_where_the_model_is_unsure_of_the_photo_it_predicted(
    qtbot, window, tmp_path, trained_model
):
    root = make_project(tmp_path / "proj", names=("a.png", "b.png"), size=(160, 100))
    window.open_folder(root)
    wait_loaded(qtbot, window)
    _with_model(root, trained_model, window)
    side, next_ = window.model_side, window.model_side.label_next
    a = window.current_image_path()

    # no prediction yet: U is on, nothing drawn, the status bar says what to do
    _press(qtbot, window, Qt.Key.Key_U)
    assert next_.actions.show_uncertainty.isChecked()
    assert not next_.item.isVisible()
    assert "predict it (Ctrl+P)" in window.statusBar().currentMessage()
    _press(qtbot, window, Qt.Key.Key_U)
    assert not next_.actions.show_uncertainty.isChecked()

    side.actions.predict.trigger()
    qtbot.waitUntil(lambda: side.controller.prediction is not None, timeout=PREDICT_TIMEOUT)
    unc = side.controller.prediction.uncertainty
    assert unc is not None and next_.item.uncertainty is unc
    assert not next_.item.isVisible()  # off until asked for
    _press(qtbot, window, Qt.Key.Key_U)
    assert next_.item.isVisible() and next_.legend.isVisible()
    assert next_.item.boundingRect().width() == 160 and next_.item.boundingRect().height() == 100
    assert unc.score.short_words() in next_.legend.text() and "%" in next_.legend.text()
    # the prediction's score is kept in the project and shown in the list
    assert stored_scores(window.project.state)["a"].score == pytest.approx(
        unc.score.score, abs=1e-5
    )
    assert stored_scores(window.project.state)["a"].model == "run-1"
    tip = window.image_list.model.data(
        window.image_list.model.index(window.image_list.model.row_of(a), 0),
        Qt.ItemDataRole.ToolTipRole,
    )
    assert "The model run-1" in tip

    # drawn over the photo: a map unsure everywhere paints the photo magenta
    everywhere = Uncertainty(np.full((50, 80), 255, np.uint8), UncertaintyScore(1.0, 4000, 0))
    next_.item.set_uncertainty(everywhere, (160, 100))
    window.canvas.fit_to_window()
    qtbot.wait(50)
    shot = window.canvas.viewport().grab().toImage()
    pixel = QColor(shot.pixel(window.canvas.mapFromScene(80, 50)))
    assert pixel.red() > 150 and pixel.blue() > 120 and pixel.green() < 110
    assert UNCERTAINTY_COLOR.red() > UNCERTAINTY_COLOR.green()
    _press(qtbot, window, Qt.Key.Key_U)  # U again: hidden
    assert not next_.item.isVisible() and not next_.legend.isVisible()

    # another photo: its own map (none yet), not this one's
    _press(qtbot, window, Qt.Key.Key_U)
    window.session.open_relative(1)
    wait_loaded(qtbot, window, root / "images" / "b.png")
    assert next_.item.uncertainty is None and not next_.item.isVisible()


def _scored_project(tmp_path: Path) -> Path:
    names = ("a.png", "b.png", "c.png", "d.png", "e.png")
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 10:40] = 255
    root = make_project(tmp_path / "proj", names=names, masks={"d": mask})
    scores = {
        "a": UncertaintyScore(0.10, 10, 90, model="run-1"),
        "b": UncertaintyScore(0.60, 60, 40, model="run-1"),
        "c": UncertaintyScore(0.30, 30, 70, model="run-1"),
        "d": UncertaintyScore(0.90, 90, 10, model="run-1"),  # labelled: out of the running
    }
    state = {STATE_KEY: {stem: s.to_dict() for stem, s in scores.items()}}
    (root / STATE_FILE).write_text(json.dumps(state))
    return root


def test_the_list_puts_the_most_useful_first_and_n_opens_it(qtbot, window, tmp_path):
    root = _scored_project(tmp_path)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    images = root / "images"
    lst = window.image_list
    lst.set_filter(MOST_USEFUL)
    # not labelled yet, least sure first; no score last; the labelled photo not shown
    assert [p.name for p in lst.visible_paths()] == ["b.png", "c.png", "a.png", "e.png"]
    index = lst.proxy.index(0, 0)
    assert "60 %" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert "likeliest to be wrong" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert lst.model.uncertainty_of(images / "d.png") is None
    assert lst.model.uncertainty_of(images / "e.png") is None

    opened = window.current_image_path()
    expected = [p for p in ("b.png", "c.png", "a.png") if images / p != opened]
    for name in expected:
        _press(qtbot, window, Qt.Key.Key_N)
        wait_loaded(qtbot, window, images / name)
        assert name in window.statusBar().currentMessage()
    # each opened once: N says so instead of going round again
    _press(qtbot, window, Qt.Key.Key_N)
    qtbot.wait(50)
    assert window.current_image_path() == images / expected[-1]
    assert "opened all 3 photos" in window.statusBar().currentMessage()

    # a photo labelled since drops out of the order
    lst.set_filter(None)
    window.image_list.set_status(images / "b.png", window.session.image_status(images / "d.png"))
    lst.set_filter(MOST_USEFUL)
    assert [p.name for p in lst.visible_paths()] == ["c.png", "a.png", "e.png"]


def test_n_without_scores_offers_to_predict_and_the_scores_outlive_the_window(
    qtbot, make_window, dialogs, tmp_path, trained_model, monkeypatch
):
    import stoneseg_gui.model.controller as controller_module

    root = make_project(tmp_path / "proj", names=("a.png", "b.png", "c.png"), size=(160, 100))
    window = make_window()
    window.open_folder(root)
    wait_loaded(qtbot, window)

    # no model of the project's, none installed with StoneSeg: says how to get there
    monkeypatch.setattr(controller_module, "installed_stone_model", lambda: None)
    _press(qtbot, window, Qt.Key.Key_N)
    assert dialogs.infos[-1][0] == "No photo ranked yet"
    assert "train a model (Ctrl+T)" in dialogs.infos[-1][1]
    assert not dialogs.questions

    _with_model(root, trained_model, window)
    dialogs.answers["No photo ranked yet"] = "Predict all unlabelled"
    _press(qtbot, window, Qt.Key.Key_N)
    assert "Predict the 3 unlabelled photos" in dialogs.questions[-1][1]
    qtbot.waitUntil(lambda: len(stored_scores(window.project.state)) == 3, timeout=PREDICT_TIMEOUT)
    qtbot.waitUntil(lambda: not window.model_side.controller.is_busy, timeout=PREDICT_TIMEOUT)
    scores = stored_scores(window.project.state)
    lst = window.image_list
    for stem, score in scores.items():
        assert lst.model.uncertainty_of(root / "images" / f"{stem}.png") == score
    assert window.close()

    again = make_window()
    again.open_folder(root)
    wait_loaded(qtbot, again)
    assert stored_scores(again.project.state) == scores
    for stem, score in scores.items():
        assert again.image_list.model.uncertainty_of(root / "images" / f"{stem}.png") == score
    best = max(scores, key=lambda s: scores[s].score)
    if root / "images" / f"{best}.png" != again.current_image_path():
        _press(qtbot, again, Qt.Key.Key_N)
        wait_loaded(qtbot, again, root / "images" / f"{best}.png")


def test_u_and_n_are_listed_in_f1_and_in_the_view_menu(qtbot, window):
    qtbot.keyClick(window, Qt.Key.Key_F1)
    rows = dict(window._shortcuts_dialog.rows())
    assert rows["Show uncertainty"] == "U"
    assert rows["Next most useful photo"] == "N"
    texts = [a.text().replace("&", "") for a in window.view_menu.actions()]
    assert "Show uncertainty" in texts and "Next most useful photo" in texts
    toolbar = window.model_side.label_next.toolbar
    assert toolbar.parent() is window and len(toolbar.actions()) == 2


def test_the_order_spreads_over_the_kinds_of_photo_once_the_thumbnails_are_made(
    qtbot, window, tmp_path
):
    """Eight photos of bare belt the model is very unsure of and six of stones it is less
    unsure of: by score alone the belt would take the first eight places; spread over the
    kinds (each thumbnail's look), a stone photo comes second, and N opens it second."""
    import cv2

    root = tmp_path / "kinds"
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(3)
    scores = {}
    for i in range(8):
        belt = np.clip(rng.normal(55, 2, (90, 120, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(images / f"belt{i}.png"), belt)
        scores[f"belt{i}"] = UncertaintyScore(0.90 + 0.01 * i, 90, 10, model="run-1")
    for i in range(6):
        stones = np.full((90, 120, 3), (110, 135, 150), np.uint8)
        for _ in range(25):
            centre = tuple(int(v) for v in rng.integers(0, 110, 2))
            grey = int(rng.integers(170, 240))
            cv2.circle(stones, centre, int(rng.integers(5, 14)), (grey, grey, grey), -1)
        cv2.imwrite(str(images / f"stones{i}.png"), stones)
        scores[f"stones{i}"] = UncertaintyScore(0.30 + 0.05 * i, 30, 70, model="run-1")
    state = {STATE_KEY: {stem: s.to_dict() for stem, s in scores.items()}}
    (root / STATE_FILE).write_text(json.dumps(state))

    window.open_folder(root)
    wait_loaded(qtbot, window)
    lst = window.image_list
    lst.set_filter(MOST_USEFUL)
    paths = lst.model.paths()
    qtbot.waitUntil(lambda: all(lst.model.look_of(p) is not None for p in paths), timeout=20_000)
    # the list is sorted again once the looks are in (a moment after the last thumbnail)
    qtbot.waitUntil(lambda: lst.visible_paths()[1].name == "stones5.png", timeout=5_000)
    shown = [p.name for p in lst.visible_paths()]
    assert shown[0] == "belt7.png"  # the larger kind's least sure photo
    assert len(shown) == 14 and sum(n.startswith("belt") for n in shown[:4]) <= 2, shown

    opened = window.current_image_path()
    expected = [p for p in shown[:3] if images / p != opened][:2]
    for name in expected:
        _press(qtbot, window, Qt.Key.Key_N)
        wait_loaded(qtbot, window, images / name)
    # the stone photo came before belt photos the model is less sure of: the status says why
    assert expected[-1].startswith("stones")
    message = window.statusBar().currentMessage()
    assert "unsure on 55 % of its stone; first because fewer photos like it are" in message
