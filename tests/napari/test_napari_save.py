"""Saving a labels layer from napari into the project: mask and per-stone labels, pixel-exact."""

from __future__ import annotations

import json

import cv2
import numpy as np

from stoneseg_core.io.project import Project
from stoneseg_core.io.project_lock import ProjectLock


def stones_of(project) -> np.ndarray:
    """Per-stone ids 1..N for img0: its mask's pieces, with one more stone painted in."""
    mask = cv2.imread(str(project / "masks" / "img0.png"), cv2.IMREAD_GRAYSCALE)
    _, labels = cv2.connectedComponents((mask > 0).astype(np.uint8))
    labels[2:8, 2:8] = labels.max() + 1
    return labels.astype(np.int32)


def test_save_writes_mask_and_instances_pixel_exact(viewer, project):
    labels = stones_of(project)
    layers = viewer.open(str(project), plugin="stoneseg")
    stones = next(layer for layer in layers if layer.name == "img0 stones")
    stones.data = labels
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Save to StoneSeg project")
    widget.layer.value = stones
    # the layer says where it belongs and that it holds single stones
    assert widget.project_folder() == project
    assert widget.photo.value == "img0.png"
    assert widget.per_stone.value and widget.reviewed.value
    (project / "instances" / "img0.png").unlink()  # the fixture's file is the user's own
    saved = widget.save()
    assert saved is not None, widget.status.value
    mask = cv2.imread(str(project / "masks" / "img0.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, np.where(labels > 0, 255, 0))
    written = cv2.imread(str(project / "instances" / "img0.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16
    np.testing.assert_array_equal(written, labels)
    assert Project.open(project).wrote_instances(project / "images" / "img0.png")
    assert "masks/img0.png" in widget.status.value


def test_save_keeps_a_prediction_unreviewed_and_never_overwrites_users_labels(viewer, project):
    layers = viewer.open(str(project), plugin="stoneseg")
    prediction = next(layer for layer in layers if layer.name == "img1 mask")
    prediction.data[:10, :10] = 1
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Save to StoneSeg project")
    widget.layer.value = prediction
    assert widget.photo.value == "img1.png" and not widget.reviewed.value
    assert not widget.per_stone.value
    assert widget.save() is not None
    mask = cv2.imread(str(project / "masks" / "img1.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, np.where(prediction.data > 0, 255, 0))
    state = json.loads((project / "stoneseg.json").read_text())
    assert state["predicted"] == ["img1"]  # still never trained on
    # img0's instances/ file is the user's: refused, and said so
    stones = next(layer for layer in layers if layer.name == "img0 stones")
    widget.layer.value = stones
    before = (project / "instances" / "img0.png").read_bytes()
    assert widget.save() is None
    assert "did not write" in widget.status.value
    assert (project / "instances" / "img0.png").read_bytes() == before


def test_save_refuses_while_a_stoneseg_window_holds_the_project(viewer, project):
    ProjectLock(project).take_over()  # as a StoneSeg window with the project open (alive)
    layers = viewer.open(str(project), plugin="stoneseg")
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Save to StoneSeg project")
    widget.layer.value = next(layer for layer in layers if layer.name == "img0 mask")
    before = (project / "masks" / "img0.png").read_bytes()
    assert widget.save() is None
    assert "is open in another StoneSeg window" in widget.status.value
    assert (project / "masks" / "img0.png").read_bytes() == before
