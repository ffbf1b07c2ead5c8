"""Loading a photo and its mask for the editor, on a worker thread: ``load_for_editing``
makes the ``LoadedImage`` the session opens, ``close_display`` lets go of one not kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stoneseg_core.display.tiff_tiles import is_big_tiff_photo
from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.errors import MaskError
from stoneseg_core.io.images import read_image, read_mask

from .display import DisplayImage, make_display_image
from .tiled_photo import TiledPhoto


@dataclass(frozen=True)
class LoadedImage:
    path: Path
    display: DisplayImage | TiledPhoto  # a TiledPhoto for a TIFF too big to hold whole
    mask: np.ndarray | None  # None: no mask saved yet
    mask_error: str | None  # the saved mask exists but cannot be used
    # a big photo's document, made on the worker too (its mask is hundreds of MB to copy)
    document: MaskDocument | None = None


def load_for_editing(image_path: Path, mask_path: Path) -> LoadedImage:
    """Decode a photo and its mask (runs on a worker thread). Raises ImageReadError.

    A TIFF of more than ``BIG_PHOTO_PIXELS`` (an orthomosaic) is not decoded: its header is
    checked and the canvas draws it tile by tile (``TiledPhoto``)."""
    if is_big_tiff_photo(image_path):
        display: DisplayImage | TiledPhoto = TiledPhoto.open(image_path)
    else:
        display = make_display_image(read_image(image_path))
    mask, error = None, None
    if mask_path.is_file():
        try:
            mask = read_mask(mask_path, expected_size=(display.height, display.width))
        except MaskError as exc:
            error = str(exc)
        except BaseException:
            close_display(display)
            raise
    document = None
    if isinstance(display, TiledPhoto):  # made (and its memory mapped in) here
        shape = (display.height, display.width)
        document = MaskDocument(mask) if mask is not None else MaskDocument(shape=shape)
    return LoadedImage(Path(image_path), display, mask, error, document)


def close_display(display: DisplayImage | TiledPhoto | None) -> None:
    """Let go of a photo's display: a big photo's tile threads and file (a photo held whole
    needs nothing)."""
    if isinstance(display, TiledPhoto):
        display.close()
