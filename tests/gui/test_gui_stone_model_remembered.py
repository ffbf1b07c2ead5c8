"""The choice 'Start from the installed stone model' survives a restart: the Training
panel's settings are remembered when a run starts, while the panel's fields are disabled;
they were remembered as ImageNet, so the next start had the box unchecked."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from guihelpers import wait_loaded
from synthetic import make_scene, write_rgb

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
    folder = tmp_path / "bundled" / "stones-lite0"
    shutil.copytree(trained_model, folder)
    monkeypatch.setattr(controller_module, "installed_stone_model", lambda: folder)
    monkeypatch.setattr(panel_module, "installed_stone_model", lambda: folder)
    return folder


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
