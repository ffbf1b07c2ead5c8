"""A prediction shown over a mask: outlines that never blend with the mask, a legend that
says which colour is which, and the scale said in words."""

from __future__ import annotations

import shutil

import numpy as np
from guihelpers import make_project, wait_loaded
from PySide6.QtGui import QColor
from skimage.draw import disk

from stoneseg_core.editing.region import Region
from stoneseg_gui.model.prediction_jobs import prediction_zoom
from stoneseg_gui.widgets.theme import PREDICTION_COLOR, STONE_COLOR


def test_scale_in_words():
    assert prediction_zoom(1.54) == "1.5x"
    assert prediction_zoom(2.0) == "2x"
    assert prediction_zoom(0.25) == "0.25x"


def test_a_prediction_over_a_mask_is_drawn_as_outlines_with_a_legend(
    qtbot, window, tmp_path, trained_model
):
    mask = np.zeros((100, 160), np.uint8)
    rr, cc = disk((50, 50), 25, shape=mask.shape)
    mask[rr, cc] = 255
    root = make_project(tmp_path / "proj", names=("a.png",), size=(160, 100), masks={"a": mask})
    shutil.copytree(trained_model, root / "models" / "run-1")
    window.open_folder(root)
    wait_loaded(qtbot, window)
    side = window.model_side
    side.controller.set_active_model(root / "models" / "run-1")
    notices = []
    side.controller.notice.connect(notices.append)
    side.actions.predict.trigger()
    qtbot.waitUntil(lambda: side.controller.prediction is not None, timeout=120_000)
    canvas = window.canvas
    assert canvas.prediction_outlined()  # the photo has a mask with stones
    assert canvas.legend_text().startswith("■ your mask (cyan)")
    assert "prediction (orange outlines)" in canvas.legend_text()
    assert notices[-1].startswith("Prediction shown in orange (predicted at ")
    assert "seen at" not in notices[-1] and "zoom" in notices[-1]

    # where the mask lies, the mask's own colour shows through: no olive blend of the two
    canvas.fit_to_window()
    qtbot.wait(100)
    image = canvas.viewport().grab().toImage()
    centre = canvas.mapFromScene(50 + 0.5, 50 + 0.5)
    pixel = QColor(image.pixel(centre))
    blend = QColor(
        *(int((a + b) / 2) for a, b in zip(STONE_COLOR.getRgb()[:3], PREDICTION_COLOR.getRgb()[:3]))
    )
    assert abs(pixel.red() - blend.red()) + abs(pixel.green() - blend.green()) > 40

    # no mask stones: the prediction is filled, the legend says so; hidden: no legend
    window.current_document().replace(np.zeros_like(mask), "test clear")
    canvas.set_prediction(side.controller.prediction.mask)
    assert not canvas.prediction_outlined() and "orange filled" in canvas.legend_text()
    # the first stone painted (here a click of Click a stone would do the same): outlines
    window.current_document().paint_pixels(
        Region(40, 40, 60, 60), np.ones((20, 20), bool), 255, "test stone"
    )
    assert canvas.prediction_item.outline and "orange outlines" in canvas.legend_text()
    canvas.set_prediction(None)
    assert canvas.legend_text() == ""
