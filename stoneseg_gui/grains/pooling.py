"""Pool folder: the questions before it, the job on a worker thread, its progress on the panel.

``Pooling.start`` asks which masks to pool (the unreviewed predictions too?) and how to
scale the photos without a scale (the folder's scale, saved through ``ScaleSteps``), then
runs ``iter_grains_masks`` over them on a worker, with progress and cancel in the Grains
panel. The pooled ``GrainSummary`` is kept in the ``GrainsController`` and announced by
``pooled``; ``GrainSide`` shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from stoneseg_core.grains import GrainOptions
from stoneseg_core.jobs.grains_folder import GrainEvent, iter_grains_masks

from ..host import WindowHost
from ..workers import Worker, start_worker
from .controller import GrainsController
from .panel import GrainPanel
from .scale_steps import ScaleSteps


class Pooling(QObject):
    """The one "Pool folder" job of a window's grain side."""

    pooled = Signal(object)  # the GrainSummary, kept in the controller with its options
    running_changed = Signal()  # started or finished

    def __init__(
        self,
        host: WindowHost,
        controller: GrainsController,
        scales: ScaleSteps,
        panel: GrainPanel,
        notice: Callable[[str], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.dialogs = host.dialogs
        self.controller = controller
        self.scales = scales
        self.panel = panel
        self.notice = notice
        self._worker: Worker | None = None

    @property
    def is_running(self) -> bool:
        return self._worker is not None and self._worker.is_working

    # ------------------------------------------------------------------ the questions
    def _ask_pairs(self) -> list[tuple[Path, Path]] | None:
        """The (photo, mask) pairs to pool, asked of the user; None: not pooled (said why)."""
        project = self.host.project
        assert project is not None
        reviewed = project.labelled_pairs(include_predicted=False)
        every = project.labelled_pairs(include_predicted=True)
        pairs = reviewed
        if len(every) > len(reviewed):
            unreviewed = len(every) - len(reviewed)
            answer = self.dialogs.ask(
                "Pool the folder",
                f"{unreviewed} photo{'s have' if unreviewed != 1 else ' has'} a model's mask that "
                "nobody has reviewed. Pool them too?",
                ["Include them", "Reviewed masks only"],
                default="Reviewed masks only",
            )
            if answer == "Include them":
                pairs = every
        if not pairs:
            self.dialogs.error(
                "Nothing to pool",
                "No photo of this folder has a mask yet: paint one, or let a model predict them.",
            )
            return None
        return pairs

    def _ask_scales(self, pairs: list[tuple[Path, Path]]) -> bool:
        """Photos without a scale among some with one: give them one (the folder's), or stop."""
        scale_of = self.controller.scale_of
        stems = {image.stem for image, _ in pairs}
        unscaled = sorted(image.name for image, _ in pairs if scale_of(image.stem) is None)
        if unscaled and len(unscaled) < len(pairs):
            # one question, naming every unscaled photo, with a scale to give them all
            known = [scale_of(s) for s in stems if scale_of(s) is not None]
            offer = self.controller.scale or max(set(known), key=known.count)
            shown = ", ".join(unscaled[:10]) + (
                f" and {len(unscaled) - 10} more" if len(unscaled) > 10 else ""
            )
            choice = f"Use {offer:.6g} mm/px for them"
            answer = self.dialogs.ask(
                "Photos without a scale",
                f"{len(unscaled)} of {len(pairs)} photos have no scale, and millimetres and "
                f"pixels do not pool: {shown}.\nGive them {offer:.6g} mm per pixel (saved as "
                "the folder's scale, for a fixed camera)?",
                [choice, "Cancel"],
                default="Cancel",
            )
            if answer != choice or not self.scales.set_folder_scale(offer):
                self.notice("Not pooled: set the scale of those photos first.")
                return False
        return True

    # ------------------------------------------------------------------ the job
    def start(self) -> bool:
        """Measure every photo with a mask and pool the distribution, on a worker thread."""
        if self.host.project is None:
            self.notice("Open a folder first.")
            return False
        if self.is_running:
            return False
        if self.host.session.is_dirty and not self.host.save_current():
            return False
        pairs = self._ask_pairs()
        if pairs is None:
            return False
        options = self.panel.options().replace(use_probability=False)
        if not self._ask_scales(pairs):
            return False
        stems = {image.stem for image, _ in pairs}
        scales, given, edits = self.controller.pool_inputs(
            pairs, stems, self.host.current_document()
        )
        worker = start_worker(
            iter_grains_masks,
            pairs,
            scales,
            options,
            given,
            edits,
        )
        worker.progressed.connect(self._on_progressed)
        worker.succeeded.connect(lambda summary: self._on_succeeded(summary, options))
        worker.failed.connect(lambda message: self.dialogs.error("Pooling failed", message))
        worker.stopped.connect(lambda: self.notice("Pooling cancelled; nothing was pooled."))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.panel.show_progress(0, len(pairs), f"Measuring 0 of {len(pairs)} photos…")
        self.running_changed.emit()
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.request_stop()
            self.panel.show_progress(
                self.panel.progress.value(), self.panel.progress.maximum(), "Cancelling…"
            )

    def _on_progressed(self, event: GrainEvent) -> None:
        self.panel.show_progress(
            event.index, event.total, f"{event.index} of {event.total}: {event.image.name}"
        )

    def _on_succeeded(self, summary, options: GrainOptions) -> None:
        self.controller.pooled = summary
        self.controller.pooled_options = options
        self.pooled.emit(summary)

    def _on_finished(self) -> None:
        self.panel.hide_progress()
        self.running_changed.emit()
