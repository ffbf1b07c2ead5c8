"""Exporting the grains: the stones as CSV (with the percentiles as JSON beside it), the plot as PNG.

Each function asks where through the dialogs seam, writes, and returns the notice to show
(None when the user cancelled or the write failed, which it has then said).
"""

from __future__ import annotations

from pathlib import Path

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import (
    GrainOptions,
    ImageGrains,
    percentiles_report,
    stones_csv,
    write_json,
    write_text,
)
from stoneseg_core.io.images import atomic_write_bytes, describe_os_error

from ..widgets.dialogs import Dialogs
from .plot import CurveView, render_plot_png


def export_stones_csv(
    dialogs: Dialogs,
    results: list[ImageGrains],
    options: GrainOptions,
    stem: str,
    folder: Path,
) -> str | None:
    """One row per stone, options on every row; the percentiles JSON is written beside it."""
    path = dialogs.choose_save_file(
        "Export the stones as CSV", folder / f"{stem}_stones.csv", "CSV files (*.csv)"
    )
    if path is None:
        return None
    if not path.suffix:
        path = path.with_suffix(".csv")
    report_path = path.with_name(f"{path.stem}_percentiles.json")
    try:
        write_text(path, stones_csv(results, options))
        write_json(report_path, percentiles_report(results, options))
    except StonesegError as exc:
        dialogs.error("Cannot export the stones", str(exc))
        return None
    rows = sum(len(r.stones) for r in results)
    return f"Wrote {rows} stones to {path.name} and the percentiles to {report_path.name}."


def export_plot_png(dialogs: Dialogs, view: CurveView, stem: str, folder: Path) -> str | None:
    """The distribution with its percentiles and options, as a PNG for a report."""
    path = dialogs.choose_save_file(
        "Export the plot as PNG", folder / f"{stem}_grain_sizes.png", "PNG images (*.png)"
    )
    if path is None:
        return None
    if not path.suffix:
        path = path.with_suffix(".png")
    try:
        atomic_write_bytes(path, render_plot_png(view))
    except OSError as exc:
        dialogs.error("Cannot export the plot", describe_os_error(exc, path))
        return None
    return f"Wrote the plot to {path.name}."
