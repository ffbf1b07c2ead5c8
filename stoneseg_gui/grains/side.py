"""Adds grain analysis to the main window: the Grains dock, its menu, actions and canvas tools.

The way the data travels: the photo's mask (or the model's prediction, with its
probability) -> ``analyse_mask`` on a worker thread -> a ``GrainAnalysis`` (labels the user
may cut and merge, and their ``Stone`` measurements) -> the table, the numbered outlines
on the canvas and the cumulative curve -> CSV / PNG exports. "Pool folder" runs
``iter_grains_masks`` over the project's saved masks on a worker, with progress and
cancel. The scale of each photo is kept in the project's ``stoneseg.json`` under
``scale_mm_per_px``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QMainWindow, QTabBar

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import (
    GrainEvent,
    GrainOptions,
    GrainSummary,
    ImageGrains,
    distribution_of,
    iter_grains_masks,
    line_length_px,
    mm_per_px_from_line,
    percentiles_report,
    read_scale_csv,
    stones_csv,
    with_scale_and_exclusions,
    write_json,
    write_text,
)
from stoneseg_core.grains_analysis import (
    GrainAnalysis,
    Point,
    analyse_with_edits,
    describe_options,
)
from stoneseg_core.imageio import atomic_write_bytes, describe_os_error
from stoneseg_core.project import Project

from ..actions import make_action
from ..workers import Worker, start_worker
from .canvas import (
    LineGuideItem,
    LineInteraction,
    PickInteraction,
    StoneOutlineItem,
)
from .panel import DistributionPanel, GrainActions, GrainPanel
from .plot import CurveView, render_plot_png
from .table import fmt_size

log = logging.getLogger(__name__)

SCALES_KEY = "scale_mm_per_px"  # project.state[SCALES_KEY][photo stem] = mm per pixel
# one mm per pixel for every photo of the folder (a fixed camera); a photo's own overrides it
FOLDER_SCALE_KEY = "folder_mm_per_px"
# project.state[GRAIN_EDITS_KEY][photo stem] = {"edits": [...], "mask_sha1": ...}: the
# user's cuts and merges (grains.replay_edits), replayed whenever the photo is analysed
GRAIN_EDITS_KEY = "grain_edits"


# ------------------------------------------------------------------------------ the side


class GrainSide(QObject):
    """Owns the Grains dock, its actions and canvas tools for one MainWindow."""

    notice = Signal(str)  # a short message for the status bar
    analysis_changed = Signal()  # analysed, cut, merged, restated or cleared

    MODES = ("scale", "pick", "split")

    def __init__(self, window) -> None:  # noqa: ANN001
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.canvas = window.canvas
        self.dialogs = window.dialogs
        model_side = getattr(window, "model_side", None)
        self._model = model_side.controller if model_side is not None else None
        self.analysis: GrainAnalysis | None = None
        self.pooled: GrainSummary | None = None
        self._pooled_options: GrainOptions | None = None
        self._selected: list[int] = []
        self._mode: str | None = None
        self._syncing_modes = False
        self._scale: float | None = None  # exact; the spin box shows it rounded
        self._last_bar_mm = 10.0
        self._prediction = None  # (Path, Prediction): the latest one the model side showed
        self._analyse_worker: Worker | None = None
        self._analysing: tuple[Path, int | None, str, GrainOptions] | None = None
        self._pool_worker: Worker | None = None

        self.actions = self._make_actions()
        self.panel = GrainPanel(self.actions)
        self.distribution = DistributionPanel(self.actions)
        self.dock = window.add_dock(
            self.panel, Qt.DockWidgetArea.RightDockWidgetArea, "Grains", scroll=True
        )
        self.distribution_dock = window.add_dock(
            self.distribution, Qt.DockWidgetArea.BottomDockWidgetArea, "Grain sizes"
        )
        # where the docks go is the window's one layout (MainWindow.arrange_docks)
        self._build_menu()

        scene = self.canvas.scene()
        self.outlines = StoneOutlineItem()
        self.guide = LineGuideItem()
        scene.addItem(self.outlines)
        scene.addItem(self.guide)
        threshold = lambda: 4.0 / max(self.canvas.zoom(), 1e-6)  # noqa: E731
        self._scale_tool = LineInteraction(
            self._on_scale_line, self._on_scale_preview, lambda: self.set_mode(None), threshold
        )
        self._split_tool = LineInteraction(
            self._on_cut_line, self._on_cut_preview, lambda: self.set_mode(None), threshold
        )
        self._pick_tool = PickInteraction(self._on_pick, lambda: self.set_mode(None))

        p = self.panel
        p.scale_edited.connect(self._on_panel_scale_edited)
        p.options_edited.connect(self._on_panel_options_edited)
        p.weighting_changed.connect(self._on_panel_options_edited)
        p.stones_chosen.connect(self._on_panel_stones_chosen)
        self.distribution.view_changed.connect(self._on_distribution_view_changed)
        window.image_changed.connect(self._on_window_image_changed)
        self.session.image_opened.connect(self._on_session_image_opened)
        self.session.project_opened.connect(self._on_session_project_opened)
        self.session.history_changed.connect(self._refresh_status)
        self.dock.visibilityChanged.connect(self._on_dock_visibility_changed)
        tool_group = getattr(getattr(window, "ui_actions", None), "tool_group", None)
        if tool_group is not None:  # choosing a painting tool leaves the grain tools
            tool_group.triggered.connect(lambda _action: self.set_mode(None))
        if self._model is not None:
            self._model.prediction_ready.connect(self._on_model_prediction_ready)
        self.notice.connect(lambda text: window.statusBar().showMessage(text, 8000))
        self._refresh_actions()

    # ------------------------------------------------------------------ building
    def _make_actions(self) -> GrainActions:
        w = self.window
        actions = GrainActions(
            analyse=make_action(
                w,
                "&Analyse grains",
                self.analyse,
                ("Ctrl+G",),
                "Split this photo's mask into stones and measure them",
            ),
            pool=make_action(
                w,
                "&Pool folder",
                self.pool,
                ("Ctrl+Shift+G",),
                "Measure the stones of every photo with a mask and pool the distribution",
            ),
            measure_scale=make_action(
                w,
                "&Measure scale bar",
                lambda checked: self._on_mode_toggled("scale", checked),
                ("K",),
                "Click both ends of a scale bar (or drag along it), then type its length in mm",
                checkable=True,
            ),
            import_scales=make_action(
                w,
                "&Import scale CSV…",
                self.import_scales,
                (),
                "Set the scale of many photos from a CSV with the columns image, mm_per_px",
            ),
            folder_scale=make_action(
                w,
                "Use this scale for the &whole folder",
                self.use_scale_for_folder,
                (),
                "A fixed camera: every photo without a scale of its own gets this photo's scale",
            ),
            pick=make_action(
                w,
                "Pic&k stones",
                lambda checked: self._on_mode_toggled("pick", checked),
                ("G",),
                "Click a stone to see its measurements; Ctrl+click chooses a second one",
                checkable=True,
            ),
            split=make_action(
                w,
                "&Split stone",
                lambda checked: self._on_mode_toggled("split", checked),
                ("X",),
                "Draw a line across a stone (two clicks or a drag) to cut it in two",
                checkable=True,
            ),
            merge=make_action(
                w,
                "&Merge stones",
                self.merge_selected,
                ("M",),
                "Merge the two chosen stones (Ctrl+click the second) into one",
            ),
            undo_edit=make_action(
                w,
                "&Undo cut or merge",
                self.undo_edit,
                ("Ctrl+Alt+Z",),
                "Take back the last cut or merge of stones on this photo",
            ),
            export_csv=make_action(
                w,
                "Export &CSV…",
                self.export_csv,
                (),
                "One row per stone with the options on every row, and the percentiles as JSON beside it",
            ),
            export_png=make_action(
                w,
                "Export plot &PNG…",
                self.export_png,
                (),
                "The distribution with its percentiles and options, as a PNG for a report",
            ),
            cancel=make_action(
                w, "Cancel pooling", self.cancel_pooling, (), "Stop after the photo being measured"
            ),
        )
        group = QActionGroup(self)
        group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        for action in (actions.measure_scale, actions.pick, actions.split):
            group.addAction(action)
        self._mode_group = group
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
        view_menu = getattr(w, "view_menu", None)
        if view_menu is not None:
            view_menu.addAction(self.dock.toggleViewAction())
            view_menu.addAction(self.distribution_dock.toggleViewAction())

    # ------------------------------------------------------------------ state
    @property
    def project(self) -> Project | None:
        return self.window.project

    @property
    def selected(self) -> tuple[int, ...]:
        return tuple(self._selected)

    @property
    def mode(self) -> str | None:
        return self._mode

    @property
    def scale(self) -> float | None:
        return self._scale

    @property
    def is_analysing(self) -> bool:
        return self._analyse_worker is not None and self._analyse_worker.is_running

    @property
    def is_pooling(self) -> bool:
        return self._pool_worker is not None and self._pool_worker.is_running

    def _current_stem(self) -> str | None:
        path = self.window.current_image_path()
        return path.stem if path is not None else None

    def project_scales(self) -> dict[str, float]:
        project = self.project
        table = project.state.get(SCALES_KEY, {}) if project is not None else {}
        return {str(k): float(v) for k, v in table.items() if isinstance(v, (int, float))}

    def _save_project_state(self, what: str) -> bool:
        """Write the project file (atomically); on failure say what could not be saved."""
        try:
            self.project.save_state()
        except StonesegError as exc:
            self.dialogs.error(f"Cannot save {what}", str(exc))
            return False
        return True

    def folder_scale(self) -> float | None:
        """The folder's own mm per pixel (for photos without one of their own), or None."""
        value = self.project.state.get(FOLDER_SCALE_KEY) if self.project is not None else None
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def scale_of(self, stem: str) -> float | None:
        """A photo's scale: its own, else the folder's."""
        return self.project_scales().get(stem, self.folder_scale())

    def set_folder_scale(self, mm_per_px: float | None) -> bool:
        project = self.project
        if project is None:
            return False
        if mm_per_px is None:
            project.state.pop(FOLDER_SCALE_KEY, None)
        else:
            project.state[FOLDER_SCALE_KEY] = float(mm_per_px)
        return self._save_project_state("the scale")

    def use_scale_for_folder(self) -> bool:
        """Make the current photo's scale the folder's (photos with their own keep theirs)."""
        if self._scale is None:
            self.notice.emit("Set this photo's scale first (type it or measure a scale bar, K).")
            return False
        if not self.set_folder_scale(self._scale):
            return False
        own = len(self.project_scales())
        self.notice.emit(
            f"{self._scale:.6g} mm per pixel for every photo of the folder without a scale of "
            f"its own ({own} photo{'s have' if own != 1 else ' has'} one)."
        )
        self._refresh_status()
        return True

    def _options(self) -> GrainOptions:
        return self.panel.options()

    def _is_fresh(self) -> bool:
        """The analysis still matches the mask being edited."""
        a, doc = self.analysis, self.window.current_document()
        if a is None or doc is None:
            return False
        return a.state_id is None or a.state_id == doc.state_id

    # ------------------------------------------------------------------ modes
    def _on_mode_toggled(self, mode: str, checked: bool) -> None:
        if self._syncing_modes:
            return
        if checked:
            self.set_mode(mode)
        elif self._mode == mode:
            self.set_mode(None)

    def set_mode(self, mode: str | None) -> None:
        """Lend the canvas's left button to a grain tool (None gives it back to painting)."""
        if mode in ("pick", "split") and self.analysis is None:
            self.notice.emit("Analyse the photo first (Ctrl+G).")
            mode = None
        if mode == "scale" and self.window.current_document() is None:
            mode = None
        self._mode = mode
        for name, action in (
            ("scale", self.actions.measure_scale),
            ("pick", self.actions.pick),
            ("split", self.actions.split),
        ):
            self._syncing_modes = True  # not a user's toggle: the buttons still follow
            try:
                action.setChecked(mode == name)
            finally:
                self._syncing_modes = False
        self.guide.set_line(None)
        tool = {"scale": self._scale_tool, "pick": self._pick_tool, "split": self._split_tool}
        self.canvas.set_interaction(tool.get(mode) if mode else None)
        if mode == "scale":
            self.notice.emit("Click both ends of the scale bar (Esc cancels).")
        elif mode == "split":
            self.notice.emit("Draw a line across the stone to cut (Esc cancels).")
        elif mode == "pick":
            self.notice.emit("Click a stone; Ctrl+click a second, M merges them.")

    # ------------------------------------------------------------------ scale
    def set_scale(self, mm_per_px: float | None, save: bool = True) -> bool:
        """Set the current photo's scale, save it with the project, and restate the stones."""
        if mm_per_px is not None and not mm_per_px > 0:
            mm_per_px = None
        self._scale = mm_per_px
        self.panel.set_scale(mm_per_px)
        stem, project = self._current_stem(), self.project
        if save and stem is not None and project is not None:
            table = dict(project.state.get(SCALES_KEY, {}))
            if mm_per_px is None:
                table.pop(stem, None)
            else:
                table[stem] = mm_per_px
            project.state[SCALES_KEY] = table
            if not self._save_project_state("the scale"):
                return False
        self._restate()
        return True

    def _on_panel_scale_edited(self, value: float | None) -> None:
        self.set_scale(value)

    def _on_scale_preview(self, p0: Point | None, p1: Point | None) -> None:
        if p0 is None or p1 is None:
            self.guide.set_line(None)
            return
        self.guide.set_line(p0, p1, f"{line_length_px(*p0, *p1):.1f} px")

    def _on_scale_line(self, p0: Point, p1: Point) -> None:
        length = line_length_px(*p0, *p1)
        if length < 2:
            self.notice.emit("That line is too short: click both ends of the scale bar.")
            return
        known = self.dialogs.ask_number(
            "Scale bar length",
            f"The line is {length:.1f} pixels long.\nHow many millimetres does the scale bar span?",
            self._last_bar_mm,
            0.001,
            1_000_000.0,
            3,
        )
        if known is None:
            self.notice.emit("Scale not changed.")
            return
        try:
            scale = mm_per_px_from_line(length, known)
        except StonesegError as exc:
            self.dialogs.error("Cannot set the scale", str(exc))
            return
        self._last_bar_mm = known
        if self.set_scale(scale):
            self.notice.emit(
                f"Scale: {scale:.6g} mm per pixel ({known:g} mm over {length:.1f} px), "
                "saved with the project."
            )
        self.set_mode("pick" if self.analysis is not None else None)

    def import_scales(self) -> bool:
        project = self.project
        if project is None:
            self.notice.emit("Open a folder first.")
            return False
        path = self.dialogs.choose_open_file(
            "Import scales (image, mm_per_px)",
            project.root,
            "CSV files (*.csv *.txt);;All files (*)",
        )
        if path is None:
            return False
        try:
            scales = read_scale_csv(path)
        except StonesegError as exc:
            self.dialogs.error("Cannot read the scale file", str(exc))
            return False
        stems = {p.stem for p in project.image_paths()}
        matched = {k: v for k, v in scales.items() if k in stems}
        unknown = sorted(set(scales) - stems)
        missing = sorted(stems - set(scales))
        if not matched:
            self.dialogs.error(
                "No photo matches the scale file",
                f"None of the {len(scales)} names in {path.name} is a photo of this folder "
                f"(for example {', '.join(unknown[:3])}).",
            )
            return False
        table = dict(project.state.get(SCALES_KEY, {}))
        table.update(matched)
        project.state[SCALES_KEY] = table
        try:
            project.save_state()
        except StonesegError as exc:
            self.dialogs.error("Cannot save the scales", str(exc))
            return False
        stem = self._current_stem()
        if stem in matched:
            self.set_scale(matched[stem], save=False)
        text = f"Scales set for {len(matched)} photo{'s' if len(matched) != 1 else ''} from {path.name}."
        if unknown:
            text += f"\n{len(unknown)} row(s) name no photo of this folder: {_few(unknown)}."
        if missing:
            text += f"\n{len(missing)} photo(s) have no row: {_few(missing)}."
        self.dialogs.info("Scales imported", text)
        return True

    # ------------------------------------------------------------------ analysing
    def _source(self, document, path: Path):  # noqa: ANN001, ANN202
        """(mask, probability, words): the prediction when one is shown, else the mask."""
        pred = self._prediction[1] if self._prediction and self._prediction[0] == path else None
        shown = pred is not None and self._model is not None and self._model.prediction is pred
        if shown:
            return (
                pred.mask.copy(),
                pred.probability,
                "the model's prediction (with its probability)",
            )
        mask = np.array(document.mask, copy=True)
        if pred is not None and np.array_equal(mask, pred.mask):
            return mask, pred.probability, "the accepted prediction (with its probability)"
        return mask, None, "the mask"

    def analyse(self) -> bool:
        """Split and measure the photo shown, on a worker thread."""
        document, path = self.window.current_document(), self.window.current_image_path()
        if document is None or path is None:
            self.notice.emit("Open a photo first.")
            return False
        if self.is_analysing:
            return False
        options = self._options()
        if options.min_size_mm is not None and self._scale is None:
            self.dialogs.error(
                "Set the scale first",
                "The minimum size is in millimetres, so this photo needs a scale: type it, "
                "measure a scale bar (K), or give the minimum in pixels.",
            )
            return False
        mask, probability, source = self._source(document, path)
        options = options.replace(use_probability=probability is not None)
        stored = self.stored_edits(path.stem)
        kept_sep = stored.get("min_separation_px")
        if (
            stored.get("edits")
            and isinstance(kept_sep, int)
            and kept_sep != options.min_separation_px
        ):
            # the hand edits were made on the split at this separation: replay them on it
            options = options.replace(min_separation_px=kept_sep)
            with QSignalBlocker(self.panel.separation):
                self.panel.separation.setValue(kept_sep)
        # a model trained with the boundary target also gives where stones meet: split on it
        pred = self._prediction[1] if self._prediction and self._prediction[0] == path else None
        boundary = None
        if probability is not None and pred is not None and probability is pred.probability:
            boundary = getattr(pred, "boundary", None)
        state = (
            None
            if probability is not None and source.startswith("the model")
            else document.state_id
        )
        self._analysing = (path, state, source, options)
        self.panel.set_status(f"Analysing {path.name}…")
        worker = start_worker(
            analyse_with_edits,
            mask,
            probability,
            self._scale,
            options,
            path.name,
            boundary=boundary,
            edits=stored.get("edits", []),
        )
        worker.succeeded.connect(self._on_analyse_succeeded)
        worker.failed.connect(self._on_analyse_failed)
        worker.finished.connect(self._refresh_actions)
        self._analyse_worker = worker
        self._refresh_actions()
        return True

    def _on_analyse_failed(self, message: str) -> None:
        self._analysing = None
        self.dialogs.error("Grain analysis failed", message)
        self._refresh_status()

    def _on_analyse_succeeded(self, result) -> None:  # noqa: ANN001
        labels, grains, applied, failed, digest = result
        if self._analysing is None:
            return
        path, state, source, options = self._analysing
        self._analysing = None
        if path != self.window.current_image_path():
            return  # the user moved on
        self.analysis = GrainAnalysis(
            path,
            labels,
            list(grains.stones),
            grains.mm_per_px,
            options,
            source,
            state,
            edits=list(applied),
            digest=digest,
        )
        stored = self.stored_edits(path.stem)
        replayed = ""
        if stored.get("edits"):
            changed = stored.get("mask_sha1") not in (None, digest)
            replayed = f"Your {len(applied)} cut(s) and merge(s) on this photo are back."
            if changed or failed:
                replayed = (
                    f"The mask changed since your {len(stored['edits'])} cut(s) and merge(s): "
                    f"{len(applied)} re-applied"
                    + (
                        f", {len(failed)} no longer fit ({'; '.join(why for _, why in failed)})"
                        if failed
                        else ""
                    )
                    + "."
                )
            if changed:
                self._save_edits(dropped=[e for e, _ in failed])
            elif failed:
                # the same mask: the edits did not fit this split's options; keep them all
                self.analysis.edits = list(stored["edits"])
        self.analysis.replay_note = replayed
        self._refresh_status()
        now = self._options()
        if (
            self._scale != grains.mm_per_px
            or now.replace(
                min_separation_px=options.min_separation_px, use_probability=options.use_probability
            )
            != options
        ):  # the scale or the options changed while it ran
            if now.min_size_mm is None or self._scale is not None:
                self.analysis.restate(self._scale, now)
        self._selected = []
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
        options = self._options()
        if options.min_size_mm is not None and self._scale is None:
            self.panel.set_status(
                "The minimum size is in mm but this photo has no scale: set the scale, "
                "or give the minimum in px.",
                warning=True,
            )
            return
        if self.analysis is not None:
            self.analysis.restate(self._scale, options)
            self.panel.show_stones(self.analysis.stones)
            self.panel.choose_stones(self._selected)
            self.outlines.set_excluded(self.analysis.stones)
            self._show_chosen_details()
        self._restate_pooled(options)
        self._refresh_distribution()
        self._refresh_status()
        self.analysis_changed.emit()

    def _restate_pooled(self, options: GrainOptions) -> None:
        if self.pooled is None:
            return
        try:
            results = tuple(
                ImageGrains(
                    r.name,
                    self.scale_of(Path(r.name).stem),
                    tuple(
                        with_scale_and_exclusions(
                            r.stones,
                            self.scale_of(Path(r.name).stem),
                            options.exclude_edge,
                            options.min_size_px,
                            options.min_size_mm,
                        )
                    ),
                )
                for r in self.pooled.results
            )
            pooled_options = options.replace(
                min_separation_px=self._pooled_options.min_separation_px,
                use_probability=False,
            )
            report = percentiles_report(results, pooled_options)
        except StonesegError as exc:
            self._drop_pooled(f"The pooled distribution no longer holds ({exc}); pool again.")
            return
        self.pooled = dataclasses.replace(self.pooled, results=results, report=report)
        self._pooled_options = pooled_options

    def _on_panel_options_edited(self, *_args) -> None:  # noqa: ANN002
        self._restate()

    # ------------------------------------------------------------------ choosing and editing
    def _on_pick(self, x: float, y: float, ctrl: bool) -> None:
        if self.analysis is None:
            return
        label = self.analysis.label_at(x, y)
        chosen = list(self._selected)
        if ctrl:
            if label in chosen:
                chosen.remove(label)
            elif label:
                chosen.append(label)
        else:
            chosen = [label] if label else []
        self.choose(chosen)

    def choose(self, labels, from_table: bool = False) -> None:  # noqa: ANN001
        """Choose stones (on the photo and in the table); the last one's measurements are shown."""
        if self.analysis is None:
            labels = []
        self._selected = [int(k) for k in labels if self.analysis.stone(int(k)) is not None]
        self.outlines.set_selected(self._selected)
        if not from_table:
            self.panel.choose_stones(self._selected)
        self._show_chosen_details()
        self._refresh_actions()

    def _show_chosen_details(self) -> None:
        if self.analysis is None or not self._selected:
            self.panel.show_details(None)
            return
        self.panel.show_details(
            self.analysis.stone(self._selected[-1]), more=len(self._selected) - 1
        )

    def _on_panel_stones_chosen(self, labels) -> None:  # noqa: ANN001
        self.choose(labels, from_table=True)

    def _on_cut_preview(self, p0: Point | None, p1: Point | None) -> None:
        self.guide.set_line(p0, p1, "cut" if p0 is not None else "")

    def _on_cut_line(self, p0: Point, p1: Point) -> None:
        if self.analysis is None:
            return
        try:
            pieces = self.analysis.split(p0, p1)
        except StonesegError as exc:
            self.notice.emit(str(exc))
            self.panel.set_status(str(exc), warning=True)
            return
        self._after_edit(pieces, pieces)
        self.notice.emit(
            f"Stone {pieces[0]} cut in {len(pieces)}: stones {', '.join(map(str, pieces))}."
        )

    def merge_selected(self) -> bool:
        if self.analysis is None or len(self._selected) != 2:
            self.notice.emit(
                "Choose two touching stones to merge: click one, Ctrl+click the other."
            )
            return False
        first, second = self._selected
        try:
            keep = self.analysis.merge(first, second)
        except StonesegError as exc:
            self.notice.emit(str(exc))
            self.panel.set_status(str(exc), warning=True)
            return False
        self._after_edit([first, second], [keep])
        self.notice.emit(f"Stones {min(first, second)} and {max(first, second)} merged.")
        return True

    # ------------------------------------------------------------------ hand edits
    def stored_edits(self, stem: str) -> dict:
        """The cuts and merges kept with the project for this photo ({} when none)."""
        table = self.project.state.get(GRAIN_EDITS_KEY, {}) if self.project is not None else {}
        entry = table.get(stem)
        return dict(entry) if isinstance(entry, dict) else {}

    def _save_edits(self, dropped: list[dict] | None = None) -> bool:
        """Keep the current photo's edits with the project (the project file, atomically)."""
        a, project = self.analysis, self.project
        if a is None or project is None:
            return False
        table = dict(project.state.get(GRAIN_EDITS_KEY, {}))
        entry = {
            "edits": list(a.edits),
            "mask_sha1": a.digest,
            "min_separation_px": int(a.options.min_separation_px),
        }
        old = table.get(a.image.stem, {})
        kept_aside = list(old.get("dropped", [])) + list(dropped or [])
        if kept_aside:
            entry["dropped"] = kept_aside  # edits that no longer fit: told, never erased
        if a.edits or kept_aside:
            table[a.image.stem] = entry
        else:
            table.pop(a.image.stem, None)
        project.state[GRAIN_EDITS_KEY] = table
        return self._save_project_state("the stone edits")

    def undo_edit(self) -> bool:
        a = self.analysis
        if a is None or not a.can_undo:
            self.notice.emit("No cut or merge to undo on this photo.")
            return False
        touched = a.undo()
        self._selected = []
        self._after_edit(touched, [])
        self.notice.emit("Last cut or merge undone.")
        return True

    def _after_edit(self, changed: list[int], chosen: list[int]) -> None:
        a = self.analysis
        assert a is not None
        self._save_edits()
        self.outlines.update_stones(a.labels, a.stones, changed)
        self.panel.show_stones(a.stones)
        self.choose(chosen)
        self._refresh_distribution()
        self._refresh_status()
        self._refresh_actions()
        self.analysis_changed.emit()

    # ------------------------------------------------------------------ pooling
    def pool(self) -> bool:
        """Measure every photo with a mask and pool the distribution, on a worker thread."""
        project = self.project
        if project is None:
            self.notice.emit("Open a folder first.")
            return False
        if self.is_pooling:
            return False
        if self.session.is_dirty and not self.window.save_current():
            return False
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
            return False
        options = self._options().replace(use_probability=False)
        stems = {image.stem for image, _ in pairs}
        unscaled = sorted(image.name for image, _ in pairs if self.scale_of(image.stem) is None)
        if unscaled and len(unscaled) < len(pairs):
            # one question, naming every unscaled photo, with a scale to give them all
            known = [self.scale_of(s) for s in stems if self.scale_of(s) is not None]
            offer = self._scale or max(set(known), key=known.count)
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
            if answer != choice or not self.set_folder_scale(offer):
                self.notice.emit("Not pooled: set the scale of those photos first.")
                return False
        scales = {s: self.scale_of(s) for s in stems}
        given = {}
        a = self.analysis
        if a is not None and self._is_fresh() and a.state_id is not None and a.image.stem in stems:
            given[a.image.stem] = a.labels.copy()  # the stones as cut and merged by hand
        edits = {
            s: self.stored_edits(s).get("edits", [])
            for s in stems
            if s not in given and self.stored_edits(s).get("edits")
        }
        worker = start_worker(
            iter_grains_masks,
            pairs,
            scales,
            options,
            given,
            edits,
        )
        worker.progressed.connect(self._on_pool_progressed)
        worker.succeeded.connect(lambda summary: self._on_pool_succeeded(summary, options))
        worker.failed.connect(lambda message: self.dialogs.error("Pooling failed", message))
        worker.stopped.connect(lambda: self.notice.emit("Pooling cancelled; nothing was pooled."))
        worker.finished.connect(self._on_pool_finished)
        self._pool_worker = worker
        self.panel.show_progress(0, len(pairs), f"Measuring 0 of {len(pairs)} photos…")
        self._refresh_actions()
        return True

    def cancel_pooling(self) -> None:
        if self._pool_worker is not None:
            self._pool_worker.request_stop()
            self.panel.show_progress(
                self.panel.progress.value(), self.panel.progress.maximum(), "Cancelling…"
            )

    def _on_pool_progressed(self, event: GrainEvent) -> None:
        self.panel.show_progress(
            event.index, event.total, f"{event.index} of {event.total}: {event.image.name}"
        )

    def _on_pool_succeeded(self, summary: GrainSummary, options: GrainOptions) -> None:
        self.pooled = summary
        self._pooled_options = options
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

    def _on_pool_finished(self) -> None:
        self.panel.hide_progress()
        self._refresh_actions()

    def _drop_pooled(self, why: str = "") -> None:
        self.pooled = None
        self._pooled_options = None
        self.distribution.set_pooled_choice(None)
        if why:
            self.notice.emit(why)

    # ------------------------------------------------------------------ the distribution
    def curve_view(self) -> CurveView | None:
        """What the plot shows: this photo's stones, or the pooled folder's."""
        options = self._options()
        if self.distribution.view() == "pooled" and self.pooled is not None:
            results = self.pooled.results
            stones = [s for r in results for s in r.stones]
            scaled = bool(results) and all(r.mm_per_px is not None for r in results)
            n = len(results)
            title = f"Pooled: {n} photo{'s' if n != 1 else ''}"
            words = describe_options(
                self._pooled_options or options, "scale per photo" if scaled else None
            )
            unit = "mm" if scaled else "px"
        elif self.analysis is not None:
            stones = self.analysis.stones
            title = self.analysis.image.name
            words = describe_options(self.analysis.options, self.analysis.mm_per_px)
            unit = "mm" if self.analysis.mm_per_px is not None else "px"
        else:
            return None
        try:
            curve = distribution_of(stones, options.weighting, unit)
        except StonesegError as exc:
            log.info("No distribution: %s", exc)
            return None
        return CurveView(curve, title, len(stones), words, curve.percentiles(options.percentiles))

    def _refresh_distribution(self) -> None:
        view = self.curve_view()
        empty = "" if view is not None else "No distribution yet: press Analyse (Ctrl+G)."
        self.distribution.show_distribution(view, empty)
        self._refresh_actions()

    def _on_distribution_view_changed(self, _which: str) -> None:
        self._refresh_distribution()

    # ------------------------------------------------------------------ exporting
    def _export_source(self) -> tuple[list[ImageGrains], GrainOptions, str] | None:
        if self.distribution.view() == "pooled" and self.pooled is not None:
            options = self._pooled_options or self._options()
            return list(self.pooled.results), options, "stones_pooled"
        if self.analysis is not None:
            return [self.analysis.result()], self.analysis.options, self.analysis.image.stem
        return None

    def _export_folder(self) -> Path:
        project = self.project
        return project.data_dir if project is not None else Path.home()

    def export_csv(self) -> bool:
        """One row per stone, options on every row; the percentiles JSON is written beside it."""
        source = self._export_source()
        if source is None:
            self.notice.emit("Nothing to export yet: press Analyse (Ctrl+G) or Pool folder.")
            return False
        results, options, stem = source
        suggested = self._export_folder() / f"{stem}_stones.csv"
        path = self.dialogs.choose_save_file(
            "Export the stones as CSV", suggested, "CSV files (*.csv)"
        )
        if path is None:
            return False
        if not path.suffix:
            path = path.with_suffix(".csv")
        report_path = path.with_name(f"{path.stem}_percentiles.json")
        try:
            write_text(path, stones_csv(results, options))
            write_json(report_path, percentiles_report(results, options))
        except StonesegError as exc:
            self.dialogs.error("Cannot export the stones", str(exc))
            return False
        rows = sum(len(r.stones) for r in results)
        self.notice.emit(
            f"Wrote {rows} stones to {path.name} and the percentiles to {report_path.name}."
        )
        return True

    def export_png(self) -> bool:
        view = self.curve_view()
        if view is None:
            self.notice.emit("Nothing to plot yet: press Analyse (Ctrl+G) or Pool folder.")
            return False
        source = self._export_source()
        stem = source[2] if source is not None else "grains"
        path = self.dialogs.choose_save_file(
            "Export the plot as PNG",
            self._export_folder() / f"{stem}_grain_sizes.png",
            "PNG images (*.png)",
        )
        if path is None:
            return False
        if not path.suffix:
            path = path.with_suffix(".png")
        try:
            atomic_write_bytes(path, render_plot_png(view))
        except OSError as exc:
            self.dialogs.error("Cannot export the plot", describe_os_error(exc, path))
            return False
        self.notice.emit(f"Wrote the plot to {path.name}.")
        return True

    # ------------------------------------------------------------------ window events
    def _on_window_image_changed(self, path: Path | None) -> None:
        self.set_mode(None)
        if self.analysis is not None and self.analysis.image != path:
            self.analysis = None
            self._selected = []
            self.outlines.clear()
            self.panel.show_stones([])
            self.panel.show_details(None)
            self.analysis_changed.emit()
        self._scale = self.scale_of(path.stem) if path is not None else None
        self.panel.set_scale(self._scale)
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
        if self._model is not None and self._model.prediction is not None:
            self._prediction = (path, self._model.prediction)

    def _on_dock_visibility_changed(self, _visible: bool) -> None:
        self._show_outlines()
        if not self.panel.isVisible() and self._mode in ("pick", "split"):
            self.set_mode(None)

    def _show_outlines(self) -> None:
        a = self.analysis
        current = a is not None and a.image == self.window.current_image_path()
        self.outlines.setVisible(current and self.panel.isVisible())

    def _refresh_status(self) -> None:
        if self._analysing is not None:
            return
        a = self.analysis
        if a is None:
            doc = self.window.current_document()
            self.panel.set_status(
                "Set the scale, then press Analyse (Ctrl+G) to split the mask into stones."
                if doc is not None
                else "Open a photo to measure its stones."
            )
            return
        if not self._is_fresh():
            self.panel.set_status(
                "The mask was edited after this analysis: press Analyse (Ctrl+G) to measure it again.",
                warning=True,
            )
            return
        kept = sum(not s.excluded for s in a.stones)
        scale = f"{fmt_size(a.mm_per_px)} mm/px" if a.mm_per_px else "no scale: sizes in px"
        text = f"{len(a.stones)} stones, {kept} counted · {scale} · split from {a.source}."
        if self.panel.separation.value() != a.options.min_separation_px:
            text += " The separation changed: press Analyse to split again."
        note = getattr(a, "replay_note", "")
        self.panel.set_status(f"{note} {text}" if note else text, warning="no longer fit" in note)

    def _refresh_actions(self, *_args) -> None:  # noqa: ANN002
        a = self.actions
        has_doc = self.window.current_document() is not None
        has_analysis = self.analysis is not None
        a.analyse.setEnabled(has_doc and not self.is_analysing)
        a.pool.setEnabled(self.project is not None and not self.is_pooling)
        a.cancel.setEnabled(self.is_pooling)
        a.measure_scale.setEnabled(has_doc)
        a.import_scales.setEnabled(self.project is not None)
        a.pick.setEnabled(has_analysis)
        a.split.setEnabled(has_analysis)
        a.merge.setEnabled(has_analysis and len(self._selected) == 2)
        a.undo_edit.setEnabled(has_analysis and self.analysis.can_undo)
        can_export = self._export_source() is not None
        a.export_csv.setEnabled(can_export)
        a.export_png.setEnabled(can_export)


def hide_stale_tab_bars(window: QMainWindow) -> int:
    """Hide dock tab bars that a later tab group has superseded; returns how many.

    Qt 6.11 quirk: once a window has one group of tabbed docks, tabifying another dock
    leaves the group's previous tab bar behind, visible, where the group used to end; a
    bar whose tabs are a strict subset of another bar's is such a leftover.
    """
    bars = [b for b in window.findChildren(QTabBar) if b.parent() is window]
    tabs = {b: {b.tabText(i) for i in range(b.count())} for b in bars}
    stale = [b for b in bars if any(tabs[b] < tabs[o] for o in bars if o is not b)]
    for bar in stale:
        bar.hide()
    return len(stale)


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
