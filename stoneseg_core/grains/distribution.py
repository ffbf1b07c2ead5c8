"""Grain-size distributions: psi, the cumulative curve and its percentiles (D10 ... D90).

The definition of D_p is in the package docstring (``stoneseg_core.grains``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.measure import Stone
from stoneseg_core.grains.units import psi

Weighting = Literal["count", "area"]
WEIGHTINGS: tuple[str, ...] = ("count", "area")
DEFAULT_PERCENTILES: tuple[float, ...] = (10, 16, 50, 84, 90)


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


def check_weighting(by: str) -> None:
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
    check_weighting(by)
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


def percentile_block(
    curve: GrainSizeCurve,
    ps: Sequence[float],
    intervals: dict[float, tuple[float, float] | None] | None = None,
    bootstrap: Bootstrap | None = None,
) -> dict[str, Any]:
    """{"n_stones", "unit", "D50_mm", "D50_psi", ...}; with ``intervals`` (of ``bootstrap``)
    each value is followed by its interval, e.g. "D50_mm_ci95": [low, high] (None: no stones)."""
    block: dict[str, Any] = {"n_stones": curve.n_stones, "unit": curve.unit}
    suffix = (bootstrap or DEFAULT_BOOTSTRAP).suffix
    for p, v in curve.percentiles(ps).items():
        name = f"D{p:g}"
        ci = None if intervals is None else intervals.get(p)
        block[f"{name}_{curve.unit}"] = v
        if intervals is not None:
            block[f"{name}_{curve.unit}_{suffix}"] = None if ci is None else [ci[0], ci[1]]
        if curve.unit == "mm":
            block[f"{name}_psi"] = None if v is None else psi(v)
            if intervals is not None:
                block[f"{name}_psi_{suffix}"] = (
                    None if ci is None else [float(psi(ci[0])), float(psi(ci[1]))]
                )
    return block


# ------------------------------------------------------------------ bootstrap intervals


@dataclass(frozen=True)
class Bootstrap:
    """How the confidence interval of each D_p is found: the stones are resampled with
    replacement ``resamples`` times, D_p is recomputed on every resample, and the interval is
    the (1 - level)/2 and (1 + level)/2 percentiles of those values (the percentile bootstrap,
    as ImageGrains reports it). ``seed`` fixes the draws, so the same stones always give the
    same interval.
    """

    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.resamples) != self.resamples or self.resamples < 2:
            raise StonesegError(f"A bootstrap needs 2 or more resamples, got {self.resamples}.")
        if int(self.seed) != self.seed or self.seed < 0:
            raise StonesegError(f"A bootstrap's seed is a whole number >= 0, got {self.seed}.")
        if not 0 < self.level < 1:
            raise StonesegError(f"A confidence level must lie in (0, 1), got {self.level}.")

    @property
    def suffix(self) -> str:
        """The key suffix of an interval: "ci95" for level 0.95."""
        return f"ci{100 * self.level:.10g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": (
                "percentile bootstrap over stones: the stones kept are resampled with replacement, D_p "
                "recomputed on each resample (by count or by area, as the block), and the interval is "
                "the (1 - level)/2 and (1 + level)/2 percentiles of the resampled D_p; psi intervals "
                "are log2 of the mm ones"
            ),
            "resamples": int(self.resamples),
            "level": float(self.level),
            "seed": int(self.seed),
            "keys": f"D<p>_<unit>_{self.suffix} and D<p>_psi_{self.suffix} = [low, high]",
        }


DEFAULT_BOOTSTRAP = Bootstrap()

# how many (resample, stone) cells one step of the area bootstrap holds (8 bytes each)
_AREA_CHUNK_CELLS = 1 << 17


def _sorted_stones(
    sizes: Sequence[float] | np.ndarray,
    by: Weighting,
    areas: Sequence[float] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The stones that count (checked as ``grain_size_distribution`` checks them), sorted by
    size then area, so the draws do not depend on the order the stones came in; the weights
    (areas scaled to a mean of 1) are None by count."""
    check_weighting(by)
    x = np.asarray(sizes, dtype=np.float64).ravel()
    wts = None
    if by == "area":
        if areas is None:
            raise StonesegError("An area-weighted distribution needs the area of every stone.")
        wts = np.asarray(areas, dtype=np.float64).ravel()
        if wts.shape != x.shape:
            raise StonesegError(f"Got {x.size} sizes but {wts.size} areas.")
        if not np.all(np.isfinite(wts)):
            raise StonesegError("Grain sizes and areas must be finite numbers.")
        if np.any(wts < 0):
            raise StonesegError("Stone areas cannot be negative.")
    if not np.all(np.isfinite(x)):
        raise StonesegError("Grain sizes and areas must be finite numbers.")
    if wts is None:
        return np.sort(x), None
    keep = wts > 0
    x, wts = x[keep], wts[keep]
    order = np.lexsort((wts, x))
    x, wts = x[order], wts[order]
    return x, (wts / wts.mean() if wts.size else wts)


def bootstrap_percentiles(
    sizes: Sequence[float] | np.ndarray,
    by: Weighting = "count",
    areas: Sequence[float] | np.ndarray | None = None,
    ps: Sequence[float] = DEFAULT_PERCENTILES,
    resamples: int = DEFAULT_BOOTSTRAP.resamples,
    seed: int = DEFAULT_BOOTSTRAP.seed,
) -> np.ndarray:
    """D_p of ``resamples`` bootstrap resamples of the stones: an array (resamples, len(ps)).

    Each value is what resampling the stones with replacement and reading D_p off the
    resample's curve exactly as ``percentiles`` reads it (ties and all) would give. No
    stones: an empty (0, len(ps)) array.

    Why not ``scipy.stats.bootstrap`` (which has the percentile method and vectorises): it
    draws the whole (resamples x stones) index array and hands it to the statistic, which
    must then sort (by count) or sort and weight (by area) every resample; for the D50 alone
    of 100,000 stones by count that took 2.4-4.8 s here (tests/benchmarks/bench_bootstrap.py),
    against under 10 ms below for all five percentiles, and by area it has no weighted
    statistic to call. So numpy, two ways:

    - By count, D_p depends only on a few order statistics of the resample: the r-th of n
      draws (r = ceil(p n / 100)), how many draws share its size and how many lie below it,
      and the largest size below. These are drawn directly (the r-th of n uniforms is
      Beta(r, n - r + 1); given it, the others are uniform on either side, so the counts are
      binomial): exact, O(resamples) whatever the number of stones; each percentile gets its
      own draws, which is all a per-percentile interval needs.
    - By area the total area of a resample involves every draw, so it is resampled in
      full: per step a block of resamples, each stone's drawn area counted with one
      ``bincount``, one running sum over the block and one ``searchsorted`` for every
      percentile (about 1 s of CPU for 1000 resamples of 100,000 stones).
    """
    if int(resamples) != resamples or resamples < 1:
        raise StonesegError(f"A bootstrap needs at least one resample, got {resamples}.")
    resamples = int(resamples)
    ts = np.asarray([float(p) for p in ps], dtype=np.float64) / 100.0
    if np.any(~(ts >= 0) | (ts > 1)):
        raise StonesegError("Percentiles must lie between 0 and 100.")
    x, wts = _sorted_stones(sizes, by, areas)
    if x.size == 0:
        return np.empty((0, ts.size))
    if wts is None:
        return _bootstrap_by_count(x, ts, resamples, seed)
    return _bootstrap_by_weight(x, wts, ts, resamples, np.random.default_rng(seed))


def _bootstrap_by_count(x: np.ndarray, ts: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """D_p of count-weighted resamples of the sorted sizes ``x``, from order statistics.

    Draw k of a resample is stone floor(n U_k), U_k uniform on [0, 1). For each p:
    U_(r) ~ Beta(r, n - r + 1) gives v, the size of the r-th smallest draw (stone i, whose
    size group is stones [a, b)). Given U_(r), the r - 1 smaller uniforms are uniform on
    [0, U_(r)): Binomial(r - 1, a / (n U_(r))) of them fall on smaller sizes (m); the n - r
    larger are uniform on (U_(r), 1): Binomial(n - r, (b/n - U_(r)) / (1 - U_(r))) of them on
    size v too. So m/n of the resample is finer than v and (r + those)/n no coarser. The
    largest size below v is that of stone floor(a V^(1/m)), V uniform: the largest of m
    uniforms on [0, a/n). D_p is then the interpolation between (u, m/n) and (v, F_v).
    Each percentile draws from its own stream (the seed and p), so D50's values do not
    depend on which other percentiles were asked for.
    """
    n = x.size
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # first stone of each size
    ends = np.r_[starts[1:], n]
    group = np.cumsum(np.r_[True, x[1:] != x[:-1]]) - 1  # stone -> its size group
    out = np.empty((resamples, ts.size))
    for col, t in enumerate(ts):
        # r: the first rank whose fraction reaches t (rounding up is harmless: at a rank
        # exactly on t the two neighbouring segments give the same D_p)
        r = int(min(max(math.ceil(t * n), 1), n))
        rng = np.random.default_rng([seed, round(t * 1e8)])
        ur = rng.beta(r, n - r + 1, size=resamples)
        i = np.minimum((ur * n).astype(np.int64), n - 1)
        g = group[i]
        a, b = starts[g], ends[g]
        ur = np.clip(ur, a / n, np.nextafter(b / n, 0.0))  # floor(n U) = i, also after rounding
        below = (
            rng.binomial(r - 1, np.clip(a / (n * ur), 0.0, 1.0))
            if r > 1
            else np.zeros(resamples, np.int64)
        )
        same_above = (
            rng.binomial(n - r, np.clip((b / n - ur) / np.maximum(1.0 - ur, 1e-300), 0.0, 1.0))
            if r < n
            else np.zeros(resamples, np.int64)
        )
        f_u = below / n
        f_v = (r + same_above) / n
        v = x[i]
        m = np.maximum(below, 1)
        j = np.minimum((a * rng.random(resamples) ** (1.0 / m)).astype(np.int64), a - 1)
        u = x[np.maximum(j, 0)]
        d = u + (t - f_u) / (f_v - f_u) * (v - u)
        out[:, col] = np.where(below > 0, np.clip(d, u, v), v)
    return out


def _bootstrap_by_weight(
    x: np.ndarray, wts: np.ndarray, ts: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """D_p of resamples weighted by ``wts`` (areas), drawn in full, a block of resamples at a
    time: the stones drawn in a block are counted with one ``bincount`` (a block small
    enough for the counting to stay in the CPU's cache), then ``_crossings`` reads D_p."""
    n = x.size
    new_size = np.r_[True, x[1:] != x[:-1]]
    starts = np.flatnonzero(new_size)
    group = np.cumsum(new_size) - 1  # stone -> its size group
    first_of = starts[group]  # stone -> the first stone of its size
    last_of = np.r_[starts[1:], n][group] - 1  # stone -> the last stone of its size
    out = np.empty((resamples, ts.size))
    block = max(1, min(resamples, _AREA_CHUNK_CELLS // n))
    tiled = np.tile(wts, block)
    for lo in range(0, resamples, block):
        k = min(block, resamples - lo)
        draws = rng.integers(0, n, size=(k, n))
        draws += np.arange(k, dtype=np.int64)[:, None] * n
        drawn = np.bincount(draws.ravel(), minlength=k * n) * tiled[: k * n]
        out[lo : lo + k] = _crossings(x, drawn.reshape(k, n), ts, first_of, last_of)
    return out


def _crossings(
    x: np.ndarray, run: np.ndarray, ts: np.ndarray, first_of: np.ndarray, last_of: np.ndarray
) -> np.ndarray:
    """D_p (rows, len(ts)) of resamples given each stone's drawn weight ``run`` (rows, n),
    which it overwrites with running sums.

    The rows are summed one after another (one ``cumsum`` of the flattened array), so the
    running sum rises across rows and one ``searchsorted`` finds every crossing. A stone
    not drawn adds exactly 0, so the last stone drawn below a size is found the same way.
    """
    k, n = run.shape
    row0 = np.arange(k, dtype=np.int64)[:, None] * n  # each resample's first cell
    run = np.cumsum(run.ravel(), out=run.ravel())
    end = run[row0 + n - 1]  # (k, 1)
    base = np.r_[0.0, end[:-1, 0]][:, None]
    total = end - base
    target = np.minimum(base + ts * total, end)  # (k, P)
    # the first cell whose running sum reaches the target; a target on the row's start
    # (p = 0, or too small to register) takes the first stone drawn
    at = np.where(
        target > base,
        np.searchsorted(run, target, side="left"),
        np.searchsorted(run, np.broadcast_to(base, target.shape), side="right"),
    )
    stone = np.clip(at, row0, row0 + n - 1) - row0
    v = x[stone]
    cum_v = run[row0 + last_of[stone]]
    before = row0 + first_of[stone] - 1  # the last cell before v's size
    cum_u = np.where(before >= row0, run[np.maximum(before, 0)], base)
    has_u = cum_u > base  # a stone finer than v was drawn
    j = np.searchsorted(run, cum_u, side="left")  # the last stone drawn below v
    u = x[np.clip(j - row0, 0, n - 1)]
    return _between(u, v, (cum_u - base) / total, (cum_v - base) / total, ts, has_u)


def _between(
    u: np.ndarray, v: np.ndarray, f_u: np.ndarray, f_v: np.ndarray, ts: np.ndarray, has_u
) -> np.ndarray:
    """D_p on the curve's segment from (u, f_u) to (v, f_v), f_u < p/100 <= f_v; v where no
    size below v was drawn."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = u + (ts - f_u) / (f_v - f_u) * (v - u)
    return np.where(has_u, np.clip(d, np.minimum(u, v), v), v)


def percentile_intervals(
    sizes: Sequence[float] | np.ndarray,
    by: Weighting = "count",
    areas: Sequence[float] | np.ndarray | None = None,
    ps: Sequence[float] = DEFAULT_PERCENTILES,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> dict[float, tuple[float, float] | None]:
    """{p: (low, high)}: the bootstrap confidence interval of each D_p (see ``Bootstrap``),
    by count or by area (``areas``: each stone's, as for ``percentiles``); None for no stones.

    One stone, or stones all of one size, give a zero-width interval.
    """
    draws = bootstrap_percentiles(sizes, by, areas, ps, bootstrap.resamples, bootstrap.seed)
    if draws.shape[0] == 0:
        return {p: None for p in ps}
    tail = 50.0 * (1.0 - bootstrap.level)
    low, high = np.percentile(draws, (tail, 100.0 - tail), axis=0)
    return {p: (float(lo), float(hi)) for p, lo, hi in zip(ps, low, high)}


def intervals_of(
    stones: Iterable[Stone],
    by: Weighting = "count",
    ps: Sequence[float] = DEFAULT_PERCENTILES,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> dict[float, tuple[float, float] | None]:
    """``percentile_intervals`` of the stones that are not excluded, by their b-axis (the
    stones ``distribution_of`` draws its curve from)."""
    kept = included(stones)
    return percentile_intervals([s.size for s in kept], by, [s.area for s in kept], ps, bootstrap)
