"""Shared fixtures: real image and mask files made in tmp_path, and one tiny trained model."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # tests never need a screen

import pytest
from synthetic import make_dataset, make_scene, write_rgb  # noqa: F401

# The napari plugin's tests need a real X display (napari draws with OpenGL, which Qt's
# offscreen platform lacks): tests/test_napari_plugin.py runs them in a process of their own
# under Xvfb, with this variable set.
if os.environ.get("STONESEG_NAPARI_TESTS") != "1":
    collect_ignore = ["napari"]


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """Exported ONNX networks go to a folder of the test session, never the user's cache
    (keyed by the weights, so tests that share a model share its export)."""
    folder = tmp_path_factory.mktemp("stoneseg-cache")
    os.environ["STONESEG_CACHE_DIR"] = str(folder)  # subprocesses (the CLI tests) too
    return folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A small real U-Net trained for a few epochs on synthetic scenes (shared by tests)."""
    from stoneseg_core.io.project import Project
    from stoneseg_core.model.config import TrainConfig
    from stoneseg_core.training.train import run_training

    # 128-px crops: with 64 px the 5-level encoder's bottleneck is 2x2 and mostly padding,
    # and such a model behaves unlike a real one on larger inputs.
    root = make_dataset(tmp_path_factory.mktemp("train") / "data", n=5, size=(128, 160), seed=1)
    cfg = TrainConfig(
        epochs=4, crop=128, work_size=160, batch_size=4, samples_per_image=4, lr=5e-3, seed=0
    )
    out = tmp_path_factory.mktemp("model") / "model"
    run_training(Project.open(root).labelled_pairs(), out, cfg)
    return out


@pytest.fixture(scope="session")
def mask_model(tmp_path_factory) -> Path:
    """As ``trained_model``, with the one-channel "mask" target of models before the boundary
    target became the default (what older model files hold)."""
    from stoneseg_core.io.project import Project
    from stoneseg_core.model.config import TrainConfig
    from stoneseg_core.training.train import run_training

    root = make_dataset(tmp_path_factory.mktemp("train1") / "data", n=5, size=(128, 160), seed=1)
    cfg = TrainConfig(
        epochs=4,
        crop=128,
        work_size=160,
        batch_size=4,
        samples_per_image=4,
        lr=5e-3,
        seed=0,
        target="mask",
    )
    out = tmp_path_factory.mktemp("model1") / "model"
    run_training(Project.open(root).labelled_pairs(), out, cfg)
    return out
