"""GeoTIFFs: the georeference of a photo, windows of a tiled file, georeferenced masks.

No torch, no Qt, no GDAL: ``tifffile`` (pure Python; scikit-image installs it already, named
by the ``geo`` extra) reads the tags and the tiles, and this module interprets the GeoTIFF
keys itself. What it understands:

- the affine transform from ModelPixelScale + ModelTiepoint or from ModelTransformation
  (pixel-is-point rasters shifted half a pixel, as GDAL does), always as the position of
  pixel *corners*: column 0, row 0 is the top-left corner of the top-left pixel;
- the CRS as an EPSG code (ProjectedCSType / GeographicType) and, when the file carries one,
  a WKT (an "ESRI PE String" citation); the linear unit of a projected CRS;
- ``mm_per_px`` from square pixels of a projected CRS in metres (or feet); a geographic CRS
  (degrees) and Web Mercator (metres stretched by latitude) give none, and say why.

The georeference is copied verbatim when a mask is written, so the mask lies exactly on
its photo in a GIS.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.io.images import atomic_write_bytes, describe_os_error

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install stoneseg[geo]"

# TIFF tags
MODEL_PIXEL_SCALE = 33550
MODEL_TIEPOINT = 33922
MODEL_TRANSFORMATION = 34264
GEO_KEY_DIRECTORY = 34735
GEO_DOUBLE_PARAMS = 34736
GEO_ASCII_PARAMS = 34737
GEO_TAGS = (
    MODEL_PIXEL_SCALE,
    MODEL_TIEPOINT,
    MODEL_TRANSFORMATION,
    GEO_KEY_DIRECTORY,
    GEO_DOUBLE_PARAMS,
    GEO_ASCII_PARAMS,
)
_TAG_DTYPE = {GEO_KEY_DIRECTORY: "H", GEO_ASCII_PARAMS: "s"}  # the others are doubles
ORIENTATION = 274

# GeoKeys
GT_MODEL_TYPE = 1024  # 1 projected, 2 geographic, 3 geocentric
GT_RASTER_TYPE = 1025  # 1 pixel is area, 2 pixel is point
GT_CITATION = 1026
GEOGRAPHIC_TYPE = 2048
GEOG_CITATION = 2049
GEOG_ANGULAR_UNITS = 2054
PROJECTED_CS_TYPE = 3072
PCS_CITATION = 3073
PROJ_LINEAR_UNITS = 3076
PROJ_LINEAR_UNIT_SIZE = 3077
USER_DEFINED = 32767

LINEAR_UNITS_M = {9001: 1.0, 9002: 0.3048, 9003: 1200 / 3937, 9036: 1000.0}
# metres on the map, not on the ground (1/cos(latitude) too large): no scale from these
WEB_MERCATOR = {3857, 3785, 900913, 102100, 102113}
TILE = 256


def import_tifffile():
    try:
        import tifffile
    except ImportError:
        raise StonesegError(
            f"Reading and writing GeoTIFFs needs tifffile: {INSTALL_HINT}"
        ) from None
    return tifffile


def is_tiff(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".tif", ".tiff")


@dataclass(frozen=True)
class Georeference:
    """Where a raster lies: ``x = a*col + b*row + c``, ``y = d*col + e*row + f`` in the CRS.

    ``transform`` is (a, b, c, d, e, f) for pixel corners (GDAL's order is c, a, b, f, d, e).
    ``linear_unit_m``: metres per unit of a projected CRS, None when not known. ``tags`` are
    the file's GeoTIFF tags as (code, values), written unchanged into masks made from it.
    """

    transform: tuple[float, float, float, float, float, float]
    epsg: int | None = None
    model: str = "unknown"  # "projected", "geographic", "geocentric" or "unknown"
    linear_unit_m: float | None = None
    crs_wkt: str | None = None
    citation: str = ""
    tags: tuple[tuple[int, tuple], ...] = field(default=(), repr=False)

    def to_crs(self, cols, rows) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-corner coordinates (column, row; arrays or numbers) -> CRS (x, y)."""
        a, b, c, d, e, f = self.transform
        cols, rows = np.asarray(cols, np.float64), np.asarray(rows, np.float64)
        return a * cols + b * rows + c, d * cols + e * rows + f

    def bounds(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(min x, min y, max x, max y) of a width x height raster."""
        x, y = self.to_crs([0, width, 0, width], [0, 0, height, height])
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    @property
    def crs_name(self) -> str:
        if self.epsg is not None:
            return f"EPSG:{self.epsg}"
        return self.citation or ("a user-defined CRS" if self.model != "unknown" else "no CRS")

    def mm_per_px(self) -> tuple[float | None, str]:
        """(millimetres per pixel, or None; a sentence saying where it comes from or why not)."""
        a, b, _, d, e, _ = self.transform
        if self.model == "geographic":
            return None, f"{self.crs_name} is geographic (degrees): no millimetres per pixel"
        if self.epsg in WEB_MERCATOR:
            return None, (
                f"{self.crs_name} (Web Mercator) stretches metres by latitude: no millimetres "
                "per pixel; reproject to UTM or give the scale"
            )
        if self.model != "projected" or self.linear_unit_m is None:
            return None, f"the units of {self.crs_name} are not known: no millimetres per pixel"
        step_col, step_row = math.hypot(a, d), math.hypot(b, e)
        if step_col <= 0 or step_row <= 0 or not math.isfinite(step_col * step_row):
            return None, "the pixel size is zero or not finite"
        if abs(step_col - step_row) > 1e-3 * max(step_col, step_row):
            return None, (
                f"the pixels are not square ({step_col:g} x {step_row:g} {self.crs_name} units)"
            )
        mm = 1000.0 * self.linear_unit_m * (step_col + step_row) / 2
        return mm, f"{mm:g} mm per pixel from the georeference ({self.crs_name})"


# --------------------------------------------------------------------------------- reading


def _geokeys(tags: dict[int, tuple]) -> dict[int, object]:
    """The GeoKeyDirectory as {key: value} (a short, a tuple of doubles or a string)."""
    directory = tags.get(GEO_KEY_DIRECTORY)
    if not directory or len(directory) < 4:
        return {}
    doubles = tags.get(GEO_DOUBLE_PARAMS, ())
    ascii_ = tags.get(GEO_ASCII_PARAMS, "")
    if isinstance(ascii_, bytes):
        ascii_ = ascii_.decode("latin-1")
    keys: dict[int, object] = {}
    for i in range(int(directory[3])):
        entry = directory[4 + 4 * i : 8 + 4 * i]
        if len(entry) < 4:
            break
        key, location, count, value = (int(v) for v in entry)
        if location == 0:
            keys[key] = value
        elif location == GEO_DOUBLE_PARAMS:
            keys[key] = tuple(doubles[value : value + count])
        elif location == GEO_ASCII_PARAMS:
            keys[key] = str(ascii_)[value : value + count].rstrip("|\x00")
    return keys


def _transform(tags: dict[int, tuple], keys: dict[int, object]) -> tuple | None:
    matrix = tags.get(MODEL_TRANSFORMATION)
    if matrix is not None and len(matrix) >= 16:
        m = [float(v) for v in matrix]
        t = [m[0], m[1], m[3], m[4], m[5], m[7]]
    else:
        scale, tie = tags.get(MODEL_PIXEL_SCALE), tags.get(MODEL_TIEPOINT)
        if scale is None or tie is None or len(scale) < 2 or len(tie) < 6:
            return None  # no georeference, or ground control points only
        sx, sy = float(scale[0]), float(scale[1])
        i, j, x, y = float(tie[0]), float(tie[1]), float(tie[3]), float(tie[4])
        t = [sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy]
    if keys.get(GT_RASTER_TYPE) == 2:  # pixel is point: the tie point is a pixel's centre
        t[2] -= 0.5 * (t[0] + t[1])
        t[5] -= 0.5 * (t[3] + t[4])
    if not all(math.isfinite(v) for v in t) or t[0] * t[4] - t[1] * t[3] == 0:
        return None
    return tuple(t)


def _georeference_from_tags(tags: dict[int, tuple]) -> Georeference | None:
    keys = _geokeys(tags)
    transform = _transform(tags, keys)
    if transform is None:
        return None
    model = {1: "projected", 2: "geographic", 3: "geocentric"}.get(keys.get(GT_MODEL_TYPE), "")
    pcs, gcs = keys.get(PROJECTED_CS_TYPE), keys.get(GEOGRAPHIC_TYPE)
    if not model:
        model = "projected" if pcs else ("geographic" if gcs else "unknown")
    epsg = pcs if model == "projected" else gcs if model == "geographic" else None
    epsg = epsg if isinstance(epsg, int) and 0 < epsg < USER_DEFINED else None
    unit_m = None
    if model == "projected":
        code = keys.get(PROJ_LINEAR_UNITS)
        size = keys.get(PROJ_LINEAR_UNIT_SIZE)
        if code in LINEAR_UNITS_M:
            unit_m = LINEAR_UNITS_M[code]
        elif isinstance(size, tuple) and size and size[0] > 0:
            unit_m = float(size[0])
        elif code is None and epsg is not None and _utm(epsg):
            unit_m = 1.0  # UTM zones (WGS 84, ETRS89, NAD83) are in metres by definition
    citations = [keys.get(k) for k in (PCS_CITATION, GT_CITATION, GEOG_CITATION)]
    citations = [c for c in citations if isinstance(c, str) and c]
    wkt = next(
        (c.split("=", 1)[1].strip() for c in citations if c.startswith("ESRI PE String")), None
    )
    citation = next((c for c in citations if not c.startswith("ESRI PE String")), "")
    kept = tuple((code, tags[code]) for code in GEO_TAGS if code in tags)
    return Georeference(transform, epsg, model, unit_m, wkt, citation, kept)


def _utm(epsg: int) -> bool:
    return (
        32601 <= epsg <= 32660
        or 32701 <= epsg <= 32760
        or 25828 <= epsg <= 25838
        or (26901 <= epsg <= 26923)
    )


def open_tiff(path: Path):
    """tifffile.TiffFile for ``path``; StonesegError naming the file when it is not a TIFF."""
    tifffile = import_tifffile()
    try:
        return tifffile.TiffFile(path)
    except FileNotFoundError:
        raise StonesegError(f"GeoTIFF not found: {path}") from None
    except Exception as exc:  # TiffFileError, struct errors, truncated BigTIFF headers...
        raise StonesegError(
            f"Cannot read {path.name}: it is damaged or not a TIFF/BigTIFF file ({exc})."
        ) from None


def _page_tags(page) -> dict[int, tuple]:
    out = {}
    for code in (*GEO_TAGS, ORIENTATION):
        tag = page.tags.get(code)
        if tag is not None:
            value = tag.value
            out[code] = value if isinstance(value, (str, bytes)) else tuple(np.ravel(value))
    return out


def read_georeference(path: str | Path) -> Georeference | None:
    """The georeference of a TIFF (header only), or None for a plain image (a logged note)."""
    path = Path(path)
    if not is_tiff(path):
        return None
    with open_tiff(path) as tif:
        try:
            tags = _page_tags(tif.pages[0])
        except Exception as exc:
            raise StonesegError(f"Cannot read {path.name}: damaged TIFF header ({exc}).") from None
    geo = _georeference_from_tags(tags)
    if geo is None:
        log.info(
            "%s has no georeference: it is treated as a plain image (sizes in pixels)", path.name
        )
    elif tags.get(ORIENTATION, (1,))[0] not in (1, None):
        log.warning(
            "%s: a rotated TIFF (Orientation tag) does not fit its georeference; the "
            "georeference is ignored",
            path.name,
        )
        return None
    return geo


def georeference_or_none(path: str | Path) -> Georeference | None:
    """``read_georeference`` for the folder loops: a file tifffile cannot parse is left to the
    photo reader (which names it), and without tifffile the photo is a plain image."""
    try:
        return read_georeference(path)
    except StonesegError as exc:
        log.warning("%s", exc)
        return None


def tiff_shape(path: str | Path) -> tuple[int, ...]:
    """(height, width) or (height, width, samples) of a TIFF's first image, from its header."""
    path = Path(path)
    with open_tiff(path) as tif:
        page = tif.pages[0]
        return tuple(int(v) for v in page.shape)


def read_window(path: str | Path, row: int, col: int, height: int, width: int) -> np.ndarray:
    """Pixels [row:row+height, col:col+width] of a TIFF's first image, as stored.

    Only the tiles (or strips) that the window touches are read and decoded, so a window of
    an orthomosaic larger than memory costs about the window's size. The window is clipped
    to the image. Returns (h, w) or (h, w, samples).
    """
    path = Path(path)
    with open_tiff(path) as tif:
        page = tif.pages[0]
        try:
            return read_tiff_window(page, tif.filehandle, row, col, height, width)
        except StonesegError:
            raise
        except Exception as exc:
            raise StonesegError(decode_error_message(path, page, exc)) from None


def decode_error_message(path: Path, page, exc: Exception) -> str:
    text = str(exc)
    unsupported = "imagecodecs" in text or "compression" in text.lower()
    if unsupported or isinstance(exc, (ImportError, NotImplementedError)):
        return (
            f"Cannot read {path.name}: its compression ({_compression_name(page)}) is not "
            "supported here; install imagecodecs (pip install imagecodecs) or save it with "
            "deflate/LZW compression."
        )
    return f"Cannot read {path.name}: the file is damaged ({text})."


def _compression_name(page) -> str:
    try:
        return page.compression.name
    except Exception:
        return str(getattr(page, "compression", "?"))


def read_tiff_window(page, fh, row: int, col: int, height: int, width: int) -> np.ndarray:
    separate, depth, length, full_width, contig = (int(v) for v in page.shaped[-5:])
    if depth != 1:
        raise StonesegError("3-D (volumetric) TIFFs are not supported.")
    r0, c0 = max(0, int(row)), max(0, int(col))
    r1, c1 = min(length, int(row) + int(height)), min(full_width, int(col) + int(width))
    samples = separate * contig
    out = np.zeros((max(0, r1 - r0), max(0, c1 - c0), samples), page.dtype)
    if out.size == 0:
        return out[..., 0] if samples == 1 else out
    if page.is_tiled:
        seg_h, seg_w = int(page.tilelength), int(page.tilewidth)
    else:
        seg_h, seg_w = int(page.rowsperstrip or length), full_width
        seg_h = min(seg_h, length)
    across, down = -(-full_width // seg_w), -(-length // seg_h)
    offsets, counts = page.dataoffsets, page.databytecounts
    for s in range(separate):
        for ty in range(r0 // seg_h, (r1 - 1) // seg_h + 1):
            for tx in range(c0 // seg_w, (c1 - 1) // seg_w + 1):
                index = s * across * down + ty * across + tx
                if index >= len(offsets) or counts[index] == 0:
                    continue  # a sparse tile: zeros
                fh.seek(offsets[index])
                data = fh.read(counts[index])
                segment, (si, _, y0, x0, _), _ = page.decode(
                    data, index, jpegtables=page.jpegtables
                )
                if segment is None:
                    continue
                seg = np.asarray(segment).reshape(-1, *segment.shape[-3:])[0]  # (h, w, contig)
                ys0, ys1 = max(r0, y0), min(r1, y0 + seg.shape[0])
                xs0, xs1 = max(c0, x0), min(c1, x0 + seg.shape[1])
                if ys1 <= ys0 or xs1 <= xs0:
                    continue
                channels = slice(si * contig, si * contig + contig)
                out[ys0 - r0 : ys1 - r0, xs0 - c0 : xs1 - c0, channels] = seg[
                    ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0
                ]
    return out[..., 0] if samples == 1 else out


# --------------------------------------------------------------------------------- writing


def make_georeference(
    transform: tuple[float, float, float, float, float, float],
    epsg: int,
    geographic: bool = False,
) -> Georeference:
    """A georeference for a north-up (or rotated) raster in an EPSG CRS, with its GeoTIFF tags.

    ``transform`` is (a, b, c, d, e, f) as in ``Georeference``; a projected ``epsg`` is taken
    to be in metres.
    """
    a, b, c, d, e, f = (float(v) for v in transform)
    if geographic:
        keys = [
            (GT_MODEL_TYPE, 2),
            (GT_RASTER_TYPE, 1),
            (GEOGRAPHIC_TYPE, epsg),
            (GEOG_ANGULAR_UNITS, 9102),
        ]
    else:
        keys = [
            (GT_MODEL_TYPE, 1),
            (GT_RASTER_TYPE, 1),
            (PROJECTED_CS_TYPE, epsg),
            (PROJ_LINEAR_UNITS, 9001),
        ]
    directory = [1, 1, 0, len(keys)]
    for key, value in keys:
        directory += [key, 0, 1, value]
    tags: list[tuple[int, tuple]] = [(GEO_KEY_DIRECTORY, tuple(directory))]
    if b == 0 and d == 0 and a > 0 and e < 0:
        tags += [(MODEL_PIXEL_SCALE, (a, -e, 0.0)), (MODEL_TIEPOINT, (0.0, 0.0, 0.0, c, f, 0.0))]
    else:
        matrix = (a, b, 0.0, c, d, e, 0.0, f, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        tags.append((MODEL_TRANSFORMATION, matrix))
    tags.sort()
    geo = _georeference_from_tags(dict(tags))
    assert geo is not None
    return geo


def geotiff_extratags(georef: Georeference | None) -> list[tuple]:
    """``georef``'s GeoTIFF tags as tifffile ``extratags``, copied unchanged (none for None)."""
    extratags = []
    for code, value in georef.tags if georef is not None else ():
        dtype = _TAG_DTYPE.get(code, "d")
        if dtype == "s":
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            extratags.append((code, dtype, 0, value, True))
        else:
            extratags.append((code, dtype, len(value), tuple(value), True))
    return extratags


def encode_tiff(array: np.ndarray, georef: Georeference | None = None) -> bytes:
    """A deflate-compressed, 256x256-tiled TIFF of ``array`` (BigTIFF past 4 GB), carrying
    ``georef``'s tags unchanged."""
    tifffile = import_tifffile()
    arr = np.ascontiguousarray(array)
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        arr,
        photometric="rgb" if arr.ndim == 3 and arr.shape[2] in (3, 4) else "minisblack",
        tile=(TILE, TILE),
        compression="zlib",
        predictor=None,
        extratags=geotiff_extratags(georef),
        metadata=None,
        software="StoneSeg",
        bigtiff=arr.nbytes > 2**32 - 2**25,
    )
    return buf.getvalue()


def write_tiff(path: str | Path, array: np.ndarray, georef: Georeference | None = None) -> None:
    """Write ``array`` as a compressed tiled (Geo)TIFF, atomically; StonesegError when it fails."""
    path = Path(path)
    data = encode_tiff(array, georef)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, path)) from exc


def write_geotiff_mask(path: str | Path, mask: np.ndarray, georef: Georeference | None) -> None:
    """A 0/255 uint8 mask as a GeoTIFF with ``georef``'s transform and CRS."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise StonesegError(f"A mask must be a 2-D array, got shape {mask.shape}.")
    write_tiff(path, np.where(mask > 0, 255, 0).astype(np.uint8), georef)
