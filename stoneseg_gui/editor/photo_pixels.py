"""The photo shown, as the smart tools read it (``stoneseg_core.editing.smart_regions.PhotoPixels``):
a photo held whole is its array; a big one (``TiledPhoto``) is read from its file a window
at a time (the wand's window, GrabCut's box), never whole."""

from __future__ import annotations

import numpy as np

from stoneseg_core.editing.region import Region
from stoneseg_core.editing.smart_regions import ArrayPhoto, PhotoPixels

from .display import DisplayImage
from .tiled_photo import TiledPhoto


class TiledPhotoPixels:
    """``PhotoPixels`` of a big photo: full-size windows read from its TIFF (on the thread
    that asks; the file's source keeps a handle per thread)."""

    def __init__(self, photo: TiledPhoto) -> None:
        self.photo = photo

    @property
    def width(self) -> int:
        return self.photo.width

    @property
    def height(self) -> int:
        return self.photo.height

    def read(self, region: Region, step: int = 1) -> np.ndarray:
        rect = (region.left, region.top, region.right, region.bottom)
        size = (max(1, region.width // step), max(1, region.height // step))
        rgb = self.photo.source.read_region(rect, size)
        assert rgb is not None  # only a should_stop stops a read
        return rgb


def photo_pixels(display: DisplayImage | TiledPhoto | None) -> PhotoPixels | None:
    """What the smart tools read of ``display`` (None: no photo)."""
    if isinstance(display, TiledPhoto):
        return TiledPhotoPixels(display)
    if isinstance(display, DisplayImage):
        return ArrayPhoto(display.rgb)
    return None
