""" "StoneSeg stones": a labels layer split into single stones and measured on a napari thread
worker (``jobs.stones_job``: ``grains.analyse_mask``, as the Grains panel), shown as a
labels layer "<photo> stones" whose features are the measurements, the app's table of
stones (one row per stone) and its grain-size curve with D16, D50 and D84.
"""

from __future__ import annotations

import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton
from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtWidgets import QTableView

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import GrainOptions, Stone
from stoneseg_core.grains.document import describe_options
from stoneseg_gui.grains.plot import CurveView, GrainPlot
from stoneseg_gui.grains.table import StoneTableModel

from .common import Job, check_binding, labels_picker, put_layer, show_error
from .jobs import StonesResult, stones_job
from .layers import PREDICTION_KEY, STONES, source_of, stones_name


def stone_features(stones: list[Stone] | tuple[Stone, ...]) -> pd.DataFrame:
    """The measurements as a napari features table: one row per stone, ``index`` its label
    (napari shows a stone's row where the pointer is)."""
    scaled = bool(stones) and stones[0].mm_per_px is not None
    unit = "mm" if scaled else "px"
    return pd.DataFrame(
        {
            "index": [s.label for s in stones],
            f"b_axis_{unit}": [s.b_axis_mm if scaled else s.b_axis_px for s in stones],
            f"a_axis_{unit}": [s.a_axis_mm if scaled else s.a_axis_px for s in stones],
            "area_px": [s.area_px for s in stones],
            "circularity": [s.circularity for s in stones],
            "touches_edge": [s.touches_edge for s in stones],
            "excluded": [s.excluded for s in stones],
        }
    )


class StonesWidget(Container):
    def __init__(self, napari_viewer) -> None:
        check_binding()
        self.viewer = napari_viewer
        self.layer = labels_picker(napari_viewer)
        self.mm_per_px = FloatSpinBox(label="mm per pixel", min=0.0, max=1e4, step=0.01, value=0.0)
        self.mm_per_px.tooltip = "The photo's scale; 0: none (sizes in pixels)"
        self.weighting = ComboBox(label="curve", choices=["count", "area"], value="count")
        self.exclude_edge = CheckBox(text="leave out stones cut by the edge", value=False)
        self.keep_ids = CheckBox(text="measure the layer's stones as they are", value=False)
        self.split_button = PushButton(text="Split into stones")
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.layer,
                self.mm_per_px,
                self.weighting,
                self.exclude_edge,
                self.keep_ids,
                self.split_button,
                self.status,
            ]
        )
        self.table_model = StoneTableModel(self.native)
        proxy = QSortFilterProxyModel(self.native)
        proxy.setSourceModel(self.table_model)
        proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setModel(proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # stone 1 first
        self.table.verticalHeader().setVisible(False)
        self.plot = GrainPlot()
        self.plot.setMinimumHeight(220)
        self.native.layout().addWidget(self.table, 1)
        self.native.layout().addWidget(self.plot, 1)
        self.job = Job(self.status, "Splitting", self._running)
        self.result: StonesResult | None = None
        self.target = None  # the labels layer being split
        self.last_layer = None  # the stones layer the last run made
        self.split_button.changed.connect(self.split)
        self.layer.changed.connect(self._labels_changed)

    def _labels_changed(self, _value=None) -> None:
        layer = self.layer.value
        self.keep_ids.value = layer is not None and source_of(layer).kind == STONES

    def options(self) -> GrainOptions:
        return GrainOptions(exclude_edge=self.exclude_edge.value, weighting=self.weighting.value)

    def split(self, _value=None) -> bool:
        """Start splitting the chosen labels layer; False (and why) when it cannot start."""
        layer = self.layer.value
        if layer is None:
            self.status.value = "Choose a labels layer (a mask or a prediction)."
            return False
        self.target = layer
        scale = float(self.mm_per_px.value) or None
        source = source_of(layer)
        name = source.image.name if source.image is not None else layer.name
        prediction = layer.metadata.get(PREDICTION_KEY)
        args = (layer.data, prediction, self.options(), scale, name, self.keep_ids.value)
        try:
            self.job.start(stones_job, 2, self._on_split, *args)
        except StonesegError as exc:
            self.status.value = str(exc)
            show_error(str(exc))
            return False
        return True

    def _running(self, running: bool) -> None:
        self.split_button.enabled = not running

    def _on_split(self, result: StonesResult) -> None:
        self.result = result
        stones = result.grains.stones
        source = source_of(self.target)
        stem = source.image.stem if source.image is not None else self.target.name
        if result.kept_ids:
            layer = self.target  # measured as they are: the layer keeps its ids
            layer.features = stone_features(stones)
        else:
            kwargs = {
                "name": stones_name(stem),
                "opacity": 0.6,
                "metadata": source.as_kind(STONES).metadata(),
                "features": stone_features(stones),
            }
            layer = put_layer(self.viewer, (result.labels, kwargs, "labels"))
        self.last_layer = layer
        self.table_model.set_stones(stones)
        options = self.options()
        words = describe_options(options, result.grains.mm_per_px)
        marks = result.curve.percentiles(options.percentiles)
        view = CurveView(result.curve, stem, len(stones), words, marks, result.intervals)
        self.plot.show_view(view)
        self.status.value = view.caption()
