"""The image list's thumbnails: small previews made in a worker (JPEGs decoded at reduced
scale, big TIFFs from their overviews), each with the photo's look for the order to label in
(``inference.label_order.appearance``); an unreadable photo yields its error instead."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage, QPixmap

from stoneseg_core.display.tiff_tiles import TiffTileSource, is_big_tiff_photo
from stoneseg_core.errors import ImageReadError
from stoneseg_core.inference.label_order import appearance
from stoneseg_core.io.images import read_image

log = logging.getLogger(__name__)

THUMB_SIZE = 96  # stored; drawn at 56 logical pixels


@dataclass(frozen=True)
class Thumbnail:
    path: Path
    rgb: np.ndarray | None
    error: str | None
    look: np.ndarray | None = None  # inference.label_order.appearance of the thumbnail


def _jpeg_is_truncated(path: Path) -> bool:
    """No end-of-image marker: the file broke off (the core says the same when opening it)."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\xff\xd8":
            return False
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        tail = fh.read().rstrip(b"\x00")
    return b"\xff\xd9" not in tail


def make_thumbnail(path: Path, size: int = THUMB_SIZE) -> np.ndarray:
    """A small RGB preview. JPEGs decode at reduced scale (fast on 12 MP photos).

    Raises ImageReadError, with the core's message, when the photo cannot be read. A big
    TIFF (an orthomosaic) is read by windows, from its smallest overview when it has one,
    never whole.
    """
    from PIL import Image, ImageOps

    if is_big_tiff_photo(path):
        source = TiffTileSource(path)
        try:
            return source.thumbnail(size)
        finally:
            source.close()

    try:
        if _jpeg_is_truncated(path):
            raise OSError("truncated")
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr"):
                raise OSError(f"mode {im.mode} needs the full reader")
            im.draft("RGB", (size * 2, size * 2))
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((size, size), Image.Resampling.BILINEAR)
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    except Exception:
        rgb = read_image(path)
    import cv2

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale < 1:
        rgb = cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    return np.ascontiguousarray(rgb)


def iter_thumbnails(paths: Sequence[Path], size: int = THUMB_SIZE) -> Iterator[Thumbnail]:
    """Yield one ``Thumbnail`` per photo; an unreadable photo yields its error instead."""
    for path in paths:
        try:
            rgb = make_thumbnail(path, size)
            yield Thumbnail(path, rgb, None, appearance(rgb))
        except ImageReadError as exc:
            yield Thumbnail(path, None, str(exc))
        except Exception as exc:
            log.warning("Thumbnail of %s failed: %s", path, exc)
            yield Thumbnail(path, None, f"Cannot read image {path.name}: {exc}")


def pixmap_from_rgb(rgb: np.ndarray) -> QPixmap:
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image)
