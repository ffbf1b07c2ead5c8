"""The bootstrap confidence intervals of D16/D50/D84 (``grains.percentile_intervals``) and
their place in the percentiles JSON.

The resampling is checked against every possible resample of a small set with shared
sizes (its exact bootstrap distribution, by count and by area); the rest are properties
any percentile bootstrap has: it holds the estimate, narrows like 1/sqrt(n), repeats with
its seed, has no width when every stone is one size, and weighs big stones by area.
"""

from __future__ import annotations

import collections
import itertools
import json
import math

import numpy as np
import pytest

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import (
    DEFAULT_PERCENTILES,
    Bootstrap,
    GrainOptions,
    ImageGrains,
    Stone,
    bootstrap_percentiles,
    grain_size_distribution,
    intervals_of,
    percentile_intervals,
    percentiles,
    percentiles_report,
    stones_csv,
    write_json,
)
from stoneseg_core.grains.pool import pool_folder

MAIN = (16, 50, 84)


def lognormal(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """b-axes (mm) of n stones from one lognormal, and areas that grow with them."""
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(math.log(20.0), 0.6, n)
    return sizes, sizes**2 * rng.uniform(0.6, 1.0, n)


@pytest.mark.parametrize("by", ["count", "area"])
def test_interval_holds_the_estimate(by):
    sizes, areas = lognormal(300)
    point = percentiles(sizes, by, areas)
    for p, (low, high) in percentile_intervals(sizes, by, areas).items():
        assert low < point[p] < high, (p, low, point[p], high)


@pytest.mark.parametrize("by", ["count", "area"])
def test_interval_narrows_as_stones_grow_in_number(by):
    (few, few_areas), (many, many_areas) = lognormal(50, seed=2), lognormal(5000, seed=3)
    wide = percentile_intervals(few, by, few_areas, MAIN)
    narrow = percentile_intervals(many, by, many_areas, MAIN)
    for p in MAIN:
        # 100 times the stones: about a tenth of the width (0.07-0.26 over 8 pairs of
        # samples), except D84 by area, which 50 stones hardly know: a few big stones carry
        # it and no resample goes beyond the biggest, so their interval is too narrow
        # (0.22-0.51)
        ratio = (narrow[p][1] - narrow[p][0]) / (wide[p][1] - wide[p][0])
        assert ratio < (0.7 if (by, p) == ("area", 84) else 0.3), (p, ratio)


def test_same_seed_same_interval_whatever_the_order():
    sizes, areas = lognormal(400)
    for by in ("count", "area"):
        first = percentile_intervals(sizes, by, areas)
        assert percentile_intervals(sizes, by, areas) == first
        order = np.random.default_rng(9).permutation(sizes.size)
        assert percentile_intervals(sizes[order], by, areas[order]) == first
        other = percentile_intervals(sizes, by, areas, bootstrap=Bootstrap(seed=1))
        assert other != first and other[50] == pytest.approx(first[50], rel=0.05)


def test_stones_all_of_one_size_give_a_zero_width_interval():
    for n in (1, 2, 37):
        sizes, areas = np.full(n, 7.5), np.arange(1.0, n + 1)
        for by in ("count", "area"):
            got = percentile_intervals(sizes, by, areas, (0, 10, 16, 50, 84, 90, 100))
            assert set(got.values()) == {(7.5, 7.5)}, (n, by)
    assert percentile_intervals([], "count") == {p: None for p in DEFAULT_PERCENTILES}
    assert bootstrap_percentiles([], "area", []).shape == (0, len(DEFAULT_PERCENTILES))


def test_by_area_differs_from_by_count_on_a_skewed_set():
    # 95 pebbles of 2 mm (4 mm² each) and 5 boulders of 20 mm (400 mm² each): most stones
    # are pebbles, most of the ground is boulder
    sizes = np.r_[np.full(95, 2.0), np.full(5, 20.0)]
    areas = np.r_[np.full(95, 4.0), np.full(5, 400.0)]
    count = percentile_intervals(sizes, "count", areas, (50,))[50]
    area = percentile_intervals(sizes, "area", areas, (50,))[50]
    assert count == (2.0, 2.0)  # a resample is never half boulders
    point = percentiles(sizes, "area", areas, (50,))[50]  # 2 + 18 * (0.5 - 380/2380) / (2000/2380)
    assert point == pytest.approx(2 + 18 * (0.5 - 380 / 2380) / (2000 / 2380))
    assert 2.0 < area[0] < point < area[1] < 20.0
    assert area[1] - area[0] > 3.0  # as uncertain as the number of boulders drawn


@pytest.mark.parametrize("by", ["count", "area"])
def test_resampling_matches_every_possible_resample(by):
    """The exact bootstrap distribution of 5 stones (two sizes shared, areas unrelated to
    size): all 5^5 equally likely resamples, each read with ``grain_size_distribution``."""
    sizes = np.array([8.0, 5.0, 8.0, 12.0, 5.0])
    areas = np.array([10.0, 3.0, 2.0, 40.0, 7.0])
    ps = (0, 10, 16, 40, 50, 84, 100)
    n = sizes.size
    exact = [collections.Counter() for _ in ps]
    for pick in itertools.product(range(n), repeat=n):
        curve = grain_size_distribution(sizes[list(pick)], by, areas[list(pick)])
        for k, p in enumerate(ps):
            exact[k][round(curve.percentile(p), 6)] += 1 / n**n
    drawn = bootstrap_percentiles(sizes, by, areas, ps, resamples=100_000, seed=4)
    for k, p in enumerate(ps):
        values = np.array(sorted(exact[k]))
        probability = np.array([exact[k][v] for v in values])
        nearest = np.abs(drawn[:, k, None] - values).argmin(axis=1)
        assert np.abs(drawn[:, k] - values[nearest]).max() < 1e-6, p  # only values that can occur
        share = np.bincount(nearest, minlength=values.size) / drawn.shape[0]
        assert np.abs(share - probability).max() < 0.01, (p, share, probability)


@pytest.mark.parametrize("by", ["count", "area"])
def test_resampling_matches_plain_resampling_of_many_stones(by):
    """400 stones (sizes in 0.5 mm steps, so many shared): the interval and the median of
    the resampled D_p agree with plain resampling (draw 400 stone indices, read the
    curve), up to the Monte Carlo error of 2000 resamples each."""
    sizes, areas = lognormal(400, seed=6)
    sizes = np.round(sizes * 2) / 2
    fast = bootstrap_percentiles(sizes, by, areas, MAIN, resamples=2000, seed=11)
    rng = np.random.default_rng(12)
    plain = np.empty_like(fast)
    for row in plain:
        pick = rng.integers(0, sizes.size, sizes.size)
        curve = grain_size_distribution(sizes[pick], by, areas[pick])
        row[:] = [curve.percentile(p) for p in MAIN]
    a = np.percentile(fast, (2.5, 50, 97.5), axis=0)
    b = np.percentile(plain, (2.5, 50, 97.5), axis=0)
    width = b[2] - b[0]
    assert np.all(np.abs(a - b) < 0.15 * width), (a, b)


def test_bootstrap_settings_are_checked():
    with pytest.raises(StonesegError, match="resamples"):
        Bootstrap(resamples=1)
    with pytest.raises(StonesegError, match="level"):
        Bootstrap(level=1.0)
    with pytest.raises(StonesegError, match="seed"):
        Bootstrap(seed=-1)
    with pytest.raises(StonesegError, match="area of every stone"):
        percentile_intervals([1.0, 2.0], "area")
    with pytest.raises(StonesegError, match="between 0 and 100"):
        percentile_intervals([1.0, 2.0], "count", ps=(120,))
    assert Bootstrap().suffix == "ci95" and Bootstrap(level=0.9).suffix == "ci90"
    assert Bootstrap(level=0.995).suffix == "ci99.5"


def stone(label: int, b_px: float, area_px: int, mm_per_px: float | None, excluded=False) -> Stone:
    return Stone(
        label=label,
        area_px=area_px,
        equivalent_diameter_px=b_px,
        a_axis_px=b_px * 1.3,
        b_axis_px=b_px,
        perimeter_px=3.2 * b_px,
        circularity=0.9,
        centroid_x=10.0 * label,
        centroid_y=5.0,
        bbox=(0, 0, 1, 1),
        touches_edge=False,
        mm_per_px=mm_per_px,
        excluded=excluded,
        exclusion_reason="b-axis below 2 mm" if excluded else "",
    )


def photos(mm_per_px: float | None = 0.5) -> list[ImageGrains]:
    sizes, areas = lognormal(120, seed=5)
    a = [stone(i + 1, b, int(area), mm_per_px) for i, (b, area) in enumerate(zip(sizes, areas))]
    b = a[70:]
    a = a[:70]
    b.append(stone(99, 1.0, 1, mm_per_px, excluded=True))  # left out: not resampled
    return [ImageGrains("a.png", mm_per_px, tuple(a)), ImageGrains("b.png", mm_per_px, tuple(b))]


def check_block(block: dict, stones: list[Stone], by: str, unit: str, ps) -> None:
    ci = intervals_of(stones, by, ps)
    for p in ps:
        name = f"D{p:g}"
        value, interval = block[f"{name}_{unit}"], block[f"{name}_{unit}_ci95"]
        assert interval == pytest.approx(list(ci[p]))
        assert interval[0] <= value <= interval[1]
        if unit == "mm":
            assert block[f"{name}_psi_ci95"] == pytest.approx([math.log2(v) for v in interval])
        else:
            assert f"{name}_psi_ci95" not in block


@pytest.mark.parametrize("mm_per_px", [0.5, None])
def test_report_puts_the_interval_beside_each_percentile(tmp_path, mm_per_px):
    results = photos(mm_per_px)
    options = GrainOptions()
    unit = "px" if mm_per_px is None else "mm"
    report = percentiles_report(results, options)
    write_json(tmp_path / "percentiles.json", report)  # finite numbers only
    report = json.loads((tmp_path / "percentiles.json").read_text())
    method = report["confidence_intervals"]
    assert (method["resamples"], method["level"], method["seed"]) == (1000, 0.95, 0)
    assert "bootstrap over stones" in method["method"]
    everything = [s for r in results for s in r.stones]
    for by in ("count", "area"):
        block = report["pooled"][f"by_{by}"]
        check_block(block, everything, by, unit, options.percentiles)
        check_block(report["images"]["b.png"][f"by_{by}"], list(results[1].stones), by, unit, (50,))
        # the keys there were before, with the same values, and each interval right after its value
        plain = percentiles_report(results, options, bootstrap=None)["pooled"][f"by_{by}"]
        assert {k: block[k] for k in plain} == pytest.approx(plain)
        keys = list(block)
        assert keys[keys.index(f"D50_{unit}") + 1] == f"D50_{unit}_ci95"
    assert "confidence_intervals" not in percentiles_report(results, options, bootstrap=None)
    # a photo with no stone kept: the same keys, empty
    empty = percentiles_report([ImageGrains("c.png", mm_per_px, ())], options)
    assert empty["pooled"]["by_area"][f"D50_{unit}_ci95"] is None


def test_pooled_again_from_the_tables_keeps_the_intervals(tmp_path):
    """``stoneseg grains --pool-only`` (grains/pool.py) reads the per-photo tables back."""
    results = photos()
    options = GrainOptions()
    for r in results:
        (tmp_path / f"{r.name[:-4]}_stones.csv").write_text(stones_csv([r], options))
    report = pool_folder(tmp_path)
    written = json.loads((tmp_path / "percentiles.json").read_text())
    assert written["confidence_intervals"]["resamples"] == 1000
    direct = percentiles_report(results, options)["pooled"]["by_count"]
    pooled = written["pooled"]["by_count"]
    assert pooled == report["pooled"]["by_count"]
    for p in MAIN:  # the tables keep 6 significant digits
        assert pooled[f"D{p}_mm_ci95"] == pytest.approx(direct[f"D{p}_mm_ci95"], rel=1e-4)
