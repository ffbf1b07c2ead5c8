"""The model's stones for the smart tools (Click a stone, Box a stone).

A prediction of the photo shown is split into stones as the grain analysis splits a
prediction (``grains.split_stones`` with its probability, its boundary channel and its speck
floor, at the Grains panel's default settings), on a worker, and handed to the canvas
(``set_stone_layer``): a click then reads one stone's box. A prediction too big to split
whole (over 50 MP, ``grains.tiled.is_big``) gives its mask's pieces instead
(``editing.stone_layer.MaskPieces``). The split runs only once the tools want stones: the
canvas asks (``stones_wanted``) when such a tool is taken up or a click waits. A click of
Click a stone on a photo with no prediction yet has the photo predicted first (the Model
menu's Predict, ``ModelController.predict_current``, on its worker), then split; the click
applies when the stones arrive. With no model at all, the status bar says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, Signal, SignalInstance

from stoneseg_core.editing.stone_layer import LabelledStones, MaskPieces, StoneLayer
from stoneseg_core.grains.analyse import GrainOptions
from stoneseg_core.grains.split import split_stones
from stoneseg_core.grains.tiled import is_big
from stoneseg_core.inference.segmenter import Prediction

from ..workers import Worker, start_worker
from .controller import ModelController


def stone_layer_job(prediction: Prediction) -> StoneLayer:
    """The stones of ``prediction``, split as the Grains panel splits a prediction by default
    (on a worker: seconds for 24 MP); the mask's pieces for a mask too big to split whole."""
    mask = prediction.mask
    if is_big(mask.shape):
        return MaskPieces(mask, prediction.probability)
    options = GrainOptions()
    labels = split_stones(
        mask,
        prediction.probability,
        options.min_separation_px,
        options.neck_ratio,
        boundary=prediction.boundary,
        min_stone_px=prediction.min_stone_px,
    )
    return LabelledStones(labels, prediction.probability)


class StoneCanvas(Protocol):
    """The photo view (``editor.canvas.MaskCanvas``) as this module uses it."""

    stones_wanted: SignalInstance  # bool: a click waits for the stones

    @property
    def stone_layer(self) -> StoneLayer | None: ...

    def set_stone_layer(self, stones: StoneLayer | None) -> None: ...

    def cancel_tool(self) -> None: ...


class StoneHints(QObject):
    """Splits the model's predictions into stones for the canvas's smart tools."""

    notice = Signal(str)  # for the status bar

    def __init__(self, controller: ModelController, session, canvas: StoneCanvas, parent=None):
        super().__init__(parent)
        self.controller, self.session, self.canvas = controller, session, canvas
        self._predicted: tuple[Path, Prediction] | None = None  # the latest prediction
        self._splitting: tuple[Path, Prediction] | None = None  # what the worker splits
        self._split_done: Prediction | None = None  # what the canvas's stones came from
        self._wanted: Path | None = None  # the photo whose stones the tools asked for
        self._predicting: Path | None = None  # predicted because a click waits
        self._worker: Worker | None = None
        controller.prediction_ready.connect(self._on_prediction_ready)
        session.image_changed.connect(self._on_image_changed)
        canvas.stones_wanted.connect(self._on_stones_wanted)

    @property
    def is_splitting(self) -> bool:
        return self._worker is not None and self._worker.is_working

    def _on_image_changed(self, path: Path | None) -> None:
        if self._predicted is not None and self._predicted[0] != path:
            self._predicted = None  # a photo left: its prediction is not kept
        self._split_done = None

    def _on_prediction_ready(self, path: Path) -> None:
        prediction = self.controller.prediction
        if prediction is None:
            return
        self._predicted = (path, prediction)
        if self._predicting == path:
            self._predicting = None
        if self._wanted == path or self.canvas.stone_layer is not None:
            self._split(path, prediction)  # the tools use stones: keep them the model's latest

    def _on_stones_wanted(self, click_waits: bool) -> None:
        path = self.session.current_image_path()
        if path is None:
            return
        self._wanted = path
        if self._splitting is not None and self._splitting[0] == path and self.is_splitting:
            if click_waits:
                self.notice.emit(
                    "Splitting the model's prediction into stones; the click applies when done."
                )
            return
        if self._predicted is not None and self._predicted[0] == path:
            self._split(path, self._predicted[1])
            if click_waits:
                self.notice.emit(
                    "Splitting the model's prediction into stones; the click applies when done."
                )
            return
        if click_waits:
            self._predict_first(path)

    def _predict_first(self, path: Path) -> None:
        """A click waits and this photo has no prediction: predict it (or say why not)."""
        c = self.controller
        if c.predicting_model() is None:
            self.canvas.cancel_tool()
            self.notice.emit(
                "Click a stone adds the stones a model predicts, and there is no model yet: "
                "train one (Ctrl+T) or choose one in Models. Box a stone and the magic wand "
                "work without a model."
            )
            return
        if self._predicting == path and c.is_busy:
            self.notice.emit(f"Predicting {path.name}; the click applies when it is done.")
            return
        if not c.predict_current():  # another task runs: the controller said so
            self.canvas.cancel_tool()
            return
        self._predicting = path
        self.notice.emit(
            f"No prediction of {path.name} yet: predicting it first (in the background); "
            "the stone is added when it is ready."
        )

    def _split(self, path: Path, prediction: Prediction) -> None:
        if self._split_done is prediction and self.canvas.stone_layer is not None:
            return  # the canvas has these stones already
        if self._splitting is not None and self._splitting[1] is prediction and self.is_splitting:
            return
        self._splitting = (path, prediction)
        self.notice.emit(  # seconds on a big photo: say what the tools wait for
            f"Finding the stones in the prediction of {path.name} (in the background)…"
        )
        worker = start_worker(stone_layer_job, prediction)
        worker.succeeded.connect(
            lambda stones, p=path, pr=prediction: self._on_split(p, pr, stones)
        )
        worker.failed.connect(
            lambda message: self.notice.emit(f"Could not split the prediction: {message}")
        )
        self._worker = worker

    def _on_split(self, path: Path, prediction: Prediction, stones: StoneLayer) -> None:
        if self._splitting is None or self._splitting[1] is not prediction:
            return  # a later prediction replaced it
        self._splitting = None
        if path != self.session.current_image_path():
            return  # the user moved on
        self._split_done = prediction
        count = getattr(stones, "count", None)
        self.notice.emit(
            f"{count} predicted stones ready to click or box."
            if count is not None
            else "The prediction's stones are ready (its pieces: too big to split whole)."
        )
        self.canvas.set_stone_layer(stones)  # applies a waiting click (which may say more)
