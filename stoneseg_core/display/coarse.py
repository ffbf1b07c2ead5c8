"""Coarse levels of a TIFF photo without overview levels, built once and kept in the user's
cache folder.

For such a file a coarse tile costs decoding a large part of the photo (the fitted view of a
20000-px orthomosaic: all of it), so levels ``coarse_from_level`` and up (1/4 of the photo,
or coarser for a photo whose 1/4 would pass ``COARSE_MAX_BYTES``) are made once, in one pass
over the file by bands of rows (``build_coarse_levels``), and kept in the user's cache folder
(``coarse_cache_dir``), keyed by the file's path, size and modification time and checked by
a SHA-256 of their bytes (a damaged or stale entry is built again). They are held in memory
(100 MB at most: 100 MB for 20000 x 20000) and a tile at those levels is a slice of them
(``TiffTileSource.set_coarse_levels``). No Qt, no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.display import tiff_tiles  # BAND_BYTES read when used (tests lower it)
from stoneseg_core.display.grid import PyramidGrid
from stoneseg_core.display.tiff_tiles import TiffTileSource, rgb8
from stoneseg_core.io.cache import user_cache_root

log = logging.getLogger(__name__)

COARSE_MIN_LEVEL = 2  # coarse levels: from 1/4 of the photo (a fitted view on a big screen)
COARSE_MAX_BYTES = 96 * 1024 * 1024  # ...or from the first level that fits in this (RGB)
COARSE_FORMAT = "stoneseg-coarse-levels-1"  # change when the levels change: old ones go unused
COARSE_CACHE_DIR: Path | None = None  # where coarse levels are kept (None: coarse_cache_dir())


def _halve(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mean of 2 x 2 blocks to ``size`` (width, height) = ceil of half (the edge repeated)."""
    h, w = arr.shape[:2]
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def coarse_from_level(grid: PyramidGrid) -> int:
    """The finest level kept as coarse levels: ``COARSE_MIN_LEVEL``, or the first coarser
    one within ``COARSE_MAX_BYTES``."""
    level = COARSE_MIN_LEVEL
    while level < grid.top and math.prod(grid.level_size(level)) * 3 > COARSE_MAX_BYTES:
        level += 1
    return min(level, grid.top)


def build_coarse_levels(
    source: TiffTileSource,
    from_level: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[int, np.ndarray] | None:
    """Levels ``from_level`` (default ``coarse_from_level``) .. ``grid.top`` of the photo,
    RGB uint8, in one pass over its full-size pixels by bands of rows (at most
    ``tiff_tiles.BAND_BYTES`` read at once): each band is reduced to ``from_level`` (means of
    2**from_level blocks), the coarser levels are halvings of that. ``progress(fraction)``
    after each band; None when stopped."""
    grid = source.grid
    if from_level is None:
        from_level = coarse_from_level(grid)
    from_level = max(0, min(int(from_level), grid.top))
    f = 1 << from_level
    width, height = source.width, source.height
    out_w, out_h = grid.level_size(from_level)
    out = np.empty((out_h, out_w, 3), np.uint8)
    full = source.stored_levels[0]
    page = source.page(full)
    seg_h = int(page.tilelength) if page.is_tiled else int(page.rowsperstrip or height)
    unit = math.lcm(f, max(1, min(seg_h, 4096)))
    itemsize = page.dtype.itemsize * max(1, int(page.samplesperpixel))
    band = max(unit, (tiff_tiles.BAND_BYTES // max(1, width * itemsize)) // unit * unit)
    for r in range(0, height, band):
        if should_stop is not None and should_stop():
            return None
        rows = min(band, height - r)
        piece = rgb8(source.read_window(full, r, 0, rows, width), source.value_range)
        ph, pw = -rows % f, -width % f
        if ph or pw:
            piece = np.pad(piece, ((0, ph), (0, pw), (0, 0)), mode="edge")
        o0 = r // f
        n = piece.shape[0] // f
        out[o0 : o0 + n] = cv2.resize(piece, (out_w, n), interpolation=cv2.INTER_AREA)
        if progress is not None:
            progress(min(1.0, (r + rows) / height))
    levels = {from_level: out}
    for level in range(from_level + 1, grid.top + 1):
        levels[level] = _halve(levels[level - 1], grid.level_size(level))
    return levels


def coarse_cache_dir() -> Path:
    """Where coarse levels are kept: ``COARSE_CACHE_DIR`` if set, else beside the ONNX
    cache (``STONESEG_CACHE_DIR`` wins, else the user's cache folder)."""
    if COARSE_CACHE_DIR is not None:
        return Path(COARSE_CACHE_DIR)
    return user_cache_root() / "pyramid"


def _coarse_key(path: Path) -> tuple[str, dict]:
    st = path.stat()
    ident = {
        "format": COARSE_FORMAT,
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
    return digest, ident


def _coarse_files(path: Path, folder: Path | None) -> tuple[Path, Path, dict]:
    digest, ident = _coarse_key(Path(path))
    folder = coarse_cache_dir() if folder is None else Path(folder)
    return folder / f"{digest}.bin", folder / f"{digest}.json", ident


def save_coarse_levels(
    path: str | Path, levels: dict[int, np.ndarray], folder: str | Path | None = None
) -> Path | None:
    """Keep ``levels`` of the photo at ``path`` in the cache (atomically: the data, then the
    description that names its SHA-256). None (logged) when the cache cannot be written."""
    from stoneseg_core.io.images import atomic_write_bytes

    try:
        data_path, meta_path, ident = _coarse_files(Path(path), folder)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        chunks = [np.ascontiguousarray(levels[k]).reshape(-1).data for k in sorted(levels)]
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        meta = {
            **ident,
            "levels": [[k, *levels[k].shape] for k in sorted(levels)],
            "sha256": h.hexdigest(),
        }
        atomic_write_bytes(data_path, chunks)
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        return data_path
    except OSError as exc:
        log.warning("Cannot keep the coarse levels of %s in the cache: %s", Path(path).name, exc)
        return None


def load_coarse_levels(
    path: str | Path, grid: PyramidGrid, folder: str | Path | None = None
) -> dict[int, np.ndarray] | None:
    """The cached coarse levels of the photo at ``path`` when they are there, for this very
    file (path, size, modification time) and this grid, and their bytes check; else None
    (a damaged or stale entry is removed, to be built again)."""
    try:
        data_path, meta_path, ident = _coarse_files(Path(path), folder)
    except OSError:
        return None
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if any(meta.get(k) != v for k, v in ident.items()):
            raise ValueError("made from another file")
        shapes = [tuple(int(v) for v in entry) for entry in meta["levels"]]
        for level, h, w, c in shapes:
            if (w, h) != grid.level_size(level) or c != 3:
                raise ValueError(f"level {level} is {w} x {h}")
        data = data_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ValueError("its bytes do not match their checksum")
        levels, offset = {}, 0
        for level, h, w, c in shapes:
            n = h * w * c
            levels[level] = np.frombuffer(data, np.uint8, n, offset).reshape(h, w, c)
            offset += n
        if offset != len(data):
            raise ValueError("its size is wrong")
        return levels
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("Cached coarse levels of %s not used (%s): building them again",
                    Path(path).name, exc)  # fmt: skip
        for stale in (meta_path, data_path):
            try:
                stale.unlink()
            except OSError:
                pass
        return None
