"""Segmenting in napari with a real (tiny, trained) StoneSeg model on a thread worker."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from synthetic import make_scene

from stoneseg_core.inference.segmenter import Segmenter


def test_segment_widget_makes_the_models_mask_as_a_labels_layer(viewer, stone_model, wait_for_job):
    image, _ = make_scene(np.random.default_rng(11), 128, 160)
    viewer.add_image(image, name="gravel", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Segment with a StoneSeg model")
    assert widget.image.value.name == "gravel"
    widget.model.value = stone_model
    assert widget.segment()
    assert widget.job.running and not widget.segment_button.enabled
    wait_for_job(widget)
    layer = viewer.layers["gravel prediction"]
    assert isinstance(layer, Labels) and widget.last_layer.name == layer.name
    assert layer.data.shape == image.shape[:2] and set(np.unique(layer.data)) <= {0, 1}
    # exactly what the core gives (the app's call), and something found
    expected = Segmenter.load(stone_model).predict(image)
    np.testing.assert_array_equal(layer.data, expected.mask > 0)
    assert 0 < layer.data.mean() < 1
    prediction = layer.metadata["stoneseg_prediction"]
    assert prediction.probability.shape == image.shape[:2]
    assert widget.segment_button.enabled and "stone" in widget.status.value


def test_segment_widget_says_what_is_missing(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Segment with a StoneSeg model")
    assert not widget.segment()
    assert "Choose an image layer" in widget.status.value
