"""Exporting: instance-label PNGs (32-bit TIFFs past 65535 stones), the per-stone CSV and
GeoJSON outlines, the percentiles JSON.

``read_instance_labels`` (their reader) is imageio's, re-exported here: training reads
instance labels too, and the dataset must not depend on the grain analysis."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.analyse import GrainOptions, ImageGrains
from stoneseg_core.grains.distribution import (
    DEFAULT_BOOTSTRAP,
    WEIGHTINGS,
    Bootstrap,
    distribution_of,
    intervals_of,
    percentile_block,
)
from stoneseg_core.grains.measure import Stone
from stoneseg_core.grains.outlines import ring_area, stone_polygons
from stoneseg_core.io.geo import Georeference, write_tiff
from stoneseg_core.io.images import (
    atomic_write_bytes,
    describe_os_error,
    read_instance_labels,
    write_png,
)

MAX_INSTANCES_PNG = 65535  # a 16-bit PNG holds labels 1..65535

__all__ = [
    "CSV_COLUMNS",
    "MAX_INSTANCES_PNG",
    "percentiles_report",
    "read_instance_labels",  # lives in imageio: training reads it too
    "stones_csv",
    "stones_geojson",
    "write_instance_labels",
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


def write_instance_labels(
    path: str | Path, labels: np.ndarray, georef: Georeference | None = None
) -> Path:
    """Write labels as a 16-bit PNG, or -- more than 65535 stones, as in an orthomosaic --
    as a 32-bit deflate TIFF beside it (``path`` with the suffix .tif, carrying ``georef``).

    Returns the path written; ``read_instance_labels`` reads both.
    """
    path, labels = Path(path), np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if labels.size and labels.min() < 0:
        raise StonesegError(f"{path.name}: instance labels cannot be negative.")
    if top <= MAX_INSTANCES_PNG:
        write_instance_png(path, labels)
        return path
    path = path.with_suffix(".tif")
    write_tiff(path, labels.astype(np.uint32), georef)
    return path


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


def csv_cell(value: Any) -> str:
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
            writer.writerow([csv_cell(v) for v in csv_row(r, s, options)])
    return buf.getvalue()


def csv_row(r: ImageGrains, s: Stone, options: GrainOptions) -> tuple:
    """One stone's values, in the order of ``CSV_COLUMNS``."""
    return (
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


def percentiles_report(
    results: Sequence[ImageGrains],
    options: GrainOptions,
    bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP,
) -> dict[str, Any]:
    """Percentiles per photo and pooled, by count and by area, with the options that made them.

    Beside each D_p is its ``bootstrap`` confidence interval over the stones (e.g.
    "D50_mm_ci95": [low, high], and in psi), the method under "confidence_intervals";
    ``bootstrap=None`` leaves them out.
    """

    def block(stones: Iterable[Stone], unit: str) -> dict[str, Any]:
        stones = list(stones)
        out: dict[str, Any] = {
            "stones_found": len(stones),
            "stones_excluded": sum(s.excluded for s in stones),
        }
        for by in WEIGHTINGS:
            curve = distribution_of(stones, by, unit)
            intervals = (
                None
                if bootstrap is None
                else intervals_of(stones, by, options.percentiles, bootstrap)
            )
            out[f"by_{by}"] = percentile_block(curve, options.percentiles, intervals, bootstrap)
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
        **({} if bootstrap is None else {"confidence_intervals": bootstrap.to_dict()}),
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


def json_value(value: Any) -> Any:
    """A CSV cell as JSON takes it: ints as ints, non-finite floats as null."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def stones_geojson(
    result: ImageGrains,
    labels: np.ndarray,
    options: GrainOptions,
    georef: Georeference | None = None,
    scale_source: str | None = None,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection with one feature per stone of ``result`` (the rows of its
    CSV, excluded stones too): the stone's outline along its pixel edges as a Polygon (or a
    MultiPolygon when the label has parts that touch only at corners), its CSV row as the
    properties.

    With ``georef`` the coordinates are the photo's CRS (the pixel corners through the
    affine transform), recorded in a top-level "crs" member naming the EPSG code as GDAL
    writes it (RFC 7946 itself knows only WGS 84); without, they are pixels (x right, y
    down from the photo's top-left corner), which the top-level "coordinates" says.
    """
    labels = np.asarray(labels)
    features = []
    for s in result.stones:
        r0, c0, r1, c1 = s.bbox
        polygons = stone_polygons(labels[r0:r1, c0:c1] == s.label, offset=(r0, c0))
        features.append(stone_feature(result, s, polygons, options, georef))
    out = geojson_header(result, georef, scale_source)
    out["features"] = features
    return out


def stone_feature(
    result: ImageGrains,
    s: Stone,
    polygons: list[list[np.ndarray]],
    options: GrainOptions,
    georef: Georeference | None = None,
) -> dict[str, Any]:
    """One stone's GeoJSON feature (see ``stones_geojson``) from its ``outlines.stone_polygons``
    in photo pixels."""
    shapes = []
    for poly in polygons:
        rings = []
        for ring in poly:
            if georef is not None:
                x, y = georef.to_crs(ring[:, 0], ring[:, 1])
                ring = np.stack([x, y], axis=1)
            # RFC 7946: exteriors anticlockwise, holes clockwise (positive and negative
            # shoelace area of the coordinates as numbers); a north-up transform flips y
            if (ring_area(ring) > 0) != (not rings):
                ring = ring[::-1]
            rings.append(ring.tolist())
        shapes.append(rings)
    if not shapes:
        geometry = None
    elif len(shapes) == 1:
        geometry = {"type": "Polygon", "coordinates": shapes[0]}
    else:
        geometry = {"type": "MultiPolygon", "coordinates": shapes}
    properties = {k: json_value(v) for k, v in zip(CSV_COLUMNS, csv_row(result, s, options))}
    return {"type": "Feature", "id": int(s.label), "geometry": geometry, "properties": properties}


def geojson_header(
    result: ImageGrains, georef: Georeference | None = None, scale_source: str | None = None
) -> dict[str, Any]:
    """The members of ``stones_geojson``'s FeatureCollection before its "features"."""
    out: dict[str, Any] = {"type": "FeatureCollection", "name": Path(result.name).stem}
    if georef is None:
        out["coordinates"] = (
            "pixels: x to the right, y down, from the top-left corner of the photo (no "
            "georeference)"
        )
    else:
        out["coordinates"] = f"{georef.crs_name}, pixel corners through the georeference"
        if georef.epsg is not None:
            out["crs"] = {
                "type": "name",
                "properties": {"name": f"urn:ogc:def:crs:EPSG::{georef.epsg}"},
            }
        if georef.crs_wkt:
            out["crs_wkt"] = georef.crs_wkt
    out["image"] = result.name
    out["mm_per_px"] = result.mm_per_px
    out["mm_per_px_source"] = scale_source
    return out
