"""Train, then train again: the actions come back, fine-tuning validates honestly, and a
worse run never replaces the active model by itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from guihelpers import make_project, read_png, wait_loaded, write_photo
from PySide6.QtCore import Qt

from stoneseg_core.io.images import write_mask
from stoneseg_core.model.network import read_model_info
from stoneseg_core.scoring.pixels import Scores
from stoneseg_core.training.events import Comparison, TrainResult

TRAIN_TIMEOUT = 120_000


def _labelled_project(tmp_path: Path, n: int = 5) -> Path:
    names = tuple(f"p{i}.png" for i in range(n))
    root = make_project(tmp_path / "proj", names=names)
    for i, name in enumerate(names):
        mask = (np.arange(80)[None, :].repeat(60, 0) > 20 + 6 * i).astype(np.uint8) * 255
        write_mask(root / "masks" / f"{Path(name).stem}.png", mask)
    return root


def _tiny(window, epochs: int, afresh: bool) -> None:
    panel = window.model_side.panel
    panel.epochs.setValue(epochs)
    panel.crop.setValue(64)
    panel.work_size.setValue(96)
    panel.batch_size.setValue(2)
    panel.afresh.setChecked(afresh)


def _train_with_ctrl_t(qtbot, window) -> None:
    side = window.model_side
    assert side.actions.train.isEnabled() and not side.actions.stop_training.isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert side.controller.is_training
    assert not side.actions.train.isEnabled() and side.actions.stop_training.isEnabled()
    qtbot.waitUntil(lambda: not side.controller.is_training, timeout=TRAIN_TIMEOUT)
    qtbot.waitUntil(lambda: side.actions.train.isEnabled(), timeout=5_000)


def test_train_then_fine_tune_again_with_an_honest_validation(qtbot, window, tmp_path):
    root = _labelled_project(tmp_path)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    side = window.model_side

    _tiny(window, epochs=1, afresh=True)
    _train_with_ctrl_t(qtbot, window)
    # the run is over: Train and Ctrl+T work again, Stop does not
    assert side.actions.train.isEnabled() and not side.actions.stop_training.isEnabled()
    assert side.panel.train_button.isEnabled() and not side.panel.stop_button.isEnabled()
    first = window.project.active_model
    assert first is not None
    a = read_model_info(first)
    # the bar says the run finished (it used to drop back to 0 %)
    assert side.panel.progress.value() == side.panel.progress.maximum()
    assert side.panel.progress.format() == "Finished"
    assert side.plot.point_counts()["val"] == 1

    # label two more photos, then fine-tune the active model (Start afresh unchecked)
    for name in ("n1.png", "n2.png"):
        write_photo(root / "images" / name, seed=7)
        mask = (np.arange(80)[None, :].repeat(60, 0) > 40).astype(np.uint8) * 255
        write_mask(root / "masks" / f"{Path(name).stem}.png", mask)
    _tiny(window, epochs=4, afresh=False)
    # the panel says what this Train does: it fine-tunes the active model, for 'Epochs,
    # training again' (at most Epochs)
    assert side.panel.next_run.text().startswith(f"Next Train fine-tunes {first.name} on ")
    assert side.panel.next_run.text().endswith(", 3 epochs.")
    side.panel.again_epochs.setValue(1)
    assert side.panel.next_run.text().endswith(", 1 epoch.")
    _train_with_ctrl_t(qtbot, window)
    # the first run's curves stay, faded, beside the second's
    assert side.plot.earlier_labels() == [first.name]
    assert side.plot.point_counts()["val"] == 1
    runs = sorted(p for p in window.project.models_dir.iterdir() if (p / "config.json").is_file())
    assert len(runs) == 2
    b = read_model_info(runs[-1])
    assert b.parent is not None and Path(b.parent) == first
    assert len(b.history) == 1  # one epoch, not the four of Epochs
    assert not set(b.val_images) & set(a.train_images)  # never a photo its parent learnt
    assert set(a.val_images) <= set(b.val_images)  # the same validation photos, and more
    assert b.trained_before == a.train_images
    # the panel says how the new model did against the previous one on the same photos
    assert "same" in side.panel.status.text()
    assert side.actions.train.isEnabled() and not side.actions.stop_training.isEnabled()
    assert not window.dialogs.errors


def _scores(iou: float) -> Scores:
    return Scores(accuracy=iou, iou=iou, f1=iou, precision=iou, recall=iou)


def test_a_worse_run_does_not_become_active(qtbot, window, tmp_path):
    root = _labelled_project(tmp_path, n=3)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    side = window.model_side
    _tiny(window, epochs=1, afresh=True)
    _train_with_ctrl_t(qtbot, window)
    good = window.project.active_model
    _tiny(window, epochs=1, afresh=True)
    _train_with_ctrl_t(qtbot, window)
    runs = sorted(p for p in window.project.models_dir.iterdir() if (p / "config.json").is_file())
    newer = [r for r in runs if r != good][0]
    window.project.set_active_model(good)

    def result_with(new_iou: float, other_iou: float) -> TrainResult:
        info = read_model_info(newer)
        return TrainResult(
            model_dir=newer,
            best_epoch=1,
            best=_scores(new_iou),
            best_per_image=(),
            history=tuple(info.history),
            train_images=tuple(info.train_images),
            val_images=tuple(info.val_images),
            cancelled=False,
            seconds=1.0,
            comparison=Comparison(good, ("p1",), _scores(new_iou), _scores(other_iou)),
        )

    # 54 % against the active model's 68 % on the same photos: the active model stays
    side.controller._on_train_worker_succeeded(result_with(0.54, 0.68))
    assert window.project.active_model == good
    text = side.panel.status.text()
    assert "54.0 %" in text and "68.0 %" in text and "stays active" in text
    # not worse: the new run takes over
    side.controller._on_train_worker_succeeded(result_with(0.70, 0.68))
    assert window.project.active_model == newer
    assert "now the active model" in side.panel.status.text()


def test_accept_asks_before_replacing_a_hand_made_mask_and_predict_all_includes_the_photo_on_screen(
    qtbot, window, tmp_path
):
    root = _labelled_project(tmp_path, n=3)
    write_photo(root / "images" / "u.png", seed=9)  # unlabelled
    window.open_folder(root)
    wait_loaded(qtbot, window)
    side = window.model_side
    _tiny(window, epochs=1, afresh=True)
    _train_with_ctrl_t(qtbot, window)

    # a hand-made mask: accepting a prediction over it asks first
    p0 = root / "images" / "p0.png"
    window.open_image(p0)
    wait_loaded(qtbot, window, p0)
    mine = window.current_document().mask.copy()
    side.actions.predict.trigger()
    qtbot.waitUntil(lambda: side.controller.prediction is not None, timeout=30_000)
    predicted = side.controller.prediction.mask.copy()
    window.dialogs.answers["Replace your mask?"] = "Keep my mask"
    assert not side.controller.accept_prediction()
    assert window.dialogs.questions[-1][0] == "Replace your mask?"
    np.testing.assert_array_equal(window.current_document().mask, mine)
    window.dialogs.answers["Replace your mask?"] = "Replace"
    assert side.controller.accept_prediction()
    np.testing.assert_array_equal(window.current_document().mask, predicted)

    # Predict all, with the unlabelled photo on screen: it is predicted and shown too
    u = root / "images" / "u.png"
    window.open_image(u)
    wait_loaded(qtbot, window, u)
    assert not window.current_document().mask.any()
    assert side.controller.predict_unlabelled()
    qtbot.waitUntil(lambda: not side.controller.is_busy, timeout=30_000)
    assert (root / "masks" / "u.png").is_file()
    assert window.project.status(u).name == "PREDICTED"
    wait_loaded(qtbot, window, u)
    np.testing.assert_array_equal(
        window.current_document().mask, read_png(root / "masks" / "u.png")
    )

    # its mask is an unreviewed prediction: no ground truth to compare with
    side.controller.compare_validation_image("u")
    assert not side.controller.is_busy
    assert not side.controller._dialogs_open


def test_batch_dialog_starts_at_the_models_own_threshold(qtbot, window, tmp_path):
    import json

    root = _labelled_project(tmp_path, n=3)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    _tiny(window, epochs=1, afresh=True)
    _train_with_ctrl_t(qtbot, window)
    active = window.project.active_model
    cfg = json.loads((active / "config.json").read_text())
    cfg["threshold"] = 0.35  # as if chosen on its validation photos
    (active / "config.json").write_text(json.dumps(cfg))
    dialog = window.model_side.open_batch_dialog()
    assert dialog.threshold.value() == 0.35
    dialog.close()


def test_panel_texts_match_the_project_and_the_bar_says_how_a_run_ended(qtbot, window, tmp_path):
    root = _labelled_project(tmp_path, n=4)
    window.open_folder(root)
    wait_loaded(qtbot, window)
    panel = window.model_side.panel
    assert panel.status.text().startswith("4 labelled photos")
    detected = panel.detected.text()
    assert "core" in detected and "thread" in detected and "threads)" not in detected
    # pretrained by default, from the weights installed with StoneSeg (no internet)
    assert panel.pretrained.isChecked() and "installed with StoneSeg" in panel.pretrained.toolTip()
    # what the next Train does, in one line
    assert panel.next_run.text() == (
        "Next Train starts from ImageNet weights (installed with StoneSeg) on 4 labelled photos."
    )
    assert panel.config().encoder == "tu-tf_efficientnet_lite0"
    panel.encoder.setCurrentText("efficientnet-b0")
    assert "needs internet" in panel.pretrained.toolTip()
    assert "(needs internet)" in panel.next_run.text()
    panel.pretrained.setChecked(False)
    assert panel.next_run.text() == "Next Train starts from random weights on 4 labelled photos."
    panel.pretrained.setChecked(True)
    panel.encoder.setCurrentText("tu-tf_efficientnet_lite0")
    _tiny(window, epochs=200, afresh=True)
    qtbot.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=TRAIN_TIMEOUT)
    qtbot.keyClick(
        window,
        Qt.Key.Key_T,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    qtbot.waitUntil(lambda: not window.model_side.controller.is_training, timeout=TRAIN_TIMEOUT)
    # the bar keeps where the run stopped and says so (it used to drop to 0 %, as if
    # nothing had run)
    assert 0 < panel.progress.value() < panel.progress.maximum()
    assert panel.progress.format() == "Stopped at %p %"
    assert window.model_side.actions.train.isEnabled()
