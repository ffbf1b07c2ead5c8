"""Resizing a photo window by window to exactly what resizing it whole gives (no torch).

Each side of n photo pixels becomes round(n x scale) working pixels, as in any resize
(``work_scale.scaled_size``), and its ratio is taken as the fraction p/q (q <= 1024)
nearest that: the photo is seen as cells of q photo pixels that become p (``ScaledSide``).
A window whose edges lie on cell edges resizes (OpenCV's area averaging to shrink, bilinear
in float to enlarge: ``resize_to_work``) to exactly the pixels the whole photo's resize has
there (the last, partial cell included); bilinear needs one cell of margin. The probability
goes back to the photo's size the same way (``resize_to_photo``). (Where a side's rounding
lands on a half, the photo is padded to whole cells instead, in both paths: ``pad_edge``.)
Against a resize straight to round(n x scale), pixels are placed a few hundredths of a
working pixel apart across a 2000-pixel photo, a quarter at most across a 20000-pixel one
(less than that resize's own rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from stoneseg_core.errors import StonesegError

# the side of the photo windows read and resized at a time (photo pixels, rounded to cells)
READ_SIDE = 2048
MAX_DENOMINATOR = 1024  # the most photo pixels in a cell


def check_scale(scale) -> float:
    """``scale`` (working pixels per photo pixel) as a float; StonesegError unless positive."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise StonesegError(f"The working scale must be a positive number, got {scale!r}.")
    return float(scale)


@dataclass(frozen=True)
class ScaledSide:
    """One side of the photo at the working scale: ``n`` photo pixels become ``work``; cells
    of ``q`` photo pixels become ``p`` working pixels. ``padded``: the photo is padded (its
    edge pixels repeated) to whole cells, ``cells`` x ``q`` pixels."""

    n: int
    p: int
    q: int
    work: int
    padded: bool

    @property
    def cells(self) -> int:
        return -(-self.n // self.q)

    @property
    def ratio(self) -> float:
        return self.p / self.q


def scaled_side(n: int, scale: float) -> ScaledSide:
    """A side of ``n`` photo pixels at ``scale``: its working size is round(n x scale), as
    any whole-photo resize makes it (``work_scale.scaled_size``), and its ratio the
    fraction p/q (q <= 1024; enlarging, 3 p <= READ_SIDE) nearest that size / n, so that
    cells of q pixels resize to exactly p (module docstring). Where n p/q is within 1e-6 of
    a half (a window's resize could round the other way) the photo is padded to whole cells
    instead."""
    target = max(1, round(n * check_scale(scale)))
    # enlarging, a window has a cell of margin on each side, in float: cells kept small
    # enough that three of them span at most READ_SIDE working pixels
    most = MAX_DENOMINATOR if target <= n else max(1, int(READ_SIDE * n / (3 * target)))
    f = Fraction(target, n).limit_denominator(min(MAX_DENOMINATOR, most))
    p, q = max(1, f.numerator), f.denominator
    if n % q == 0:
        return ScaledSide(n, p, q, n // q * p, False)
    x = n * (p / q)
    back = round(x) * (q / p)
    if round(x) >= 1 and min(abs(x % 1 - 0.5), abs(back % 1 - 0.5)) > 1e-6:
        return ScaledSide(n, p, q, int(round(x)), False)
    return ScaledSide(n, p, q, -(-n // q) * p, True)


def resize_to_work(window: np.ndarray, rows: ScaledSide, cols: ScaledSide) -> np.ndarray:
    """A window on cell edges at the working scale (uint8): area averaging to shrink,
    bilinear (in float, rounded) to enlarge; exact on cell edges (module docstring).
    ``rows``/``cols``: the photo's height and width at the working scale."""
    if rows.p == rows.q and cols.p == cols.q:
        return window
    fx, fy = cols.ratio, rows.ratio
    if rows.p <= rows.q and cols.p <= cols.q:
        return cv2.resize(window, None, fx=fx, fy=fy, interpolation=cv2.INTER_AREA)
    big = cv2.resize(window.astype(np.float32), None, fx=fx, fy=fy, interpolation=cv2.INTER_LINEAR)
    return cv2.convertScaleAbs(big)


def resize_to_photo(prob: np.ndarray, rows: ScaledSide, cols: ScaledSide) -> np.ndarray:
    """Working-scale probability on cell edges -> photo pixels (bilinear, float32)."""
    if rows.p == rows.q and cols.p == cols.q:
        return prob
    return cv2.resize(
        prob, None, fx=1 / cols.ratio, fy=1 / rows.ratio, interpolation=cv2.INTER_LINEAR
    )


def pad_edge(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` padded below and right to ``height`` x ``width``, its edge pixels repeated."""
    h, w = image.shape[:2]
    if h == height and w == width:
        return image
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
