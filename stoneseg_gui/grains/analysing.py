"""Analyse grains: the checks before it, the job on a worker thread, the result kept.

``Analysing.start`` splits and measures the photo shown (its mask, or the model's
prediction with its probability, as the ``GrainsController`` chooses) with
``analyse_with_edits`` on a worker, replaying the user's cuts and merges. The result is
kept in the controller and announced by ``analysed``; ``GrainSide`` shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSignalBlocker, Signal

from stoneseg_core.grains import tiled
from stoneseg_core.grains.document import analyse_with_edits

from ..host import WindowHost
from ..workers import Worker, start_worker
from .controller import AnalysisRequest, GrainsController
from .panel import GrainPanel


class Analysing(QObject):
    """The "Analyse grains" job of a window's grain side (one at a time)."""

    analysed = Signal(object, str)  # the photo's Path, the note on the edits replayed ("": none)
    failed = Signal()  # after saying why
    running_changed = Signal()  # started or finished

    def __init__(
        self,
        host: WindowHost,
        controller: GrainsController,
        panel: GrainPanel,
        notice: Callable[[str], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.dialogs = host.dialogs
        self.controller = controller
        self.panel = panel
        self.notice = notice
        self._model = host.model_side.controller
        self._worker: Worker | None = None
        self.request: AnalysisRequest | None = None  # the one being analysed

    @property
    def is_running(self) -> bool:
        return self._worker is not None and self._worker.is_running

    def start(self) -> bool:
        """Split and measure the photo shown, on a worker thread."""
        document, path = self.host.current_document(), self.host.current_image_path()
        if document is None or path is None:
            self.notice("Open a photo first.")
            return False
        if self.is_running:
            return False
        if tiled.is_big(document.shape):
            # the whole-mask split needs ~60 bytes a pixel: refuse before memory runs out
            h, w = document.shape
            self.dialogs.error(
                "Photo too big to analyse in the window",
                f"{path.name} is {w} x {h} px ({w * h / 1e6:.0f} MP). Splitting its stones here "
                f"would need about {60 * w * h / 1e9:.0f} GB of memory, so the window analyses "
                f"photos of up to {tiled.TILED_ABOVE_PX / 1e6:.0f} MP. Your mask is kept: save "
                "it, then measure this photo with `stoneseg grains`, which splits it window by "
                "window in bounded memory.",
            )
            return False
        options = self.panel.options()
        if options.min_size_mm is not None and self.controller.scale is None:
            self.dialogs.error(
                "Set the scale first",
                "The minimum size is in millimetres, so this photo needs a scale: type it, "
                "measure a scale bar (K), or give the minimum in pixels.",
            )
            return False
        shown = self._model.prediction
        request = self.controller.request(document, path, options, shown)
        if request.options.min_separation_px != options.min_separation_px:
            with QSignalBlocker(self.panel.separation):
                self.panel.separation.setValue(request.options.min_separation_px)
        self.request = request
        self.panel.set_status(f"Analysing {path.name}…")
        worker = start_worker(
            analyse_with_edits,
            request.mask,
            request.probability,
            self.controller.scale,
            request.options,
            path.name,
            boundary=request.boundary,
            edits=request.edits,
        )
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self.running_changed.emit)
        self._worker = worker
        self.running_changed.emit()
        return True

    def _on_failed(self, message: str) -> None:
        self.request = None
        self.dialogs.error("Grain analysis failed", message)
        self.failed.emit()

    def _on_succeeded(self, result) -> None:
        request, self.request = self.request, None
        if request is None:
            return
        path: Path = request.path
        if path != self.host.current_image_path():
            return  # the user moved on
        replayed, save_error = self.controller.accept(request, result, self.panel.options())
        if save_error is not None:
            self.dialogs.error("Cannot save the stone edits", save_error)
        self.analysed.emit(path, replayed)
