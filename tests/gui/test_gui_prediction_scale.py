"""Model > Prediction scale: how the window's Predict brings a photo to the model's scale (the
model's own, by stone size, the long side, the training photos' scale), remembered."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from guihelpers import wait_loaded
from synthetic import make_scene, write_rgb

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.model.config import InferenceConfig
from stoneseg_gui.model.side import SCALE_KEY


@pytest.fixture
def gravel(tmp_path):
    """A photo 4 times as wide as the tiny model's training scenes, their stones' size."""
    rng = np.random.default_rng(3)
    tiles = [make_scene(rng, 128, 160, n_stones=6)[0] for _ in range(8)]
    photo = np.concatenate(
        [np.concatenate(tiles[:4], axis=1), np.concatenate(tiles[4:], axis=1)], axis=0
    )
    write_rgb(tmp_path / "proj" / "images" / "gravel.png", photo)
    return tmp_path / "proj"


def _predict(qtbot, side):
    controller = side.controller
    busy_when_shown = []

    def shown(_path):
        busy_when_shown.append(controller.is_busy)

    controller.prediction_ready.connect(shown)
    controller.prediction = None
    assert not controller.is_busy
    side.actions.predict.trigger()
    assert controller.is_busy
    qtbot.waitUntil(lambda: controller.prediction is not None, timeout=120_000)
    controller.prediction_ready.disconnect(shown)
    # the moment it is shown another Ctrl+P is taken, not "another task is running"
    assert busy_when_shown == [False]
    return controller.prediction


def test_the_prediction_scale_is_chosen_used_and_remembered(
    qtbot, make_window, gravel, trained_model
):
    window = make_window()
    window.open_folder(gravel)
    wait_loaded(qtbot, window)
    side = window.model_side
    side.controller.set_active_model(trained_model)
    policy = Segmenter.load(trained_model).scale_policy
    assert side.scale_actions["auto"].isChecked()

    # the model's own policy (long side: 160 px for the 640-px photo)
    assert _predict(qtbot, side).scale == pytest.approx(policy.long_side(256, 640), rel=0.01)
    side.scale_actions["training"].trigger()
    assert side.controller.prediction_scale == "training"
    assert _predict(qtbot, side).scale == pytest.approx(policy.train_scale, rel=0.01)
    side.scale_actions["stone-size"].trigger()
    by_stone = _predict(qtbot, side).scale
    # the stones are the training scenes' own size: the estimate lands near the training
    # scale, far from the long-side factor that shrinks them four times
    assert abs(np.log2(by_stone / policy.train_scale)) < 0.75
    assert by_stone > 2 * policy.long_side(256, 640)
    assert window.settings.value(SCALE_KEY) == "stone-size"

    again = make_window()
    assert again.model_side.scale_actions["stone-size"].isChecked()
    assert again.model_side.controller.prediction_scale == "stone-size"


def test_a_model_without_a_standard_stone_says_it_predicts_by_the_long_side(
    qtbot, make_window, dialogs, gravel, trained_model, tmp_path, caplog
):
    """A model trained before StoneSeg recorded its standard stone cannot scale by stone
    size: the window says so with the prediction (and the command line warns)."""
    old = tmp_path / "old-model"
    shutil.copytree(trained_model, old)
    config = json.loads((old / "config.json").read_text())
    config.pop("scale", None)
    (old / "config.json").write_text(json.dumps(config))
    window = make_window()
    window.open_folder(gravel)
    wait_loaded(qtbot, window)
    side = window.model_side
    side.controller.set_active_model(old)
    side.scale_actions["stone-size"].trigger()
    notices: list[str] = []
    side.controller.notice.connect(notices.append)
    prediction = _predict(qtbot, side)
    assert prediction.scale == pytest.approx(Segmenter.load(old).scale_policy.long_side(256, 640))
    assert "this model has no stone size" in notices[-1]
    assert (
        len(dialogs.infos) == 1 and "does not record its standard stone size" in dialogs.infos[0][1]
    )
    _predict(qtbot, side)  # told once per model and scale
    assert len(dialogs.infos) == 1 and "no stone size" in notices[-1]
    with caplog.at_level(logging.WARNING, logger="stoneseg_core.inference.segmenter"):
        Segmenter.load(old, InferenceConfig(scale="stone-size"))
    assert "old-model" in caplog.text and "standard stone size" in caplog.text
    # a model that records it has nothing to say
    notices.clear()
    side.controller.set_active_model(trained_model)
    _predict(qtbot, side)
    assert "no stone size" not in notices[-1] and len(dialogs.infos) == 1


def test_predictions_keep_the_threshold_the_model_chose(trained_model, tmp_path):
    """Choosing a scale must not reset the model's own threshold to the default."""
    from stoneseg_gui.model.prediction_jobs import _segmenter

    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    config = json.loads((model / "config.json").read_text())
    config["threshold"] = 0.37
    (model / "config.json").write_text(json.dumps(config))
    for scale in ("auto", "stone-size", "long-side", "training"):
        segmenter = _segmenter(model, scale)
        assert segmenter.config.threshold == pytest.approx(0.37)
        assert segmenter.config.scale == scale
