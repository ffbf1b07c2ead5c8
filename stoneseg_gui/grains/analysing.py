"""Analyse grains: the checks before it, the job on a worker thread, the result kept.

``Analysing.start`` splits and measures the photo shown (its mask, or the model's
prediction with its probability, as the ``GrainsController`` chooses) with
``analyse_with_edits`` on a worker, replaying the user's cuts and merges. The result is
kept in the controller and announced by ``analysed``; ``GrainSide`` shows it.

A mask over 50 MP (``grains.tiled.is_big``: an orthomosaic's) cannot be split whole (about
60 bytes a pixel). It is measured window by window as ``stoneseg grains`` does
(``iter_grains_tiled``, on a copy of the mask taken on the worker, with progress and
cancel) into a folder the user picks: ``<stem>_stones.csv``, ``<stem>_stones.geojson``
and ``<stem>_instances.tif``; the window tells the count and the D16/D50/D84, and draws
the stones' outlines from that TIFF (``big_analysed``; ``big_stones.BigStonesItem``, from
1/4 zoom in); they are not edited by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSignalBlocker, Signal

from stoneseg_core.editing.snapshot import MaskSnapshot
from stoneseg_core.grains import tiled
from stoneseg_core.grains.distribution import DEFAULT_BOOTSTRAP, distribution_of, intervals_of
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
    big_analysed = Signal(object, object)  # the photo's Path, grains.tiled.TiledGrains

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
        return self._worker is not None and self._worker.is_working

    def start(self) -> bool:
        """Split and measure the photo shown, on a worker thread."""
        document, path = self.host.current_document(), self.host.current_image_path()
        if document is None or path is None:
            self.notice("Open a photo first.")
            return False
        if self.is_running:
            return False
        options = self.panel.options()
        if options.min_size_mm is not None and self.controller.scale is None:
            self.dialogs.error(
                "Set the scale first",
                "The minimum size is in millimetres, so this photo needs a scale: type it, "
                "measure a scale bar (K), or give the minimum in pixels.",
            )
            return False
        if tiled.is_big(document.shape):
            return self._start_big(document, path, options)
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
            min_stone_px=request.min_stone_px,
        )
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self.running_changed.emit)
        self._worker = worker
        self.running_changed.emit()
        return True

    # ------------------------------------------------------------------ a mask over 50 MP
    def _start_big(self, document, path: Path, options) -> bool:
        """Measure a big mask window by window into a folder the user picks (module doc)."""
        h, w = document.shape
        project = self.host.project
        start = project.data_dir if project is not None else path.parent
        folder = self.dialogs.choose_folder(
            f"{path.name} is {w} x {h} px ({w * h / 1e6:.0f} MP): too big to split whole in "
            "the window. Folder for its stones, measured window by window",
            start,
        )
        if folder is None:
            return False
        display = self.host.session.current_display()
        georef = getattr(display, "georeference", None)
        self.request = None
        self.panel.set_status(f"Analysing {path.name} window by window…")
        snapshot = document.snapshot()  # the mask as it is now, copied on the worker
        worker = start_worker(
            analyse_big_mask_job,
            snapshot,
            Path(folder),
            path.stem,
            mm_per_px=self.controller.scale,
            options=options,
            georef=georef,
            name=path.name,
        )
        worker.progressed.connect(
            lambda event, name=path.name: self.panel.set_status(
                f"Analysing {name} window by window: {event.window} of {event.windows} "
                f"({event.stones} stones so far; Grains > Cancel stops it)"
            )
        )
        worker.succeeded.connect(lambda result, p=path: self._on_big_succeeded(p, result))
        worker.stopped.connect(lambda p=path: self._on_big_cancelled(p))  # before it began
        worker.failed.connect(self._on_failed)
        worker.finished.connect(snapshot.release)
        worker.finished.connect(self.running_changed.emit)
        self._worker = worker
        self.running_changed.emit()
        return True

    def cancel(self) -> bool:
        """Stop a window-by-window analysis (at its next window). False if none runs."""
        if self._worker is None or not self._worker.is_running:
            return False
        self._worker.request_stop()
        return True

    def _on_big_cancelled(self, path: Path) -> None:
        self.panel.set_status(f"Analysis of {path.name} cancelled; nothing was written.")
        self.notice(f"Analysis of {path.name} cancelled.")

    def _on_big_succeeded(self, path: Path, result) -> None:
        if result.cancelled:
            self._on_big_cancelled(path)
            return
        if result.instances_path is not None:
            self.big_analysed.emit(path, result)
        stones = result.grains.stones
        kept = [s for s in stones if not s.excluded]
        curve = distribution_of(stones)
        ds = curve.percentiles((16, 50, 84))
        cis = intervals_of(stones, "count", (16, 50, 84))  # a few ms, however many stones
        unit = curve.unit
        sizes = ", ".join(
            f"D{p:g} {v:.3g} {unit}" + (f" ({cis[p][0]:.3g}–{cis[p][1]:.3g})" if cis[p] else "")
            if v is not None
            else f"D{p:g} –"
            for p, v in ds.items()
        )
        text = (
            f"{len(kept)} stones measured ({len(stones) - len(kept)} excluded) in "
            f"{result.windows} windows, {result.seconds:.0f} s: {sizes}"
            + (
                f" (in brackets: {100 * DEFAULT_BOOTSTRAP.level:g} % confidence intervals)."
                if any(cis.values())
                else "."
            )
        )
        self.panel.set_status(text)
        written = [p for p in (result.csv_path, result.geojson_path, result.instances_path) if p]
        self.dialogs.info(
            f"Stones of {path.name}",
            text
            + "\n\nWritten:\n"
            + "\n".join(f"  •  {p}" for p in written)
            + "\n\nTheir outlines are drawn on the photo from 25 % zoom in.",
        )

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
        # cuts and merges replayed (on a mask edited since, too): their per-stone labels
        # written afresh; none left: the ones the app wrote removed
        self.controller.save_instances(self.host.current_document())
        self.analysed.emit(path, replayed)


def analyse_big_mask_job(
    snapshot: MaskSnapshot, folder: Path, stem: str, should_stop=None, **kwargs
):
    """On the worker: copy the mask from its snapshot, then ``iter_grains_tiled`` (yields
    ``TiledEvent``; returns ``TiledGrains``)."""
    mask = snapshot.copy()
    return (
        yield from tiled.iter_grains_tiled(mask, folder, stem, should_stop=should_stop, **kwargs)
    )
