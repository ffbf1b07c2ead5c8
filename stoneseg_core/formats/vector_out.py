"""A project's stones as GeoJSON (a file per photo) or as a GeoPackage (a layer per photo),
each stone a feature: its outline along pixel edges (``geometry.label_geometries``, valid),
its measurements as the attributes, the columns of the grains' CSV (``grains.io.CSV_COLUMNS``:
area, a- and b-axis, ..., in mm where the photo's scale is known, see ``photos.photo_scale``).

Coordinates: a georeferenced photo's CRS (pixel corners through its georeference), the CRS
written with them (GeoJSON: a "crs" member naming the EPSG code as GDAL writes it, or
"crs_wkt"; GeoPackage: the layer's CRS, so QGIS places it on its photo); a plain photo's
pixels, x to the right and y down from its top-left corner, with no CRS (QGIS then draws the
stones upside down against a map: y grows downwards). A GeoPackage holds every photo's
stones in one layer (``GeoPackageWriter``), their photo in the ``image`` attribute.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping

from stoneseg_core.errors import StonesegError
from stoneseg_core.formats.geometry import label_geometries, photo_crs, to_map
from stoneseg_core.formats.vector import LABELLED_KEY, PHOTOS_KEY, import_pyogrio
from stoneseg_core.grains.analyse import GrainOptions, ImageGrains
from stoneseg_core.grains.io import CSV_COLUMNS, csv_row, geojson_header, json_value
from stoneseg_core.grains.measure import measure_stones
from stoneseg_core.io.geo import Georeference
from stoneseg_core.io.images import describe_os_error


def measured(name: str, labels: np.ndarray, mm_per_px: float | None) -> ImageGrains:
    return ImageGrains(name, mm_per_px, tuple(measure_stones(labels, mm_per_px)))


def stone_rows(
    name: str, labels: np.ndarray, georef: Georeference | None, mm_per_px: float | None
) -> list[tuple[Any, dict[str, Any]]]:
    """(geometry in the output's coordinates, CSV row as a dict) of every stone."""
    result = measured(name, labels, mm_per_px)
    geometries = label_geometries(labels)
    options = GrainOptions()
    rows = []
    for stone in result.stones:
        geom = to_map(geometries[stone.label], georef)
        rows.append((geom, dict(zip(CSV_COLUMNS, csv_row(result, stone, options)))))
    return rows


def geojson_document(
    name: str,
    labels: np.ndarray,
    georef: Georeference | None,
    mm_per_px: float | None,
    scale_source: str | None,
) -> dict[str, Any]:
    """A photo's stones as a GeoJSON FeatureCollection (see the module's docstring)."""
    out = geojson_header(ImageGrains(name, mm_per_px), georef, scale_source)
    out["labelled"] = True  # a photo without stones comes back as an empty mask
    out["features"] = [
        {
            "type": "Feature",
            "id": int(props["label"]),
            "geometry": mapping(geom),
            "properties": {k: json_value(v) for k, v in props.items()},
        }
        for geom, props in stone_rows(name, labels, georef, mm_per_px)
    ]
    return out


def column(values: list[Any]) -> np.ndarray:
    """A list of one attribute's values as the numpy array pyogrio writes (None -> null)."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return np.array([bool(v) for v in values])
    if kinds and kinds <= {int, np.int64} and None not in values:
        return np.array(values, np.int64)
    if kinds and all(issubclass(k, (int, float, np.integer, np.floating)) for k in kinds):
        return np.array([np.nan if v is None else float(v) for v in values], np.float64)
    if not kinds:
        return np.full(len(values), np.nan)
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def as_multi(geom) -> MultiPolygon:
    return MultiPolygon([geom]) if isinstance(geom, Polygon) else geom


class GeoPackageWriter:
    """The photos' stones gathered, then written as one layer, "stones", with each stone's
    photo in its ``image`` attribute (a layer per CRS, "stones_2", ... when the photos lie in
    several: a layer has one CRS). Every photo exported is named in its layer's metadata
    (``PHOTOS_KEY``, a JSON list), so one without stones comes back as an empty mask. The file
    is written beside the target and moved over it when whole (``commit``): a failure leaves
    any old file as it was."""

    def __init__(self, path: Path) -> None:
        import_pyogrio()
        self.path = path
        self.temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.gpkg")
        # CRS text (None: pixels) -> (geometries as WKB, attribute rows, photo names)
        self.groups: dict[str | None, tuple[list, list, list]] = {}

    def add_photo(
        self, image: str, labels: np.ndarray, georef: Georeference | None, mm_per_px: float | None
    ) -> None:
        wkb, rows, photos = self.groups.setdefault(photo_crs(georef), ([], [], []))
        for geom, props in stone_rows(image, labels, georef, mm_per_px):
            wkb.append(shapely.to_wkb(as_multi(geom)))
            rows.append(props)
        photos.append(image)

    def write_layer(self, layer: str, crs: str | None, wkb: list, rows: list, photos: list) -> None:
        from pyogrio import raw

        data = [column([props[c] for props in rows]) for c in CSV_COLUMNS]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no crs": plain photos' pixels
            raw.write(
                self.temporary,
                np.array(wkb, dtype=object),
                data,
                list(CSV_COLUMNS),
                layer=layer,
                driver="GPKG",
                geometry_type="MultiPolygon",
                crs=crs,
                append=self.temporary.exists(),
                layer_metadata={LABELLED_KEY: "true", PHOTOS_KEY: json.dumps(photos)},
            )

    def commit(self) -> None:
        if not self.groups:
            raise StonesegError(f"No photo with a mask to write into {self.path.name}.")
        for n, (crs, (wkb, rows, photos)) in enumerate(self.groups.items(), start=1):
            self.write_layer("stones" if n == 1 else f"stones_{n}", crs, wkb, rows, photos)
        try:
            os.replace(self.temporary, self.path)
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, self.path)) from exc

    def discard(self) -> None:
        for extra in ("", "-journal", "-wal", "-shm"):
            try:
                Path(str(self.temporary) + extra).unlink()
            except OSError:
                pass
