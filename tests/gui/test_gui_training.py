"""Desktop app part 2, used as a geologist would: paint, train, watch, predict, batch, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from guihelpers import drag, make_project, read_png, wait_loaded
from PySide6.QtCore import Qt

from stoneseg_core.io.images import write_mask
from stoneseg_core.io.project import ImageStatus

TRAIN_TIMEOUT = 120_000


def tiny_settings(window, epochs: int = 2) -> None:
    panel = window.model_side.panel
    panel.epochs.setValue(epochs)
    panel.crop.setValue(64)
    panel.work_size.setValue(128)
    panel.batch_size.setValue(2)
    panel.afresh.setChecked(True)


def paint_three(qtbot, window, root: Path) -> None:
    """Paint a stroke on each of the three photos, switching photo (which autosaves)."""
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        window.open_image(root / "images" / name)
        wait_loaded(qtbot, window, root / "images" / name)
        y = 15 + 10 * i
        drag(qtbot, window.canvas, [(10, y), (40, y + 5), (70, y + 10)])
    window.open_image(root / "images" / "a.png")
    wait_loaded(qtbot, window, root / "images" / "a.png")
    for stem in "abc":
        assert (root / "masks" / f"{stem}.png").is_file()


def train_and_wait(qtbot, window) -> None:
    side = window.model_side
    qtbot.mouseClick(side.panel.train_button, Qt.MouseButton.LeftButton)
    assert side.controller.is_training
    qtbot.waitUntil(lambda: not side.controller.is_training, timeout=TRAIN_TIMEOUT)


def test_paint_train_watch_and_read_metrics(qtbot, window, tmp_path):
    root = make_project(tmp_path / "proj")
    window.open_folder(root)
    paint_three(qtbot, window, root)
    tiny_settings(window)
    panel = window.model_side.panel
    panel.scale_policy.setCurrentIndex(panel.scale_policy.findData("stone-size"))
    train_and_wait(qtbot, window)
    side = window.model_side
    counts = side.plot.point_counts()
    assert counts["batch"] >= 2 and counts["train"] == 2 and counts["val"] == 2
    for name in ("accuracy", "iou", "f1", "precision", "recall"):
        assert side.metrics.summary_text(0, name).endswith("%")
    assert side.metrics.per_image.rowCount() == 1  # one validation photo of three
    project = window.project
    assert project.active_model is not None
    info = json.loads((project.active_model / "config.json").read_text())
    assert len(info["history"]) == 2 and len(info["train_images"]) == 2
    assert info["scale"]["policy"] == "stone-size" and info["scale"]["stone_px"] > 0
    assert side.history.table.rowCount() == 1
    assert not window.dialogs.errors


def test_stop_keeps_the_best_model_so_far(qtbot, window, tmp_path):
    root = make_project(tmp_path / "proj")
    masks = {
        s: (np.arange(80)[None, :].repeat(60, 0) > 30 + 5 * i).astype(np.uint8) * 255
        for i, s in enumerate("abc")
    }
    for s, m in masks.items():
        write_mask(root / "masks" / f"{s}.png", m)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    tiny_settings(window, epochs=200)
    side = window.model_side
    qtbot.mouseClick(side.panel.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: side.plot.point_counts()["batch"] >= 1, timeout=TRAIN_TIMEOUT)
    assert side.panel.stop_button.isEnabled()
    qtbot.mouseClick(side.panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not side.controller.is_training, timeout=TRAIN_TIMEOUT)
    active = window.project.active_model
    assert active is not None and (active / "model.safetensors").is_file()
    info = json.loads((active / "config.json").read_text())
    assert info["metrics"]["cancelled"] is True and len(info["history"]) < 200
    assert side.panel.train_button.isEnabled()


def test_predict_accept_review_then_batch_and_export(qtbot, window, tmp_path):
    root = make_project(tmp_path / "proj", names=("a.png", "b.png", "c.png", "d.png"))
    for i, s in enumerate("abc"):
        write_mask(
            root / "masks" / f"{s}.png",
            (np.arange(80)[None, :].repeat(60, 0) > 30 + 5 * i).astype(np.uint8) * 255,
        )
    window.open_folder(root)
    wait_loaded(qtbot, window)
    tiny_settings(window, epochs=1)
    train_and_wait(qtbot, window)
    side = window.model_side

    # predict the unlabelled photo, accept, save: 'predicted, not reviewed' until marked
    d = root / "images" / "d.png"
    window.open_image(d)
    wait_loaded(qtbot, window, d)
    side.actions.predict.trigger()
    qtbot.waitUntil(lambda: side.controller.prediction is not None, timeout=30_000)
    assert window.canvas.prediction_item.isVisible()
    predicted = side.controller.prediction.mask.copy()
    side.actions.accept_prediction.trigger()
    np.testing.assert_array_equal(window.current_document().mask, predicted)
    assert window.save_current()
    assert window.project.status(d) == ImageStatus.PREDICTED
    assert "d" not in [p[0].stem for p in window.project.labelled_pairs()]
    window.session.mark_reviewed()
    assert window.project.status(d) == ImageStatus.LABELLED

    # batch-segment a folder with one corrupt photo
    src = tmp_path / "field"
    make_project(src, names=("p1.png", "p2.jpg"), layout="plain")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    dialog = side.open_batch_dialog()
    dialog.input_row.edit.setText(str(src))
    dialog.output_row.edit.setText(str(tmp_path / "field-masks"))
    dialog.scale.setCurrentIndex(dialog.scale.findData("training"))  # a fixed camera
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.summary is not None, timeout=60_000)
    assert dialog.summary.written == 2 and len(dialog.summary.failed) == 1
    assert "broken.jpg" in dialog.status.text()
    for name in ("p1.png", "p2.png"):
        m = read_png(tmp_path / "field-masks" / name)
        assert m.shape == (60, 80) and set(np.unique(m)) <= {0, 255}
    dialog.close()

    # export labelled masks
    out = tmp_path / "export"
    assert side.controller.export_masks(out, include_predicted=False)
    qtbot.waitUntil(lambda: not side.controller.is_busy, timeout=20_000)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
    assert not window.dialogs.errors


def test_errors_get_dialogs_and_lose_nothing(qtbot, window, tmp_path):
    root = make_project(tmp_path / "proj")
    only = (np.arange(80)[None, :].repeat(60, 0) > 40).astype(np.uint8) * 255
    write_mask(root / "masks" / "a.png", only)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    tiny_settings(window)
    window.model_side.actions.train.trigger()
    assert window.dialogs.errors and window.dialogs.errors[-1][0] == "Not enough labelled photos"
    np.testing.assert_array_equal(read_png(root / "masks" / "a.png"), only)

    # a damaged active model: a clear message, the mask untouched
    broken = window.project.models_dir / "run-broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{broken")
    window.project.set_active_model(broken)
    window.model_side.actions.predict.trigger()
    qtbot.waitUntil(lambda: len(window.dialogs.errors) >= 2, timeout=20_000)
    assert "damaged" in window.dialogs.errors[-1][1]
    np.testing.assert_array_equal(read_png(root / "masks" / "a.png"), only)


def test_closing_while_training_asks_then_stops_cleanly(qtbot, window, tmp_path):
    root = make_project(tmp_path / "proj")
    for i, s in enumerate("abc"):
        write_mask(
            root / "masks" / f"{s}.png",
            (np.arange(80)[None, :].repeat(60, 0) > 30 + 5 * i).astype(np.uint8) * 255,
        )
    window.open_folder(root)
    wait_loaded(qtbot, window)
    tiny_settings(window, epochs=200)
    side = window.model_side
    side.actions.train.trigger()
    qtbot.waitUntil(lambda: side.plot.point_counts()["batch"] >= 1, timeout=TRAIN_TIMEOUT)
    window.dialogs.answers["Training is running"] = "Keep training"
    window.close()
    assert window.isVisible() and side.controller.is_training
    window.dialogs.answers["Training is running"] = "Stop and quit"
    window.close()
    assert not window.isVisible()
    qtbot.waitUntil(lambda: not side.controller.is_training, timeout=10_000)
    assert [q[0] for q in window.dialogs.questions].count("Training is running") == 2
    active = window.project.active_model
    assert active is not None and (active / "model.safetensors").is_file()
