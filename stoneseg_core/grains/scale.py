"""The scale of a photo: from a line drawn over a scale bar, or from a CSV of ``image,mm_per_px``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stoneseg_core.errors import DataError, StonesegError
from stoneseg_core.io.images import IMAGE_EXTENSIONS


def line_length_px(x0: float, y0: float, x1: float, y1: float) -> float:
    return math.hypot(x1 - x0, y1 - y0)


def mm_per_px_from_line(length_px: float, known_mm: float) -> float:
    """Scale from a line drawn over a scale bar: ``known_mm`` millimetres span ``length_px`` pixels."""
    if not (math.isfinite(length_px) and length_px > 0):
        raise StonesegError("Draw a line along the scale bar first: its length is zero.")
    if not (math.isfinite(known_mm) and known_mm > 0):
        raise StonesegError(
            f"The scale bar's length must be a positive number of millimetres, got {known_mm}."
        )
    return known_mm / length_px


def _scale_key(name: str) -> str:
    """Stem of a file name, so 'IMG_1.jpg' and 'IMG_1' find the same photo."""
    p = Path(name.strip())
    return p.stem if p.suffix.lower() in IMAGE_EXTENSIONS else p.name


def _parse_number(text: str, decimal_comma: bool) -> float:
    text = text.strip()
    if decimal_comma:
        text = text.replace(",", ".")
    return float(text)


def read_scale_csv(path: str | Path) -> dict[str, float]:
    """Read ``image,mm_per_px`` rows into {photo stem: mm per pixel}.

    A header naming both columns is required (other columns are ignored). Comma,
    semicolon or tab separated; with a semicolon or tab, a decimal comma is accepted, as
    spreadsheets in many locales write it. Every problem names the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"Scale file not found: {path}") from None
    except UnicodeDecodeError:
        raise DataError(
            f"Scale file {path.name} is not a UTF-8 text file; save it as CSV (UTF-8)."
        ) from None
    except OSError as exc:
        raise DataError(f"Cannot read scale file {path.name}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if not first:
        raise DataError(
            f"Scale file {path.name} is empty; it needs a header 'image,mm_per_px' and one row per photo."
        )
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    scales: dict[str, float] = {}
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            missing = [c for c in ("image", "mm_per_px") if c not in header]
            if missing:
                raise DataError(
                    f"{path.name}, line {line}: the header must name the columns 'image' and 'mm_per_px' "
                    f"(missing: {', '.join(missing)}; found: {', '.join(header) or 'nothing'})."
                )
            col_image, col_scale = header.index("image"), header.index("mm_per_px")
            continue
        if len(row) <= max(col_image, col_scale):
            raise DataError(
                f"{path.name}, line {line}: expected {len(header)} columns, found {len(row)}."
            )
        name, value = row[col_image].strip(), row[col_scale]
        if not name:
            raise DataError(f"{path.name}, line {line}: the image name is empty.")
        try:
            scale = _parse_number(value, decimal_comma=delimiter != ",")
        except ValueError:
            raise DataError(
                f"{path.name}, line {line}: mm_per_px {value.strip()!r} is not a number."
            ) from None
        if not (math.isfinite(scale) and scale > 0):
            raise DataError(
                f"{path.name}, line {line}: mm_per_px must be a positive number, got {value.strip()}."
            )
        key = _scale_key(name)
        if key in scales and scales[key] != scale:
            raise DataError(
                f"{path.name}, line {line}: photo {name} is listed twice with different scales "
                f"({scales[key]:g} and {scale:g} mm per pixel)."
            )
        scales[key] = scale
    if header is None:
        raise DataError(f"Scale file {path.name} has no header 'image,mm_per_px'.")
    if not scales:
        raise DataError(f"Scale file {path.name} has a header but no photos.")
    return scales


# Where the app keeps scales in the project file (stoneseg.json): state[PROJECT_SCALES_KEY]
# [photo stem] = mm per pixel, and state[PROJECT_FOLDER_SCALE_KEY] = one mm per pixel for every
# photo of the folder (a fixed camera; a photo's own overrides it). The window's grains side
# writes the same keys.
PROJECT_SCALES_KEY = "scale_mm_per_px"
PROJECT_FOLDER_SCALE_KEY = "folder_mm_per_px"


def project_scales(state: Mapping[str, Any]) -> tuple[dict[str, float], float | None]:
    """({photo stem: mm per pixel}, the folder's mm per pixel or None) from a project's state."""

    def ok(v: Any) -> bool:
        return (
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        )

    table = state.get(PROJECT_SCALES_KEY, {})
    own = {str(k): float(v) for k, v in table.items() if ok(v)} if isinstance(table, dict) else {}
    folder = state.get(PROJECT_FOLDER_SCALE_KEY)
    return own, float(folder) if ok(folder) else None
