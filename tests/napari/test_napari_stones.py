"""Splitting a labels layer into stones in napari: the stones layer, its features, the table
and the grain-size curve."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from skimage.draw import disk

# six discs that touch neither each other nor the edge: (row, column, radius)
DISCS = ((30, 30, 12), (30, 90, 9), (30, 150, 15), (90, 30, 14), (90, 90, 10), (90, 150, 11))


def scene() -> np.ndarray:
    labels = np.zeros((120, 190), np.int32)
    for k, (r, c, radius) in enumerate(DISCS, start=1):
        labels[disk((r, c), radius, shape=labels.shape)] = k
    return labels


def test_stones_widget_has_one_row_per_stone(viewer, wait_for_job):
    truth = scene()
    viewer.add_labels((truth > 0).astype(np.uint8), name="discs")
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Stones and grain sizes")
    assert widget.layer.value.name == "discs"
    widget.mm_per_px.value = 0.5
    assert widget.split()
    wait_for_job(widget)
    stones = viewer.layers["discs stones"]
    assert isinstance(stones, Labels) and widget.last_layer.name == stones.name
    # one stone per disc, exactly where the disc is
    assert len(np.unique(stones.data)) == len(DISCS) + 1
    for k in range(1, len(DISCS) + 1):
        assert len(np.unique(stones.data[truth == k])) == 1
    assert widget.table_model.rowCount() == len(DISCS)
    assert widget.table.model().rowCount() == len(DISCS)  # the sorting proxy shows them all
    features = stones.features
    assert len(features) == len(DISCS)
    assert sorted(features["index"]) == sorted(np.unique(stones.data[stones.data > 0]))
    # the b-axis of a disc is its diameter; 0.5 mm per pixel
    by_label = dict(zip(features["index"], features["b_axis_mm"]))
    for k, (*_, radius) in enumerate(DISCS, start=1):
        label = int(np.unique(stones.data[truth == k])[0])
        assert abs(by_label[label] - radius) < 0.6  # 2 r px * 0.5 mm/px
    assert widget.plot.curve_points() > 0
    assert {"D16", "D50", "D84"} <= set(widget.plot.mark_names())
    assert "6 stones" in widget.status.value


def test_stones_layer_measured_as_it_is(viewer, wait_for_job):
    truth = scene()
    layer = viewer.add_labels(truth, name="img0 stones")
    layer.metadata = {"stoneseg": {"project": "", "image": "", "kind": "stones"}}
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Stones and grain sizes")
    widget.layer.value = layer
    widget.layer.changed.emit(layer)
    assert widget.keep_ids.value  # a stones layer: measured, not split again
    assert widget.split()
    wait_for_job(widget)
    assert widget.last_layer.name == "img0 stones" and len(viewer.layers) == 1
    np.testing.assert_array_equal(layer.data, truth)
    assert sorted(layer.features["index"]) == list(range(1, len(DISCS) + 1))
    assert widget.table_model.rowCount() == len(DISCS)
