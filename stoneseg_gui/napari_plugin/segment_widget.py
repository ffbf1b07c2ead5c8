""" "Segment with a StoneSeg model": an image layer through a model folder on a napari thread
worker (``jobs.segment_job``: ``Segmenter.load(folder).predict(image)``), into a labels
layer "<image> prediction" (1 = stone) that keeps the model's probability maps for
splitting it into stones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import Container, FileEdit, Label, ProgressBar, PushButton

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.segmenter import Prediction
from stoneseg_core.io.project import Project

from .common import Job, check_binding, image_picker, put_layer, show_error
from .jobs import SegmenterCache, keep_triton_out, segment_job
from .layers import PREDICTION, PREDICTION_KEY, LayerSource, prediction_name, rgb_of, source_of


class SegmentWidget(Container):
    def __init__(self, napari_viewer) -> None:
        check_binding()
        self.viewer = napari_viewer
        self.image = image_picker(napari_viewer)
        self.model = FileEdit(mode="d", label="model folder")
        self.segment_button = PushButton(text="Segment")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0, visible=False)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.image,
                self.model,
                self.segment_button,
                self.stop_button,
                self.progress,
                self.status,
            ]
        )
        self.cache = SegmenterCache()
        self.job = Job(self.status, "Segmenting", self._running)
        self.target = None  # the image layer being segmented
        self.last_layer = None  # the labels layer the last run made (for scripts and tests)
        self.segment_button.changed.connect(self.segment)
        self.stop_button.changed.connect(lambda _=None: self.job.stop())
        self.image.changed.connect(self._suggest_model)

    def model_folder(self) -> Path | None:
        text = self.model.line_edit.value.strip()
        return Path(text) if text else None

    def _suggest_model(self, _value=None) -> None:
        """The project's active model, for a photo of a project, when none is chosen yet."""
        layer = self.image.value
        source = source_of(layer) if layer is not None else LayerSource()
        if self.model_folder() is not None or source.project is None:
            return
        try:
            active = Project.open(source.project).active_model()
        except StonesegError:
            return
        if active is not None:
            self.model.value = active

    def segment(self, _value=None) -> bool:
        """Start segmenting the chosen image layer; False (and why, in the status line)
        when it cannot start."""
        layer, model = self.image.value, self.model_folder()
        if layer is None or model is None:
            self.status.value = "Choose an image layer and a model folder."
            return False
        try:
            image = rgb_of(layer.data)
            keep_triton_out()  # before torch loads anything in this OpenGL process
            self.target = layer
            self.job.start(segment_job, 2, self._on_segmented, self.cache, model, image)
        except StonesegError as exc:
            self.status.value = str(exc)
            show_error(str(exc))
            return False
        return True

    def _running(self, running: bool) -> None:
        self.segment_button.enabled = not running
        self.stop_button.enabled = running
        self.progress.visible = running
        self.progress.max = 0 if running else 1  # busy while the network runs

    def _on_segmented(self, prediction: Prediction) -> None:
        layer = self.target
        source = source_of(layer)
        stem = source.image.stem if source.image is not None else layer.name
        metadata = {**source.as_kind(PREDICTION).metadata(), PREDICTION_KEY: prediction}
        kwargs = {"name": prediction_name(stem), "opacity": 0.5, "metadata": metadata}
        mask = (prediction.mask > 0).view(np.uint8)
        self.last_layer = put_layer(self.viewer, (mask, kwargs, "labels"))
        n = int(np.count_nonzero(mask))
        self.status.value = (
            f"{self.last_layer.name}: {100.0 * n / max(1, mask.size):.1f} % stone "
            f"(at working scale {prediction.scale:.2f})."
        )
