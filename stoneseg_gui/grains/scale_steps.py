"""The scale questions of the grain tools: a scale bar's length, a scale CSV, the folder's scale.

``ScaleSteps`` asks the user through the host's dialogs, saves through the
``GrainsController`` (the project's ``stoneseg.json``) and says what it did through
``notice``; it touches no widget. ``GrainSide`` shows the scale it returns (the panel,
the restated stones).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import line_length_px, mm_per_px_from_line
from stoneseg_core.grains.document import Point

from ..host import WindowHost
from .controller import GrainsController


class ScaleSteps:
    """Asks for and saves scales; ``notice`` takes the short messages for the status bar."""

    def __init__(
        self, host: WindowHost, controller: GrainsController, notice: Callable[[str], None]
    ) -> None:
        self.host = host
        self.dialogs = host.dialogs
        self.controller = controller
        self.notice = notice

    def saved(self, what: str, save: Callable[[], object]) -> bool:
        """Run ``save`` (it writes the project file); on failure say what could not be saved."""
        try:
            save()
        except StonesegError as exc:
            self.dialogs.error(f"Cannot save {what}", str(exc))
            return False
        return True

    # ------------------------------------------------------------------ the folder's scale
    def set_folder_scale(self, mm_per_px: float | None) -> bool:
        if self.host.project is None:
            return False
        return self.saved("the scale", lambda: self.controller.set_folder_scale(mm_per_px))

    def use_for_folder(self) -> bool:
        """Make the current photo's scale the folder's (photos with their own keep theirs)."""
        scale = self.controller.scale
        if scale is None:
            self.notice("Set this photo's scale first (type it or measure a scale bar, K).")
            return False
        if not self.set_folder_scale(scale):
            return False
        own = len(self.controller.project_scales())
        self.notice(
            f"{scale:.6g} mm per pixel for every photo of the folder without a scale of "
            f"its own ({own} photo{'s have' if own != 1 else ' has'} one)."
        )
        return True

    # ------------------------------------------------------------------ a scale bar
    def bar_scale(self, p0: Point, p1: Point) -> tuple[float, str] | None:
        """Ask how long the scale bar drawn from ``p0`` to ``p1`` is: (mm per pixel, the
        notice to show once it is set), or None when the scale stays (having said why)."""
        length = line_length_px(*p0, *p1)
        if length < 2:
            self.notice("That line is too short: click both ends of the scale bar.")
            return None
        known = self.dialogs.ask_number(
            "Scale bar length",
            f"The line is {length:.1f} pixels long.\nHow many millimetres does the scale bar span?",
            self.controller.last_bar_mm,
            0.001,
            1_000_000.0,
            3,
        )
        if known is None:
            self.notice("Scale not changed.")
            return None
        try:
            scale = mm_per_px_from_line(length, known)
        except StonesegError as exc:
            self.dialogs.error("Cannot set the scale", str(exc))
            return None
        self.controller.last_bar_mm = known
        return scale, (
            f"Scale: {scale:.6g} mm per pixel ({known:g} mm over {length:.1f} px), "
            "saved with the project."
        )

    # ------------------------------------------------------------------ a scale CSV
    def import_scales(self) -> tuple[dict[str, float], str] | None:
        """Ask for a CSV of (image, mm_per_px) and keep its photos' scales with the project:
        (the scales set, by photo stem; the report to show), or None (having said why)."""
        project = self.host.project
        if project is None:
            self.notice("Open a folder first.")
            return None
        path = self.dialogs.choose_open_file(
            "Import scales (image, mm_per_px)",
            project.root,
            "CSV files (*.csv *.txt);;All files (*)",
        )
        if path is None:
            return None
        try:
            scales, matched, unknown, missing = self.controller.import_scales(path)
        except StonesegError as exc:
            self.dialogs.error("Cannot read the scale file", str(exc))
            return None
        if not matched:
            self.dialogs.error(
                "No photo matches the scale file",
                f"None of the {len(scales)} names in {path.name} is a photo of this folder "
                f"(for example {', '.join(unknown[:3])}).",
            )
            return None
        try:
            self.controller.keep_scales(matched)
        except StonesegError as exc:
            self.dialogs.error("Cannot save the scales", str(exc))
            return None
        return matched, _import_report(path, matched, unknown, missing)


def _import_report(
    path: Path, matched: dict[str, float], unknown: list[str], missing: list[str]
) -> str:
    n = len(matched)
    text = f"Scales set for {n} photo{'s' if n != 1 else ''} from {path.name}."
    if unknown:
        text += f"\n{len(unknown)} row(s) name no photo of this folder: {_few(unknown)}."
    if missing:
        text += f"\n{len(missing)} photo(s) have no row: {_few(missing)}."
    return text


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
