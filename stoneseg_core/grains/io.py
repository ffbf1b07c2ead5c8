"""Exporting: instance-label PNGs, the per-stone CSV, the percentiles JSON.

``read_instance_labels`` (their reader) is imageio's, re-exported here: training reads
instance labels too, and the dataset must not depend on the grain analysis."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StonesegError
from ..imageio import atomic_write_bytes, describe_os_error, read_instance_labels, write_png
from .analyse import GrainOptions, ImageGrains
from .distribution import WEIGHTINGS, _percentile_block, distribution_of
from .measure import Stone

MAX_INSTANCES_PNG = 65535  # a 16-bit PNG holds labels 1..65535

__all__ = [
    "CSV_COLUMNS",
    "MAX_INSTANCES_PNG",
    "percentiles_report",
    "read_instance_labels",  # lives in imageio: training reads it too
    "stones_csv",
    "write_instance_png",
    "write_json",
    "write_text",
]


def write_instance_png(path: str | Path, labels: np.ndarray) -> None:
    """Write labels as a 16-bit PNG (0 = background), atomically."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if top > MAX_INSTANCES_PNG or (labels.size and labels.min() < 0):
        raise StonesegError(
            f"{Path(path).name}: {top} stones do not fit a 16-bit PNG (at most {MAX_INSTANCES_PNG}); "
            "raise the minimum separation or analyse smaller photos."
        )
    write_png(path, labels.astype(np.uint16))


CSV_COLUMNS = (
    "image",
    "label",
    "area_px",
    "area_mm2",
    "equivalent_diameter_px",
    "equivalent_diameter_mm",
    "a_axis_px",
    "a_axis_mm",
    "b_axis_px",
    "b_axis_mm",
    "b_axis_psi",
    "perimeter_px",
    "perimeter_mm",
    "circularity",
    "centroid_x_px",
    "centroid_y_px",
    "touches_edge",
    "excluded",
    "exclusion_reason",
    "mm_per_px",
    "exclude_edge",
    "min_size_px",
    "min_size_mm",
    "weighting",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def stones_csv(results: Iterable[ImageGrains], options: GrainOptions) -> str:
    """One row per stone (excluded ones too, with the reason); the options are columns on every row.

    Columns rather than comment lines, because spreadsheets and pandas read them without
    special settings and a pooled table keeps each row's own scale.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        for s in r.stones:
            row = (
                r.name,
                s.label,
                s.area_px,
                s.area_mm2,
                s.equivalent_diameter_px,
                s.equivalent_diameter_mm,
                s.a_axis_px,
                s.a_axis_mm,
                s.b_axis_px,
                s.b_axis_mm,
                s.b_axis_psi,
                s.perimeter_px,
                s.perimeter_mm,
                s.circularity,
                s.centroid_x,
                s.centroid_y,
                s.touches_edge,
                s.excluded,
                s.exclusion_reason,
                r.mm_per_px,
                options.exclude_edge,
                options.min_size_px,
                options.min_size_mm,
                options.weighting,
            )
            writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def percentiles_report(results: Sequence[ImageGrains], options: GrainOptions) -> dict[str, Any]:
    """Percentiles per photo and pooled, by count and by area, with the options that made them."""

    def block(stones: Iterable[Stone], unit: str) -> dict[str, Any]:
        stones = list(stones)
        out: dict[str, Any] = {
            "stones_found": len(stones),
            "stones_excluded": sum(s.excluded for s in stones),
        }
        for by in WEIGHTINGS:
            curve = distribution_of(stones, by, unit)
            out[f"by_{by}"] = _percentile_block(curve, options.percentiles)
        return out

    scaled = [r.mm_per_px is not None for r in results]
    if any(scaled) and not all(scaled):
        missing = ", ".join(r.name for r in results if r.mm_per_px is None)
        raise StonesegError(
            f"Cannot pool photos with and without a scale; no scale for: {missing}."
        )
    images = {}
    for r in results:
        unit = "px" if r.mm_per_px is None else "mm"
        images[r.name] = {"mm_per_px": r.mm_per_px, **block(r.stones, unit)}
    pooled = block(
        (s for r in results for s in r.stones), "mm" if results and all(scaled) else "px"
    )
    pooled["images"] = len(results)
    return {
        "options": options.to_dict(),
        "definition": (
            "D_p: size at which the cumulative curve reaches p %, the curve passing through (size_k, fraction of "
            "stones -- or of total area -- no larger than size_k), linearly interpolated; psi = log2(mm)."
        ),
        "pooled": pooled,
        "images": images,
    }


def write_text(path: str | Path, text: str) -> None:
    """Write a text export atomically, with a message the user can act on when it fails."""
    path = Path(path)
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, path)) from exc


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
