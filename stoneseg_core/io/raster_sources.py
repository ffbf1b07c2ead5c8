"""A big photo read by windows: uint8 RGB windows of a photo too large to hold (no torch).

``open_photo`` gives a source of windows: a tiled or striped TIFF through ``geo``'s window
reader, an uncompressed one through a memory map (``TiffWindows``); never whole.

Limits: a photo the window reader cannot read by windows -- a PNG or JPEG, a TIFF in one
compressed strip (or strips of more than 64 MB decoded), a TIFF in a colour space other than
grey/RGB(A), of more than 8 bits or rotated by its Orientation tag -- is read whole (as
``images.read_image`` reads it: uint8 RGB; ``WholePhoto``) when that fits in the memory
available, about 6 bytes per pixel plus the file; otherwise it is refused before anything
is written, with a message naming the file and how to save it tiled.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Protocol

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.io import geo
from stoneseg_core.io.images import image_size, read_image

# a TIFF whose tiles or strips decode to more than this is not read by windows
MAX_SEGMENT_BYTES = 64 * 2**20


class PhotoSource(Protocol):
    """What ``open_photo`` gives: windows of a photo as uint8 RGB."""

    windowed: bool  # read by windows (False: held whole, it could not be)
    shape: tuple[int, int]  # (H, W)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray: ...

    def close(self) -> None: ...


class WholePhoto:
    """A photo held whole (uint8 RGB); ``why``: why it could not be read by windows."""

    windowed = False

    def __init__(self, image: np.ndarray, why: str = ""):
        self.image, self.why = image, why
        self.shape = image.shape[:2]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.image[y0:y1, x0:x1]

    def close(self) -> None:
        self.image = None


class TiffWindows:
    """A TIFF's first image read by windows; each window converted to uint8 RGB.
    ``strips``: it decodes whole strips (windows spanning its width read it best)."""

    windowed = True

    def __init__(self, path: Path, tif, page, memmap: np.ndarray | None):
        self.path, self.tif, self.page, self.memmap = path, tif, page, memmap
        self.shape = (int(page.imagelength), int(page.imagewidth))
        self.strips = memmap is None and not page.is_tiled

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self.memmap is not None:
            arr = np.asarray(self.memmap[y0:y1, x0:x1])
        else:
            try:
                arr = geo.read_tiff_window(self.page, self.tif.filehandle, y0, x0, y1 - y0, x1 - x0)
            except StonesegError as exc:
                raise StonesegError(f"Cannot read {self.path.name}: {exc}") from None
            except Exception as exc:
                raise StonesegError(geo.decode_error_message(self.path, self.page, exc)) from None
        if arr.ndim == 2:
            return np.repeat(arr[:, :, None], 3, axis=2)
        if arr.shape[2] == 1:
            return np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr[:, :, :3])

    def close(self) -> None:
        self.memmap = None
        self.tif.close()


class LazyPhoto:
    """The photo of a source as far as a scale estimate looks at it: its shape, and the
    windows it slices (read when sliced), never the whole."""

    def __init__(self, source: PhotoSource):
        self.source = source
        self.shape = (*source.shape, 3)

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key
        h, w = self.source.shape
        y0, y1, _ = rows.indices(h)
        x0, x1, _ = cols.indices(w)
        return self.source.read(y0, y1, x0, x1)


def _why_not_windowed(page) -> str | None:
    """Why a TIFF page cannot be read by windows here, or None when it can."""
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    samples = int(page.samplesperpixel)
    if int(getattr(page, "imagedepth", 1) or 1) > 1:
        return "it is a 3-D (volumetric) TIFF"
    if dtype != np.uint8:
        return f"its pixels are {dtype} (only 8-bit photos are read by windows)"
    if int(page.photometric) not in (1, 2) or samples not in (1, 3, 4):
        return f"its colour space ({page.photometric.name}, {samples} samples) is not grey or RGB"
    orientation = page.tags.get(geo.ORIENTATION)
    if orientation is not None and int(orientation.value) not in (0, 1):
        return "it is rotated by its Orientation tag"
    if page.is_tiled:
        rows, cols = int(page.tilelength), int(page.tilewidth)
        what = f"its tiles of {cols} x {rows} pixels"
    else:
        rows, cols = (
            min(int(page.rowsperstrip or page.imagelength), int(page.imagelength)),
            int(page.imagewidth),
        )
        what = "its one strip" if rows >= int(page.imagelength) else f"its strips of {rows} rows"
    if _memmappable(page):
        return None
    if rows * cols * samples > MAX_SEGMENT_BYTES:
        size = rows * cols * samples / 1e6
        return f"{what} each decode to {size:.0f} MB"
    return None


def _memmappable(page) -> bool:
    contig = int(page.samplesperpixel) == 1 or int(page.planarconfig) == 1
    return bool(page.is_memmappable) and contig and int(page.compression) == 1


def _header_size(path: Path) -> tuple[int, int]:
    """(H, W) of a PNG or any other photo from its header (PIL refuses to open photos past
    ~179 MP; a PNG's IHDR is read directly)."""
    if path.suffix.lower() == ".png":
        try:
            with open(path, "rb") as fh:
                head = fh.read(24)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(h), int(w)
        except OSError:
            pass
    w, h = image_size(path)
    return h, w


def photo_shape(path: str | Path) -> tuple[int, int]:
    """(H, W) of a photo from its header, without decoding it."""
    path = Path(path)
    if geo.is_tiff(path):
        shape = geo.tiff_shape(path)
        return int(shape[0]), int(shape[1])
    return _header_size(path)


def _available_memory() -> int | None:
    """MemAvailable (bytes) on Linux; None where it is not known."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _open_tiff_windows(path: Path) -> tuple[TiffWindows | None, str, int, int]:
    """(the TIFF's windows, "", H, W), or (None, why it cannot be read by windows, H, W)."""
    tif = geo.open_tiff(path)
    try:
        page = tif.pages[0]
        why = _why_not_windowed(page)
        h, w = int(page.imagelength), int(page.imagewidth)
        if why is not None:
            return None, why, h, w
        memmap = None
        if _memmappable(page):
            memmap = geo.import_tifffile().memmap(path, page=0, mode="r")
            memmap = memmap.reshape(h, w, -1)
        source = TiffWindows(path, tif, page, memmap)
        tif = None  # the source owns it now
        return source, "", h, w
    except StonesegError:
        raise
    except Exception as exc:
        raise StonesegError(f"Cannot read {path.name}: damaged TIFF header ({exc}).") from None
    finally:
        if tif is not None:
            tif.close()


def open_photo(path: str | Path, memory_limit: int | None = None) -> PhotoSource:
    """A source of uint8 RGB windows of the photo at ``path``: by windows where it can be
    read so, else the photo read whole if about 6 bytes per pixel plus the file fit in
    ``memory_limit`` (default: the memory available now). StonesegError naming the file
    otherwise."""
    path = Path(path)
    if not path.is_file():
        raise StonesegError(f"Image not found: {path}")
    if geo.is_tiff(path):
        source, why, h, w = _open_tiff_windows(path)
        if source is not None:
            return source
    else:
        h, w = _header_size(path)
        why = f"a {path.suffix.lstrip('.').upper()} file cannot be read by windows"
    need = 6 * h * w + path.stat().st_size
    limit = _available_memory() if memory_limit is None else memory_limit
    if limit is not None and need > limit:
        raise StonesegError(
            f"Cannot segment {path.name} ({w} x {h} pixels): it cannot be read window by "
            f"window ({why}) and reading it whole needs about {need / 1e9:.1f} GB, with "
            f"{limit / 1e9:.1f} GB available. Save it as a tiled TIFF (for example "
            "gdal_translate -co TILED=YES -co COMPRESS=DEFLATE) and segment that."
        )
    return WholePhoto(read_image(path), why)
