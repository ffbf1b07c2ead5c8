"""The grain tools on the canvas: the three modes, the stone outlines, choosing and hand edits.

``StoneTools`` lends the canvas's left button to a mode (measure a scale bar, pick stones,
cut one), draws the numbered outlines and the line being drawn, and makes the user's cuts,
merges and undos through the ``GrainsController``, keeping them with the project (and the
stones as per-stone labels for training, ``instances/<stem>.png``). It says
what changed by its signals; ``GrainSide`` restates the rest of the view. The scale bar's
line goes to the side (``on_scale_line``), which asks for its length and sets the scale.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import line_length_px
from stoneseg_core.grains.document import Point

from ..host import WindowHost
from .actions import GrainActions
from .big_stones import BigStonesItem
from .canvas import LineGuideItem, LineInteraction, PickInteraction, StoneOutlineItem
from .controller import GrainsController
from .panel import GrainPanel
from .scale_steps import ScaleSteps


class StoneTools(QObject):
    """The grain modes and stone edits on the host's canvas."""

    chosen = Signal()  # the chosen stones changed
    edited = Signal()  # a cut, merge or undo changed the stones (kept with the project)

    def __init__(
        self,
        host: WindowHost,
        controller: GrainsController,
        actions: GrainActions,
        panel: GrainPanel,
        scales: ScaleSteps,
        notice: Callable[[str], None],
        on_scale_line: Callable[[Point, Point], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.canvas = host.canvas
        self.controller = controller
        self.actions = actions
        self.panel = panel
        self.scales = scales
        self.notice = notice
        self._mode: str | None = None
        self._syncing_modes = False

        scene = self.canvas.scene()
        self.outlines = StoneOutlineItem()
        self.big_stones = BigStonesItem()  # a window-by-window analysis's stones
        self.guide = LineGuideItem()
        scene.addItem(self.outlines)
        scene.addItem(self.big_stones)
        scene.addItem(self.guide)
        threshold = lambda: 4.0 / max(self.canvas.zoom(), 1e-6)  # noqa: E731
        self._scale_tool = LineInteraction(
            on_scale_line, self._on_scale_preview, lambda: self.set_mode(None), threshold
        )
        self._split_tool = LineInteraction(
            self._on_cut_line, self._on_cut_preview, lambda: self.set_mode(None), threshold
        )
        self._pick_tool = PickInteraction(self._on_pick, lambda: self.set_mode(None))
        panel.stones_chosen.connect(self._on_panel_stones_chosen)

    @property
    def mode(self) -> str | None:
        return self._mode

    # ------------------------------------------------------------------ modes
    def on_mode_toggled(self, mode: str, checked: bool) -> None:
        if self._syncing_modes:
            return
        if checked:
            self.set_mode(mode)
        elif self._mode == mode:
            self.set_mode(None)

    def set_mode(self, mode: str | None) -> None:
        """Lend the canvas's left button to a grain tool (None gives it back to painting)."""
        if mode in ("pick", "split") and self.controller.analysis is None:
            self.notice("Analyse the photo first (Ctrl+G).")
            mode = None
        if mode == "scale" and self.host.current_document() is None:
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
            self.notice("Click both ends of the scale bar (Esc cancels).")
        elif mode == "split":
            self.notice("Draw a line across the stone to cut (Esc cancels).")
        elif mode == "pick":
            self.notice("Click a stone; Ctrl+click a second, M merges them.")

    def _on_scale_preview(self, p0: Point | None, p1: Point | None) -> None:
        if p0 is None or p1 is None:
            self.guide.set_line(None)
            return
        self.guide.set_line(p0, p1, f"{line_length_px(*p0, *p1):.1f} px")

    # ------------------------------------------------------------------ choosing
    def _on_pick(self, x: float, y: float, ctrl: bool) -> None:
        if self.controller.analysis is None:
            return
        self.choose(self.controller.picked(x, y, ctrl))

    def choose(self, labels, from_table: bool = False) -> None:
        """Choose stones (on the photo and in the table); the last one's measurements are shown."""
        chosen = self.controller.choose(labels)
        self.outlines.set_selected(chosen)
        if not from_table:
            self.panel.choose_stones(chosen)
        self.show_chosen_details()
        self.chosen.emit()

    def show_chosen_details(self) -> None:
        chosen, analysis = self.controller.selected, self.controller.analysis
        if analysis is None or not chosen:
            self.panel.show_details(None)
            return
        self.panel.show_details(analysis.stone(chosen[-1]), more=len(chosen) - 1)

    def _on_panel_stones_chosen(self, labels) -> None:
        self.choose(labels, from_table=True)

    # ------------------------------------------------------------------ hand edits
    def _on_cut_preview(self, p0: Point | None, p1: Point | None) -> None:
        self.guide.set_line(p0, p1, "cut" if p0 is not None else "")

    def _on_cut_line(self, p0: Point, p1: Point) -> None:
        if self.controller.analysis is None:
            return
        try:
            pieces = self.controller.split(p0, p1)
        except StonesegError as exc:
            self.notice(str(exc))
            self.panel.set_status(str(exc), warning=True)
            return
        self._after_edit(pieces, pieces)
        self.notice(
            f"Stone {pieces[0]} cut in {len(pieces)}: stones {', '.join(map(str, pieces))}."
        )

    def merge_selected(self) -> bool:
        if self.controller.analysis is None or len(self.controller.selected) != 2:
            self.notice("Choose two touching stones to merge: click one, Ctrl+click the other.")
            return False
        try:
            first, second, keep = self.controller.merge_selected()
        except StonesegError as exc:
            self.notice(str(exc))
            self.panel.set_status(str(exc), warning=True)
            return False
        self._after_edit([first, second], [keep])
        self.notice(f"Stones {min(first, second)} and {max(first, second)} merged.")
        return True

    def undo_edit(self) -> bool:
        a = self.controller.analysis
        if a is None or not a.can_undo:
            self.notice("No cut or merge to undo on this photo.")
            return False
        touched = self.controller.undo()
        self._after_edit(touched, [])
        self.notice("Last cut or merge undone.")
        return True

    def _save_edits(self) -> bool:
        """Keep the current photo's edits with the project (the project file, atomically)."""
        if self.controller.analysis is None or self.host.project is None:
            return False
        return self.scales.saved("the stone edits", self.controller.save_edits)

    def _after_edit(self, changed: list[int], chosen: list[int]) -> None:
        a = self.controller.analysis
        assert a is not None
        self._save_edits()
        # the stones as cut and merged: the photo's per-stone labels for training
        self.controller.save_instances(self.host.current_document())
        self.outlines.update_stones(a.labels, a.stones, changed)
        self.panel.show_stones(a.stones)
        self.choose(chosen)
        self.edited.emit()
