"""Editing stones by hand (cut, merge), measuring a few again, restating, pooling saved masks."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import (
    GrainOptions,
    cut_label,
    distribution_of,
    label_on_line,
    measure_stones,
    merge_labels,
    split_stones,
    with_scale_and_exclusions,
)
from stoneseg_core.io.images import write_mask
from stoneseg_core.jobs.grains_folder import iter_grains_masks


def peanut() -> np.ndarray:
    """Two discs of radius 10, centres 18 px apart, as ONE label; a lone disc as label 2."""
    labels = np.zeros((60, 120), np.int32)
    for r, c in ((30, 30), (30, 48)):
        rr, cc = disk((r, c), 10, shape=labels.shape)
        labels[rr, cc] = 1
    rr, cc = disk((30, 95), 8, shape=labels.shape)
    labels[rr, cc] = 2
    return labels


def test_cut_divides_a_stone_and_keeps_every_pixel():
    labels = peanut()
    before = labels.copy()
    assert label_on_line(labels, (39.5, 10), (39.5, 50)) == 1
    pieces = cut_label(labels, 1, (39.5, 10), (39.5, 50))
    assert pieces == [1, 3]  # the larger piece keeps the number; the new one is max + 1
    assert np.array_equal(labels > 0, before > 0)
    assert np.array_equal(labels == 2, before == 2)  # other stones untouched
    assert labels[30, 30] != labels[30, 48]
    sizes = {s.label: s.b_axis_px for s in measure_stones(labels)}
    assert sizes[1] == pytest.approx(20, abs=1.5) and sizes[3] == pytest.approx(20, abs=1.5)


def test_a_cut_must_cross_the_stone():
    labels = peanut()
    with pytest.raises(StonesegError, match="does not cut stone 1"):
        cut_label(labels, 1, (30.5, 30.5), (35.5, 30.5))  # ends inside the stone
    with pytest.raises(StonesegError, match="no stone number 9"):
        cut_label(labels, 9, (0, 0), (10, 10))
    assert np.array_equal(labels, peanut())  # nothing changed
    assert label_on_line(labels, (0.5, 0.5), (10.5, 0.5)) == 0


def test_merge_needs_touching_stones():
    labels = peanut()
    cut_label(labels, 1, (39.5, 10), (39.5, 50))
    merge_labels(labels, 1, 3)
    assert np.array_equal(labels, peanut())
    with pytest.raises(StonesegError, match="do not touch"):
        merge_labels(labels, 1, 2)
    with pytest.raises(StonesegError, match="two different"):
        merge_labels(labels, 1, 1)


def test_measuring_a_few_stones_matches_measuring_all():
    labels = split_stones(peanut() > 0, min_separation_px=3)
    every = {s.label: s for s in measure_stones(labels, 0.5, exclude_edge=True)}
    some = measure_stones(labels, 0.5, exclude_edge=True, only=[2, 99])
    assert [s.label for s in some] == [2] and some[0] == every[2]
    boxed = measure_stones(labels, 0.5, only=[1, 3], box=(10, 10, 50, 70))
    assert {s.label for s in boxed} <= set(every)
    for s in boxed:
        assert s == every[s.label]
    assert measure_stones(labels, only=[]) == []


def test_restating_changes_only_the_scale_and_the_flags():
    stones = measure_stones(peanut())
    restated = with_scale_and_exclusions(stones, 0.5, exclude_edge=False, min_size_mm=9.0)
    assert [s.b_axis_px for s in restated] == [s.b_axis_px for s in stones]
    assert [s.excluded for s in restated] == [False, True]  # the 16-px disc is 8 mm
    assert "9 mm" in restated[1].exclusion_reason and restated[0].b_axis_mm is not None
    assert with_scale_and_exclusions(restated, None) == stones
    with pytest.raises(StonesegError, match="needs a scale"):
        with_scale_and_exclusions(stones, None, min_size_mm=1.0)


def test_pool_saved_masks(tmp_path):
    mask = np.where(peanut() > 0, 255, 0).astype(np.uint8)
    pairs = []
    for stem in ("a", "b"):
        write_mask(tmp_path / f"{stem}.png", mask)
        pairs.append((tmp_path / f"{stem}.jpg", tmp_path / f"{stem}.png"))
    hand = peanut()  # b as edited by hand: the peanut left whole
    gen = iter_grains_masks(pairs, {"a": 0.5, "b": 1.0}, GrainOptions(), labels={"b": hand})
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            summary = stop.value
            break
    assert [(e.index, e.status) for e in events] == [(1, "measured"), (2, "measured")]
    assert [len(r.stones) for r in summary.results] == [3, 2]
    pooled = summary.report["pooled"]["by_count"]
    stones = [s for r in summary.results for s in r.stones]
    assert pooled["D50_mm"] == pytest.approx(distribution_of(stones).percentile(50))
    with pytest.raises(StonesegError, match="set the scale of: b.jpg"):
        next(iter_grains_masks(pairs, {"a": 0.5}))
