"""The napari plugin's tests: a real napari viewer (napari's ``make_napari_viewer``, from its
pytest plugin: ``-p napari``), on a real X display (Xvfb, platform xcb). Run by
tests/test_napari_plugin.py in a process of their own; by hand:
``STONESEG_NAPARI_TESTS=1 xvfb-run -a python -m pytest tests/napari -p napari``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic import make_dataset, make_scene, write_rgb

if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
    raise RuntimeError(
        "napari needs OpenGL, which Qt's offscreen platform lacks: run these tests under Xvfb "
        "with QT_QPA_PLATFORM=xcb (python -m pytest tests/test_napari_plugin.py does)."
    )


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """The parent test session's ONNX exports (STONESEG_TEST_CACHE: its model is exported
    once), else a folder of this session, never the user's cache."""
    given = os.environ.get("STONESEG_TEST_CACHE")
    folder = Path(given) if given else tmp_path_factory.mktemp("stoneseg-cache")
    os.environ["STONESEG_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture
def stone_model(request) -> Path:
    """The tiny trained U-Net: the parent test session's (STONESEG_TEST_MODEL), or trained
    here (``trained_model``) when these tests run by hand."""
    given = os.environ.get("STONESEG_TEST_MODEL")
    return Path(given) if given else request.getfixturevalue("trained_model")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project: img0 labelled (mask + per-stone labels), img1 an unreviewed prediction,
    img2 without a mask."""
    root = make_dataset(tmp_path / "project", n=2, size=(96, 128), seed=4)
    image, _ = make_scene(np.random.default_rng(9), 96, 128)
    write_rgb(root / "images" / "img2.png", image)
    mask = cv2.imread(str(root / "masks" / "img0.png"), cv2.IMREAD_GRAYSCALE)
    _, stones = cv2.connectedComponents((mask > 0).astype(np.uint8))
    (root / "instances").mkdir()
    cv2.imwrite(str(root / "instances" / "img0.png"), stones.astype(np.uint16))
    (root / "stoneseg.json").write_text(json.dumps({"predicted": ["img1"]}))
    return root


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def wait_for_job(qtbot):
    """``wait_for_job(widget)``: until the widget's napari thread worker has finished."""

    def wait(widget, timeout_ms: int = 120_000) -> None:
        qtbot.waitUntil(lambda: not widget.job.running, timeout=timeout_ms)

    return wait
