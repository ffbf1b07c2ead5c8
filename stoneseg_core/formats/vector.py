"""Polygons of a GeoJSON, GeoPackage or shapefile over the project's photos: reading them.

GeoJSON is read as JSON (GDAL takes a GeoJSON without a "crs" member for WGS 84, which
StoneSeg's own exports of plain photos, in pixels, are not); GeoPackages and shapefiles
through pyogrio (``pip install stoneseg[gis]``), every layer of them.

Which photo a feature lies on, first that applies: the photo given for all (``--image``);
the feature's ``image`` property (StoneSeg's exports write it); the photo the layer is named
after (a GeoJSON's ``image`` member, a GeoPackage layer's or a shapefile's name); else, for
georeferenced photos, the one whose footprint holds the feature. Coordinates: a layer that
declares a CRS is in it, and is reprojected to a photo's CRS when they differ (with pyproj;
without it such a layer is skipped, one line); a layer that declares none is taken to be in
the photo's own coordinates: its CRS for a GeoTIFF (a note says so), else pixels (x right,
y down from the photo's top-left corner, as StoneSeg exports plain photos). Invalid polygons
are repaired (``shapely.make_valid``, a note each); lines and points are not areas.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry

from stoneseg_core.errors import StonesegError
from stoneseg_core.formats.coco import load_json
from stoneseg_core.formats.geometry import (
    parts_of,
    photo_crs,
    polygonal,
    reprojector,
    same_crs,
    to_pixels,
)
from stoneseg_core.formats.photos import PhotoIndex
from stoneseg_core.formats.report import FormatReport
from stoneseg_core.formats.shapes import PhotoShapes, StoneShape

GIS_HINT = "pip install stoneseg[gis]"
LABELLED_KEY = "stoneseg_labelled"  # GeoPackage layer metadata: "true" on StoneSeg's layers
PHOTOS_KEY = "stoneseg_photos"  # and the photos exported into the layer, a JSON list


@dataclass
class Layer:
    """One layer's features as read: (geometry or None, properties) each."""

    name: str
    crs: str | None
    features: list[tuple[BaseGeometry | None, dict]] = field(default_factory=list)
    image: str | None = None  # the photo the layer says it is of
    labelled: bool = False  # it says its photo was labelled, stones or none
    photos: list[str] = field(default_factory=list)  # the photos it says it holds, all labelled
    source: str = ""


def import_pyogrio():
    try:
        import pyogrio
    except ImportError:
        raise StonesegError(f"GeoPackages and shapefiles need pyogrio: {GIS_HINT}") from None
    return pyogrio


def geojson_crs(data: dict) -> str | None:
    crs = data.get("crs")
    if isinstance(crs, dict) and isinstance(crs.get("properties"), dict):
        name = crs["properties"].get("name")
        if isinstance(name, str) and name:
            return name
    wkt = data.get("crs_wkt")
    return wkt if isinstance(wkt, str) and wkt else None


def read_geojson(path: Path, report: FormatReport) -> list[Layer]:
    data = load_json(path, report)
    if data is None:
        return []
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection" and isinstance(data.get("features"), list):
        items = data["features"]
    elif kind == "Feature":
        items = [data]
    elif isinstance(kind, str) and "coordinates" in data:
        items = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        report.skip(path.name, "not GeoJSON: no FeatureCollection, Feature or geometry")
        return []
    image = data.get("image") if isinstance(data.get("image"), str) else None
    layer = Layer(path.stem, geojson_crs(data), image=image, source=path.name)
    layer.labelled = data.get("labelled") is True
    for k, item in enumerate(items):
        where = f"{path.name}, feature {k}"
        if not isinstance(item, dict):
            report.skip(where, "is not an object")
            continue
        props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
        try:
            geom = shape(item["geometry"]) if item.get("geometry") else None
        except Exception as exc:  # shapely's errors for bad coordinates vary by version
            report.skip(where, f"its geometry cannot be read ({exc})")
            continue
        layer.features.append((geom, props))
    return [layer]


def read_ogr(path: Path, report: FormatReport) -> list[Layer]:
    """Every layer of a GeoPackage or shapefile (pyogrio)."""
    pyogrio = import_pyogrio()
    from pyogrio import raw

    try:
        names = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:
        report.skip(path.name, f"cannot be read as a GeoPackage or shapefile ({exc})")
        return []
    layers = []
    for name in names:
        try:
            info = pyogrio.read_info(path, layer=name)
            meta, _, wkb, columns = raw.read(path, layer=name)
        except Exception as exc:
            report.skip(f"{path.name}, layer {name}", f"cannot be read ({exc})")
            continue
        metadata = info.get("layer_metadata") or {}
        layer = Layer(
            path.stem if path.suffix.lower() == ".shp" else name,
            meta.get("crs"),
            labelled=str(metadata.get(LABELLED_KEY, "")).lower() == "true",
            photos=layer_photos(metadata.get(PHOTOS_KEY)),
            source=f"{path.name}, layer {name}",
        )
        geoms = shapely.from_wkb(wkb) if wkb is not None else [None] * len(columns[0])
        fields = list(meta.get("fields", []))
        for k, geom in enumerate(geoms):
            props = {f: column[k] for f, column in zip(fields, columns)}
            layer.features.append((geom, props))
        layers.append(layer)
    return layers


def layer_photos(text: object) -> list[str]:
    """The photo names of a layer's ``PHOTOS_KEY`` metadata (a JSON list), [] if none."""
    try:
        names = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def read_vector(path: Path, report: FormatReport) -> list[Layer]:
    if path.suffix.lower() in (".geojson", ".json"):
        return read_geojson(path, report)
    return read_ogr(path, report)


# --------------------------------------------------------------------- onto the photos


def unchanged(geom: BaseGeometry) -> BaseGeometry:
    return geom


class Placer:
    """Puts the features of layers on the project's photos, in pixels (module docstring)."""

    def __init__(self, index: PhotoIndex, report: FormatReport, image: str | None = None):
        self.index, self.report = index, report
        self.given = index.find(image) if image else None
        if image and self.given is None:
            raise StonesegError(f"--image {image}: the project has no such photo.")
        self.photos: dict[Path, PhotoShapes] = {}
        self.ways: dict[tuple[str, Path], Callable | str] = {}
        self.notes: dict[tuple[str, Path], str] = {}  # (layer, photo): what reaching it did
        self.said: set[tuple[str, Path]] = set()  # (layer, photo) whose way the report has
        self._footprints: list[tuple[Path, BaseGeometry]] | None = None

    def place(self, layer: Layer) -> None:
        default = self.given or self.index.find(layer.image or layer.name)
        if default is not None and layer.labelled:
            self.photo(default, layer).labelled = True
        for name in layer.photos if layer.labelled else ():
            found = self.index.find(name)
            if found is None:
                self.report.skip(name, f"{layer.source} names it, but it is not in the project")
            else:
                self.photo(found, layer).labelled = True
        for k, (geom, props) in enumerate(layer.features):
            where = f"{layer.source}, feature {k}"
            if geom is None or geom.is_empty:
                self.report.skip(where, "has no geometry")
                continue
            photo = self.photo_of(props, default, geom, layer, where)
            if photo is not None:
                self.add(photo, layer, geom, where)

    def photo(self, photo: Path, layer: Layer) -> PhotoShapes:
        if photo not in self.photos:
            self.photos[photo] = PhotoShapes(photo.name, source=layer.source)
        return self.photos[photo]

    def photo_of(self, props: dict, default, geom, layer: Layer, where: str) -> Path | None:
        named = props.get("image")
        if self.given is None and isinstance(named, str) and named:
            found = self.index.find(named)
            if found is None:
                self.report.skip(where, f"names photo {named!r}, which is not in the project")
            return found
        if default is not None:
            return default
        found = self.on_footprint(geom, layer)
        if found is None:
            self.report.skip(
                where,
                "names no photo (no 'image' property, no layer named after a photo, no "
                "--image) and lies on no georeferenced photo",
            )
        return found

    def on_footprint(self, geom: BaseGeometry, layer: Layer) -> Path | None:
        if self._footprints is None:
            self._footprints = []
            for p in self.index.georeferenced():
                h, w = self.index.size(p)
                corners = self.index.georef(p).to_crs([0, w, w, 0], [0, 0, h, h])
                self._footprints.append((p, Polygon(list(zip(*corners)))))
        point = geom.representative_point()
        for p, footprint in self._footprints:
            way = self.way(layer, p)
            if not isinstance(way, str) and footprint.contains(way(point)):
                return p
        return None

    def way(self, layer: Layer, photo: Path) -> Callable[[BaseGeometry], BaseGeometry] | str:
        """How the layer's coordinates reach the photo's CRS: a function, or why they cannot."""
        key = (layer.source, photo)
        if key not in self.ways:
            self.ways[key] = self.find_way(layer, photo)
        return self.ways[key]

    def find_way(self, layer: Layer, photo: Path) -> Callable | str:
        """``way`` worked out; what it assumes or does is said (``notes``) once a feature of
        the layer lands on the photo."""
        target = photo_crs(self.index.georef(photo))
        key = (layer.source, photo)
        if layer.crs is None:
            if target is not None:
                shown = target if len(target) < 40 else "its WKT"
                self.notes[key] = f"declares no CRS: taken to be {photo.name}'s ({shown})"
            return unchanged
        if target is None:
            return f"is in {layer.crs} but {photo.name} has no georeference"
        match = same_crs(layer.crs, target)
        if match:
            return unchanged
        move = reprojector(layer.crs, target)
        if move is None:
            why = "install pyproj to reproject it" if match is None else "it cannot be reprojected"
            return f"is in {layer.crs}, not {photo.name}'s {target}: {why}"
        self.notes[key] = f"reprojected from {layer.crs} to {target} for {photo.name}"
        return move

    def add(self, photo: Path, layer: Layer, geom: BaseGeometry, where: str) -> None:
        way, key = self.way(layer, photo), (layer.source, photo)
        if key not in self.said:  # the first feature on this photo: what the layer needed
            self.said.add(key)
            if isinstance(way, str):
                self.report.skip(layer.source, f"{way}: its features on it skipped")
            elif key in self.notes:
                self.report.note(layer.source, self.notes[key])
        if isinstance(way, str):
            return
        pixels = to_pixels(way(geom), self.index.georef(photo))
        if not pixels.is_valid:
            self.report.note(where, f"invalid polygon repaired ({shapely.is_valid_reason(pixels)})")
            pixels = shapely.make_valid(pixels)
        parts = parts_of(polygonal(pixels)) if not pixels.is_empty else ()
        if not parts:
            self.report.skip(where, f"a {geom.geom_type}, not an area")
            return
        self.photo(photo, layer).stones.append(StoneShape(where, parts=parts))


def read_vector_photos(
    paths: list[Path], index: PhotoIndex, report: FormatReport, image: str | None = None
) -> list[PhotoShapes]:
    """The photos and stones of vector files (see the module's docstring)."""
    placer = Placer(index, report, image)
    for path in paths:
        for layer in read_vector(path, report):
            placer.place(layer)
    return list(placer.photos.values())
