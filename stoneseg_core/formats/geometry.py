"""Stones as shapely geometries: outlines along pixel edges, between photo pixels and a
georeference's map coordinates, and the CRS questions of a vector layer over a photo.

A stone's geometry is its outline along pixel edges (``grains.outlines.label_polygons``):
exteriors with their holes, a MultiPolygon when the stone has parts that touch only at
corners. Its area is its pixel count, and it is valid in the OGC sense that GIS tools check
(a ring touching itself at a corner, which the outline can give where a hole meets the
outside at one point, is rebuilt as an exterior and a hole by ``shapely.make_valid``).
"""

from __future__ import annotations

import re

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from stoneseg_core.formats.shapes import Part
from stoneseg_core.grains.outlines import label_polygons
from stoneseg_core.io.geo import Georeference

SNAP = 1e-6  # map -> pixel coordinates this close to a whole number are that number


def label_geometries(labels: np.ndarray) -> dict[int, BaseGeometry]:
    """{label: Polygon or MultiPolygon} of every stone of ``labels``, in pixel corners."""
    out: dict[int, BaseGeometry] = {}
    for label, polygons in label_polygons(labels).items():
        shapes = [Polygon(p[0], p[1:]) for p in polygons]
        out[label] = shapes[0] if len(shapes) == 1 else MultiPolygon(shapes)
    if not out:
        return out
    geoms = np.array(list(out.values()), dtype=object)
    for label, geom, ok in zip(list(out), geoms, shapely.is_valid(geoms)):
        if not ok:
            out[label] = polygonal(shapely.make_valid(geom))
    return out


def polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygons of ``geom`` (a collection's lines and points dropped) as one geometry."""
    polys = list(polygons_of(geom))
    if len(polys) == 1:
        return polys[0]
    return MultiPolygon(polys)


def polygons_of(geom: BaseGeometry):
    """The Polygons of a Polygon, MultiPolygon or collection (nothing for other types)."""
    if geom is None or geom.is_empty:
        return
    if isinstance(geom, Polygon):
        yield geom
    elif hasattr(geom, "geoms"):
        for g in geom.geoms:
            yield from polygons_of(g)


def parts_of(geom: BaseGeometry) -> tuple[Part, ...]:
    """A geometry's polygons as the ``Part``s the importer paints."""
    return tuple(
        Part(
            np.asarray(p.exterior.coords, np.float64)[:, :2],
            tuple(np.asarray(r.coords, np.float64)[:, :2] for r in p.interiors),
        )
        for p in polygons_of(geom)
    )


def to_map(geom: BaseGeometry, georef: Georeference | None) -> BaseGeometry:
    """Pixel corners -> the georeference's CRS (unchanged without one), exteriors
    anticlockwise and holes clockwise in the output's coordinates, as RFC 7946 asks."""
    if georef is not None:
        geom = shapely.transform(
            geom, lambda xy: np.column_stack(georef.to_crs(xy[:, 0], xy[:, 1]))
        )
    return shapely.orient_polygons(geom, exterior_cw=False)


def to_pixels(geom: BaseGeometry, georef: Georeference | None) -> BaseGeometry:
    """The georeference's CRS -> pixel corners (unchanged without one), coordinates within
    ``SNAP`` of a whole pixel made whole (the round trip through map coordinates rounds)."""
    if georef is not None:
        a, b, c, d, e, f = georef.transform
        det = a * e - b * d

        def inverse(xy: np.ndarray) -> np.ndarray:
            x, y = xy[:, 0] - c, xy[:, 1] - f
            return np.column_stack([(e * x - b * y) / det, (a * y - d * x) / det])

        geom = shapely.transform(geom, inverse)

    def snap(xy: np.ndarray) -> np.ndarray:
        whole = np.round(xy)
        return np.where(np.abs(xy - whole) < SNAP, whole, xy)

    return shapely.transform(geom, snap)


# ------------------------------------------------------------------------------ CRSs


def photo_crs(georef: Georeference | None) -> str | None:
    """The photo's CRS as text a GIS reads ("EPSG:32633" or a WKT); None for a plain photo."""
    if georef is None:
        return None
    if georef.epsg is not None:
        return f"EPSG:{georef.epsg}"
    return georef.crs_wkt


def epsg_of(text: str | None) -> int | None:
    """The EPSG code named by a CRS text ("EPSG:32633", "urn:ogc:def:crs:EPSG::32633", a WKT
    ending in its EPSG authority), or None."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(?:urn:ogc:def:crs:)?EPSG:{1,2}(\d+)\s*", text, re.IGNORECASE)
    if m:
        return int(m.group(1))
    m = re.search(r'ID\["EPSG",\s*(\d+)\]\s*\]\s*$|AUTHORITY\["EPSG","(\d+)"\]\s*\]\s*$', text)
    return int(m.group(1) or m.group(2)) if m else None


def same_crs(layer: str, photo: str) -> bool | None:
    """Whether two CRS texts mean the same CRS; None when that cannot be told (no pyproj,
    and they do not name the same EPSG code)."""
    a, b = epsg_of(layer), epsg_of(photo)
    if a is not None and a == b:
        return True
    try:
        from pyproj import CRS
    except ImportError:
        return False if (a is not None and b is not None) else None
    try:
        return CRS.from_user_input(layer).equals(CRS.from_user_input(photo), ignore_axis_order=True)
    except Exception:
        return None


def reprojector(layer: str, photo: str):
    """A function taking geometries from the ``layer`` CRS to the ``photo`` one (x, y order
    whatever the CRS's axis order); None without pyproj or when it cannot be built."""
    try:
        from pyproj import Transformer
    except ImportError:
        return None
    try:
        transformer = Transformer.from_crs(layer, photo, always_xy=True)
    except Exception:
        return None

    def apply(geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(
            geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
        )

    return apply
