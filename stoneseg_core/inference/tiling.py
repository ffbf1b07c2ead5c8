"""Where the network's tiles go on a working-scale image, and how they blend (no torch).

Shared by the whole-photo pass (``predict.Segmenter``) and the windowed one (``large``): both
must put the same tiles at the same places for their results to agree.
"""

from __future__ import annotations

import cv2
import numpy as np

MULTIPLE = 32


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` that overlap by >= ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """2-D weight that ramps from near 0 at a tile's border to 1 inside ``overlap`` pixels."""
    if overlap <= 0:
        return np.ones((tile, tile), np.float32)
    ramp = np.ones(tile, np.float32)
    edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    ramp[:overlap] = edge
    ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` padded at the bottom and right to ``height`` x ``width`` (mirrored)."""
    h, w = image.shape[:2]
    if h == height and w == width:
        return image
    mode = cv2.BORDER_REFLECT_101 if h > 1 and w > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, mode)


def round_up(x: int, m: int = MULTIPLE) -> int:
    return -(-x // m) * m
