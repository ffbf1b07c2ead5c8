"""A photo ready to draw: the RGB array and its pyramid of halved copies (built off the GUI thread),
and what is under the pointer.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtGui import (
    QImage,
)

PYRAMID_MIN_SIDE = 1024


# ----------------------------------------------------------------------------- photo data
@dataclass(frozen=True)
class PyramidLevel:
    fx: float  # level width / full width
    fy: float
    image: QImage
    array: np.ndarray  # keeps the QImage's memory alive


@dataclass(frozen=True)
class DisplayImage:
    """A photo ready to show: the RGB array and its pyramid. Safe to build off the GUI thread."""

    rgb: np.ndarray
    levels: tuple[PyramidLevel, ...]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    def pixel_rgb(self, x: int, y: int) -> tuple[int, int, int] | None:
        r, g, b = (int(v) for v in self.rgb[y, x])
        return r, g, b


def _qimage_rgb(arr: np.ndarray) -> QImage:
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)


def make_display_image(rgb: np.ndarray) -> DisplayImage:
    """Wrap ``rgb`` (H, W, 3 uint8) and build halved copies down to about 1000 pixels."""
    arr = np.ascontiguousarray(rgb)
    h, w = arr.shape[:2]
    levels = [PyramidLevel(1.0, 1.0, _qimage_rgb(arr), arr)]
    level = arr
    while max(level.shape[:2]) > PYRAMID_MIN_SIDE:
        lh, lw = level.shape[:2]
        level = cv2.resize(level, (max(1, lw // 2), max(1, lh // 2)), interpolation=cv2.INTER_AREA)
        level = np.ascontiguousarray(level)
        levels.append(
            PyramidLevel(level.shape[1] / w, level.shape[0] / h, _qimage_rgb(level), level)
        )
    return DisplayImage(arr, tuple(levels))


@dataclass(frozen=True)
class PixelInfo:
    """What is under the pointer, for the status bar."""

    x: int
    y: int
    stone: bool | None
    rgb: tuple[int, int, int] | None
