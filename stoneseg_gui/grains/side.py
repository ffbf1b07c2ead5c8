"""Adds grain analysis to the main window: the Grains dock, its menu, actions and canvas tools.

The way the data travels: the photo's mask (or the model's prediction, with its
probability) -> ``analyse_with_edits`` on a worker thread (``analysing.py``) -> a
``GrainAnalysis`` (labels the user may cut and merge on the canvas, ``stone_tools.py``, and
their ``Stone`` measurements) -> the table, the numbered outlines on the canvas and the
cumulative curve -> CSV / PNG exports (``exports.py``). "Pool folder" (``pooling.py``) runs
``iter_grains_masks`` over the project's saved masks on a worker, with progress and cancel.
``GrainSide`` is the view: it wires the widgets, actions and jobs and tells the user; the
scale questions are in ``scale_steps.py``, the state and its core calls in
``GrainsController`` (``controller.py``), which keeps each photo's scale and hand edits in
the project's ``stoneseg.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import GrainOptions, ImageGrains
from stoneseg_core.grains.document import GrainAnalysis, Point
from stoneseg_core.io.project import Project
from stoneseg_core.jobs.grains_folder import GrainSummary

from ..host import WindowHost
from .actions import GrainActions, create_grain_actions
from .analysing import Analysing
from .controller import GrainsController
from .distribution_panel import DistributionPanel
from .exports import export_plot_png, export_stones_csv
from .panel import GrainPanel
from .plot import CurveView
from .pooling import Pooling
from .scale_steps import ScaleSteps
from .stone_tools import StoneTools
from .table import fmt_size

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ the side


class GrainSide(QObject):
    """Owns the Grains dock, its actions and canvas tools for one MainWindow."""

    notice = Signal(str)  # a short message for the status bar
    analysis_changed = Signal()  # analysed, cut, merged, restated or cleared

    MODES = ("scale", "pick", "split")

    def __init__(self, window: WindowHost) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.canvas = window.canvas
        self.dialogs = window.dialogs
        self._model = window.model_side.controller
        self.controller = GrainsController(lambda: self.window.project)
        self._scales = ScaleSteps(window, self.controller, self.notice.emit)

        self.actions = self._make_actions()
        self.panel = GrainPanel(self.actions)
        self.distribution = DistributionPanel(self.actions)
        self._analysing = Analysing(window, self.controller, self.panel, self.notice.emit, self)
        self._pooling = Pooling(
            window, self.controller, self._scales, self.panel, self.notice.emit, self
        )
        self.dock = window.add_dock(
            self.panel, Qt.DockWidgetArea.RightDockWidgetArea, "Grains", scroll=True
        )
        self.distribution_dock = window.add_dock(
            self.distribution, Qt.DockWidgetArea.BottomDockWidgetArea, "Grain sizes"
        )
        # where the docks go is the window's one layout (MainWindow.arrange_docks)
        self._build_menu()

        self.tools = StoneTools(
            window,
            self.controller,
            self.actions,
            self.panel,
            self._scales,
            self.notice.emit,
            self._on_scale_line,
            self,
        )
        self.outlines, self.guide = self.tools.outlines, self.tools.guide
        self.big_stones = self.tools.big_stones
        self._big_photo: Path | None = None  # the photo whose big_stones are drawn

        p = self.panel
        p.scale_edited.connect(self._on_panel_scale_edited)
        p.options_edited.connect(self._on_panel_options_edited)
        p.weighting_changed.connect(self._on_panel_options_edited)
        self.distribution.view_changed.connect(self._on_distribution_view_changed)
        window.image_changed.connect(self._on_window_image_changed)
        self.session.image_opened.connect(self._on_session_image_opened)
        self.session.project_opened.connect(self._on_session_project_opened)
        self.session.history_changed.connect(self._refresh_status)
        self.dock.visibilityChanged.connect(self._on_dock_visibility_changed)
        tool_group = window.ui_actions.tool_group
        if tool_group is not None:  # choosing a painting tool leaves the grain tools
            tool_group.triggered.connect(lambda _action: self.set_mode(None))
        self.tools.chosen.connect(self._refresh_actions)
        self.tools.edited.connect(self._on_tools_edited)
        self._analysing.analysed.connect(self._on_analysed)
        self._analysing.big_analysed.connect(self._on_big_analysed)
        self._analysing.failed.connect(self._refresh_status)
        self._analysing.running_changed.connect(self._refresh_actions)
        self._pooling.pooled.connect(self._on_pool_succeeded)
        self._pooling.running_changed.connect(self._refresh_actions)
        self._model.prediction_ready.connect(self._on_model_prediction_ready)
        self.notice.connect(lambda text: window.statusBar().showMessage(text, 8000))
        self._refresh_actions()

    # ------------------------------------------------------------------ building
    def _make_actions(self) -> GrainActions:
        actions, self._mode_group = create_grain_actions(self.window, self)
        return actions

    def _build_menu(self) -> None:
        a, w = self.actions, self.window
        menu = w.add_action_menu("&Grains")
        for action in (
            a.analyse,
            a.pool,
            None,
            a.measure_scale,
            a.import_scales,
            a.folder_scale,
            None,
            a.pick,
            a.split,
            a.merge,
            a.undo_edit,
            None,
            a.export_csv,
            a.export_png,
        ):
            if action is None:
                menu.addSeparator()
            else:
                menu.addAction(action)
        self.menu = menu
        w.addActions([x for x in vars(a).values()])
        w.view_menu.addAction(self.dock.toggleViewAction())
        w.view_menu.addAction(self.distribution_dock.toggleViewAction())

    # ------------------------------------------------------------------ state
    @property
    def project(self) -> Project | None:
        return self.window.project

    @property
    def analysis(self) -> GrainAnalysis | None:
        return self.controller.analysis

    @analysis.setter
    def analysis(self, analysis: GrainAnalysis | None) -> None:
        self.controller.analysis = analysis

    @property
    def pooled(self) -> GrainSummary | None:
        return self.controller.pooled

    @property
    def selected(self) -> tuple[int, ...]:
        return tuple(self.controller.selected)

    @property
    def mode(self) -> str | None:
        return self.tools.mode

    @property
    def scale(self) -> float | None:
        return self.controller.scale

    @property
    def is_analysing(self) -> bool:
        return self._analysing.is_running

    @property
    def is_pooling(self) -> bool:
        return self._pooling.is_running

    def _current_stem(self) -> str | None:
        path = self.window.current_image_path()
        return path.stem if path is not None else None

    def _saved(self, what: str, save) -> bool:
        """Run ``save`` (it writes the project file); on failure say what could not be saved."""
        return self._scales.saved(what, save)

    def project_scales(self) -> dict[str, float]:
        return self.controller.project_scales()

    def folder_scale(self) -> float | None:
        """The folder's own mm per pixel (for photos without one of their own), or None."""
        return self.controller.folder_scale()

    def scale_of(self, stem: str) -> float | None:
        """A photo's scale: its own, else the folder's."""
        return self.controller.scale_of(stem)

    def set_folder_scale(self, mm_per_px: float | None) -> bool:
        return self._scales.set_folder_scale(mm_per_px)

    def use_scale_for_folder(self) -> bool:
        """Make the current photo's scale the folder's (photos with their own keep theirs)."""
        if not self._scales.use_for_folder():
            return False
        self._refresh_status()
        return True

    def _options(self) -> GrainOptions:
        return self.panel.options()

    def _is_fresh(self) -> bool:
        """The analysis still matches the mask being edited."""
        return self.controller.is_fresh(self.window.current_document())

    # ------------------------------------------------------------------ the canvas tools
    def on_mode_toggled(self, mode: str, checked: bool) -> None:
        self.tools.on_mode_toggled(mode, checked)

    def set_mode(self, mode: str | None) -> None:
        """Lend the canvas's left button to a grain tool (None gives it back to painting)."""
        self.tools.set_mode(mode)

    def choose(self, labels, from_table: bool = False) -> None:
        """Choose stones (on the photo and in the table); the last one's measurements are shown."""
        self.tools.choose(labels, from_table)

    def merge_selected(self) -> bool:
        return self.tools.merge_selected()

    def undo_edit(self) -> bool:
        return self.tools.undo_edit()

    def _on_tools_edited(self) -> None:  # a cut, merge or undo
        self._refresh_distribution()
        self._refresh_status()
        self._refresh_actions()
        self.analysis_changed.emit()

    # ------------------------------------------------------------------ scale
    def set_scale(self, mm_per_px: float | None, save: bool = True) -> bool:
        """Set the current photo's scale, save it with the project, and restate the stones."""
        if mm_per_px is not None and not mm_per_px > 0:
            mm_per_px = None
        self.controller.scale = mm_per_px
        self.panel.set_scale(mm_per_px)
        stem = self._current_stem()
        if save and stem is not None and self.project is not None:
            if not self._saved(
                "the scale", lambda: self.controller.set_photo_scale(stem, mm_per_px)
            ):
                return False
        self._restate()
        return True

    def _on_panel_scale_edited(self, value: float | None) -> None:
        self.set_scale(value)

    def _on_scale_line(self, p0: Point, p1: Point) -> None:
        measured = self._scales.bar_scale(p0, p1)
        if measured is None:
            return
        scale, text = measured
        if self.set_scale(scale):
            self.notice.emit(text)
        self.set_mode("pick" if self.analysis is not None else None)

    def import_scales(self) -> bool:
        imported = self._scales.import_scales()
        if imported is None:
            return False
        matched, report = imported
        stem = self._current_stem()
        if stem in matched:
            self.set_scale(matched[stem], save=False)
        self.dialogs.info("Scales imported", report)
        return True

    # ------------------------------------------------------------------ analysing
    def analyse(self) -> bool:
        """Split and measure the photo shown, on a worker thread."""
        return self._analysing.start()

    def _on_big_analysed(self, path: Path, result) -> None:
        """A mask over 50 MP measured window by window: its stones drawn from its TIFF."""
        if path != self.window.current_image_path():
            return  # the user moved on
        self._big_photo = path
        self.big_stones.set_instances(result.instances_path, result.shape)
        self._show_outlines()

    def _on_analysed(self, path: Path, replayed: str) -> None:
        labels = self.analysis.labels
        self.outlines.set_stones(labels, self.analysis.stones)
        self.panel.show_stones(self.analysis.stones)
        self.panel.show_details(None)
        self.distribution.set_view("photo")
        self.dock.raise_()
        self.distribution_dock.raise_()
        self._show_outlines()
        self._refresh_distribution()
        self._refresh_status()
        self._refresh_actions()
        self.set_mode("pick")
        kept = sum(not s.excluded for s in self.analysis.stones)
        self.notice.emit(
            f"{len(self.analysis.stones)} stones in {path.name} ({kept} counted): click one to see it."
            + (f" {replayed}" if replayed else "")
        )
        self.analysis_changed.emit()

    def _restate(self) -> None:
        """Scale or sampling options changed: restate the stones without splitting again."""
        options, c = self._options(), self.controller
        if options.min_size_mm is not None and c.scale is None:
            self.panel.set_status(
                "The minimum size is in mm but this photo has no scale: set the scale, "
                "or give the minimum in px.",
                warning=True,
            )
            return
        if c.analysis is not None:
            c.analysis.restate(c.scale, options)
            self.panel.show_stones(c.analysis.stones)
            self.panel.choose_stones(c.selected)
            self.outlines.set_excluded(c.analysis.stones)
            self.tools.show_chosen_details()
        self._restate_pooled(options)
        self._refresh_distribution()
        self._refresh_status()
        self.analysis_changed.emit()

    def _restate_pooled(self, options: GrainOptions) -> None:
        try:
            self.controller.restate_pooled(options)
        except StonesegError as exc:
            self._drop_pooled(f"The pooled distribution no longer holds ({exc}); pool again.")

    def _on_panel_options_edited(self, *_args) -> None:
        self._restate()

    # ------------------------------------------------------------------ hand edits
    def stored_edits(self, stem: str) -> dict:
        """The cuts and merges kept with the project for this photo ({} when none)."""
        return self.controller.stored_edits(stem)

    # ------------------------------------------------------------------ pooling
    def pool(self) -> bool:
        """Measure every photo with a mask and pool the distribution, on a worker thread."""
        return self._pooling.start()

    def cancel_pooling(self) -> None:
        """Stop the pooling, or a big mask's window-by-window analysis."""
        if not self._analysing.cancel():
            self._pooling.cancel()

    def _on_pool_succeeded(self, summary: GrainSummary) -> None:
        n = len(summary.results)
        stones = sum(len(r.stones) for r in summary.results)
        self.distribution.set_pooled_choice(f"Pooled: {n} photo{'s' if n != 1 else ''}")
        self._restate_pooled(self._options())
        if self.distribution.view() == "pooled":
            self._refresh_distribution()
        else:
            self.distribution.set_view("pooled")
        self.dock.raise_()
        self.distribution_dock.raise_()
        self.notice.emit(f"Pooled {stones} stones from {n} photo{'s' if n != 1 else ''}.")
        if summary.failed:
            lines = "\n".join(f"{p.name}: {m}" for p, m in summary.failed[:10])
            self.dialogs.error(
                "Some photos were not pooled",
                f"{len(summary.failed)} photo(s) could not be measured:\n{lines}",
            )
        self._refresh_actions()

    def _drop_pooled(self, why: str = "") -> None:
        self.controller.drop_pooled()
        self.distribution.set_pooled_choice(None)
        if why:
            self.notice.emit(why)

    # ------------------------------------------------------------------ the distribution
    def curve_view(self) -> CurveView | None:
        """What the plot shows: this photo's stones, or the pooled folder's."""
        try:
            return self.controller.curve_view(self.distribution.view(), self._options())
        except StonesegError as exc:
            log.info("No distribution: %s", exc)
            return None

    def _refresh_distribution(self) -> None:
        view = self.curve_view()
        empty = "" if view is not None else "No distribution yet: press Analyse (Ctrl+G)."
        self.distribution.show_distribution(view, empty)
        self._refresh_actions()

    def _on_distribution_view_changed(self, _which: str) -> None:
        self._refresh_distribution()

    # ------------------------------------------------------------------ exporting
    def _export_source(self) -> tuple[list[ImageGrains], GrainOptions, str] | None:
        return self.controller.export_source(self.distribution.view(), self._options())

    def _export_folder(self) -> Path:
        project = self.project
        return project.data_dir if project is not None else Path.home()

    def export_csv(self) -> bool:
        """One row per stone, options on every row; the percentiles JSON is written beside it."""
        source = self._export_source()
        if source is None:
            self.notice.emit("Nothing to export yet: press Analyse (Ctrl+G) or Pool folder.")
            return False
        text = export_stones_csv(self.dialogs, *source, self._export_folder())
        if text is not None:
            self.notice.emit(text)
        return text is not None

    def export_png(self) -> bool:
        view = self.curve_view()
        if view is None:
            self.notice.emit("Nothing to plot yet: press Analyse (Ctrl+G) or Pool folder.")
            return False
        source = self._export_source()
        stem = source[2] if source is not None else "grains"
        text = export_plot_png(self.dialogs, view, stem, self._export_folder())
        if text is not None:
            self.notice.emit(text)
        return text is not None

    # ------------------------------------------------------------------ window events
    def _on_window_image_changed(self, path: Path | None) -> None:
        self.set_mode(None)
        if self._big_photo is not None and self._big_photo != path:
            self._big_photo = None
            self.big_stones.clear()
        if self.analysis is not None and self.analysis.image != path:
            self.controller.forget_analysis()
            self.outlines.clear()
            self.panel.show_stones([])
            self.panel.show_details(None)
            self.analysis_changed.emit()
        scale, source = self.controller.scale_for_photo(path) if path is not None else (None, "")
        self.controller.scale = scale
        self.panel.set_scale(scale, source)
        self._show_outlines()
        self._refresh_distribution()
        self._refresh_status()
        self._refresh_actions()

    def _on_session_image_opened(self, path: Path) -> None:
        # a photo cut or merged by hand earlier: show its stones as the user left them
        if (
            self.stored_edits(path.stem).get("edits")
            and self.analysis is None
            and not self.is_analysing
            and self.dock.isVisible()
        ):
            self.analyse()

    def _on_session_project_opened(self, _project: Project) -> None:
        self._drop_pooled()
        self.distribution.set_view("photo")

    def _on_model_prediction_ready(self, path: Path) -> None:
        if self._model.prediction is not None:
            self.controller.prediction = (path, self._model.prediction)

    def _on_dock_visibility_changed(self, _visible: bool) -> None:
        self._show_outlines()
        if not self.panel.isVisible() and self.tools.mode in ("pick", "split"):
            self.set_mode(None)

    def _show_outlines(self) -> None:
        a = self.analysis
        current = a is not None and a.image == self.window.current_image_path()
        self.outlines.setVisible(current and self.panel.isVisible())
        big = self._big_photo is not None and self._big_photo == self.window.current_image_path()
        self.big_stones.setVisible(big and self.panel.isVisible())

    def _refresh_status(self) -> None:
        if self._analysing.request is not None:
            return
        a = self.analysis
        if a is None:
            doc = self.window.current_document()
            if doc is None:
                text = "Open a photo to measure its stones."
            elif self.controller.scale is None:
                text = "Set the scale, then press Analyse (Ctrl+G) to split the mask into stones."
            else:
                text = "Press Analyse (Ctrl+G) to split the mask into stones."
            self.panel.set_status(text)
            return
        labels_note, labels_warning = self.controller.instances_note
        if not self._is_fresh():
            self.panel.set_status(
                "The mask was edited after this analysis: press Analyse (Ctrl+G) to measure it again."
                + (f" {labels_note}" if labels_warning else ""),
                warning=True,
            )
            return
        kept = sum(not s.excluded for s in a.stones)
        scale = f"{fmt_size(a.mm_per_px)} mm/px" if a.mm_per_px else "no scale: sizes in px"
        text = f"{len(a.stones)} stones, {kept} counted · {scale} · split from {a.source}."
        if self.panel.separation.value() != a.options.min_separation_px:
            text += " The separation changed: press Analyse to split again."
        note = a.replay_note
        if labels_note:
            text += f" {labels_note}"
        self.panel.set_status(
            f"{note} {text}" if note else text,
            warning="no longer fit" in note or labels_warning,
        )

    def _refresh_actions(self, *_args) -> None:
        a = self.actions
        has_doc = self.window.current_document() is not None
        has_analysis = self.analysis is not None
        a.analyse.setEnabled(has_doc and not self.is_analysing)
        a.pool.setEnabled(self.project is not None and not self.is_pooling)
        a.cancel.setEnabled(self.is_pooling or self.is_analysing)
        a.measure_scale.setEnabled(has_doc)
        a.import_scales.setEnabled(self.project is not None)
        a.pick.setEnabled(has_analysis)
        a.split.setEnabled(has_analysis)
        a.merge.setEnabled(has_analysis and len(self.controller.selected) == 2)
        a.undo_edit.setEnabled(has_analysis and self.analysis.can_undo)
        can_export = self._export_source() is not None
        a.export_csv.setEnabled(can_export)
        a.export_png.setEnabled(can_export)
