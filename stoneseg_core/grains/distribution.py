"""Grain-size distributions: psi, the cumulative curve and its percentiles (D10 ... D90).

The definition of D_p is in the package docstring (``stoneseg_core.grains``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import StonesegError

if TYPE_CHECKING:
    from .measure import Stone

Weighting = Literal["count", "area"]
WEIGHTINGS: tuple[str, ...] = ("count", "area")
DEFAULT_PERCENTILES: tuple[float, ...] = (10, 16, 50, 84, 90)


def psi(mm: float | np.ndarray) -> float | np.ndarray:
    """psi = log2(size in mm): 1 mm -> 0, 64 mm -> 6. Krumbein's phi is its negative."""
    if np.isscalar(mm):
        if not mm > 0:
            raise StonesegError(f"psi needs a positive size in mm, got {mm}.")
        return math.log2(mm)
    arr = np.asarray(mm, dtype=np.float64)
    if np.any(arr <= 0):
        raise StonesegError("psi needs positive sizes in mm.")
    return np.log2(arr)


@dataclass(frozen=True, eq=False)
class GrainSizeCurve:
    """Cumulative grain-size curve: ``fraction_finer[k]`` of the stones (or of their area) have size <= ``sizes[k]``.

    ``sizes`` are the distinct sizes, increasing; the curve is what a plot draws (x = size,
    y = 100 * fraction_finer) and what ``percentile`` interpolates.
    """

    sizes: np.ndarray
    fraction_finer: np.ndarray
    by: str
    n_stones: int
    unit: str = "mm"

    def percentile(self, p: float) -> float | None:
        """D_p: the size at which the curve reaches p %; None for an empty curve."""
        if not 0 <= p <= 100:
            raise StonesegError(f"A percentile must be between 0 and 100, got {p}.")
        if self.sizes.size == 0:
            return None
        return float(np.interp(p / 100.0, self.fraction_finer, self.sizes))

    def percentiles(self, ps: Sequence[float] = DEFAULT_PERCENTILES) -> dict[float, float | None]:
        return {p: self.percentile(p) for p in ps}


def _check_by(by: str) -> None:
    if by not in WEIGHTINGS:
        raise StonesegError(f"Weighting must be 'count' or 'area', got {by!r}.")


def grain_size_distribution(
    sizes: Sequence[float] | np.ndarray,
    by: Weighting = "count",
    areas: Sequence[float] | np.ndarray | None = None,
    unit: str = "mm",
) -> GrainSizeCurve:
    """Cumulative curve of ``sizes``, each stone weighing 1 (by='count') or its area (by='area').

    By area, a large stone counts as much as the many small ones covering the same
    ground, which is what a photo sieve (areal sampling) measures; by count matches a
    Wolman pebble count. The definition of the curve is in the module docstring.
    """
    _check_by(by)
    x = np.asarray(sizes, dtype=np.float64).ravel()
    if by == "count":
        wts = np.ones_like(x)
    else:
        if areas is None:
            raise StonesegError("An area-weighted distribution needs the area of every stone.")
        wts = np.asarray(areas, dtype=np.float64).ravel()
        if wts.shape != x.shape:
            raise StonesegError(f"Got {x.size} sizes but {wts.size} areas.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(wts))):
        raise StonesegError("Grain sizes and areas must be finite numbers.")
    if np.any(wts < 0):
        raise StonesegError("Stone areas cannot be negative.")
    keep = wts > 0
    x, wts = x[keep], wts[keep]
    if x.size == 0:
        return GrainSizeCurve(np.empty(0), np.empty(0), by, int(keep.size), unit)
    uniq, inverse = np.unique(x, return_inverse=True)
    per_size = np.bincount(inverse, weights=wts, minlength=uniq.size)
    cum = np.cumsum(per_size)
    return GrainSizeCurve(uniq, cum / cum[-1], by, int(keep.size), unit)


def percentiles(
    sizes: Sequence[float] | np.ndarray,
    by: Weighting = "count",
    areas: Sequence[float] | np.ndarray | None = None,
    ps: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[float, float | None]:
    """{p: D_p} for the given sizes; see the module docstring for the exact definition."""
    return grain_size_distribution(sizes, by, areas).percentiles(ps)


def included(stones: Iterable[Stone]) -> list[Stone]:
    return [s for s in stones if not s.excluded]


def distribution_of(
    stones: Iterable[Stone], by: Weighting = "count", unit: str | None = None
) -> GrainSizeCurve:
    """Curve of the stones that are not excluded, by their b-axis.

    The unit is mm when the stones have a scale, px when none has; ``unit`` sets it for a
    photo whose stones are all excluded (or that has none), so its table keys stay the same.
    """
    stones = list(stones)
    scaled = [s.mm_per_px is not None for s in stones]
    if any(scaled) and not all(scaled):
        raise StonesegError(
            "Cannot pool stones measured in millimetres with stones measured only in pixels: "
            "give every photo a scale, or none."
        )
    if unit is None:
        unit = "mm" if stones and all(scaled) else "px"
    elif stones and unit != ("mm" if all(scaled) else "px"):
        raise StonesegError(f"These stones are not measured in {unit}.")
    kept = included(stones)
    return grain_size_distribution([s.size for s in kept], by, [s.area for s in kept], unit)


def _percentile_block(curve: GrainSizeCurve, ps: Sequence[float]) -> dict[str, Any]:
    block: dict[str, Any] = {"n_stones": curve.n_stones, "unit": curve.unit}
    for p, v in curve.percentiles(ps).items():
        name = f"D{p:g}"
        block[f"{name}_{curve.unit}"] = v
        if curve.unit == "mm":
            block[f"{name}_psi"] = None if v is None else psi(v)
    return block
