"""The order to label photos in (``inference.label_order``): the model's uncertainty, spread
over the kinds of photo, on constructed cases with a known answer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stoneseg_core.inference.label_order import DIVERSE, PER_KIND, appearance, useful_order


def _belt(seed: int, size: int = 160) -> np.ndarray:
    """A photo of bare dark belt: smooth, a little noise."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (52, 54, 58), np.float32) + rng.normal(0, 2, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _stones(seed: int, size: int = 160) -> np.ndarray:
    """A photo of pale pebbles on sand: many edges."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (150, 135, 110), np.uint8)
    for _ in range(40):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        grey = int(rng.integers(170, 240))
        cv2.circle(img, centre, int(rng.integers(6, 18)), (grey, grey, grey - 10), -1)
    return img


def test_the_look_tells_belt_from_stones_and_not_one_photo_from_its_larger_copy():
    belt, stones = _belt(0), _stones(0)
    look = appearance(stones)
    assert look.dtype == np.float32 and look.shape == (21,)
    larger = cv2.resize(stones, (640, 640), interpolation=cv2.INTER_LINEAR)
    # the same photo at 4x its size (a thumbnail against the photo) looks almost the same
    assert np.linalg.norm(appearance(larger) - look) < 0.25 * np.linalg.norm(
        appearance(belt) - look
    )
    # another belt photo looks like the first, much more than stones do
    assert np.linalg.norm(appearance(_belt(1)) - appearance(belt)) < 0.2 * np.linalg.norm(
        look - appearance(belt)
    )
    # grey photos and floats are read too
    assert appearance(cv2.cvtColor(stones, cv2.COLOR_RGB2GRAY)).shape == (21,)


def _pool(n_belt: int, n_stones: int):
    """(candidates, looks): belt photos the model is very unsure of (0.90-0.99) and photos of
    stones it is less unsure of (0.30-0.60)."""
    rng = np.random.default_rng(7)
    cands = [(f"belt{i}", 0.9 + 0.09 * rng.random(), appearance(_belt(i))) for i in range(n_belt)]
    cands += [
        (f"stones{i}", 0.3 + 0.3 * rng.random(), appearance(_stones(100 + i)))
        for i in range(n_stones)
    ]
    return cands


@pytest.mark.parametrize("seed", range(5))
def test_a_kind_the_model_is_unsure_of_does_not_take_every_pick(seed):
    cands = _pool(30, 20)
    by_score = [c[0] for c in sorted(cands, key=lambda c: -c[1])]
    assert all(k.startswith("belt") for k in by_score[:12])  # the trap: belt only
    order = useful_order(cands, seed=seed)
    assert sorted(order) == sorted(c[0] for c in cands)  # each photo once
    # the belt photos are one kind or two (alike), the stone photos several: the belt, the
    # largest kind, gives the first pick, its least sure photo; then the other kinds
    belts = [c for c in cands if c[0].startswith("belt")]
    assert order[0] == max(belts, key=lambda c: c[1])[0]
    first = order[:8]
    assert 1 <= sum(k.startswith("belt") for k in first) <= 3, first
    # after the spread picks, the rest by score alone
    rest = order[DIVERSE:]
    scores = {c[0]: c[1] for c in cands}
    assert [scores[k] for k in rest] == sorted((scores[k] for k in rest), reverse=True)


def test_photos_like_those_labelled_wait_for_the_others():
    cands = _pool(30, 20)
    labelled = [appearance(_belt(200 + i)) for i in range(10)]  # belt labelled already
    order = useful_order(cands, labelled)
    assert all(k.startswith("stones") for k in order[:4]), order[:4]
    # the same candidates with stones labelled instead: the belt comes first
    labelled = [appearance(_stones(300 + i)) for i in range(10)]
    assert useful_order(cands, labelled)[0].startswith("belt")


def test_a_small_folder_is_ordered_by_score_and_the_order_is_repeatable():
    cands = _pool(3, 2 * PER_KIND - 5)  # with the labelled one: under 2 x PER_KIND
    order = useful_order(cands, [appearance(_belt(50))])
    assert order == [c[0] for c in sorted(cands, key=lambda c: -c[1])]
    big = _pool(30, 20)
    assert useful_order(big, n=10) == useful_order(big, n=10)
    assert len(useful_order(big, n=10)) == 10
    assert useful_order([]) == []


def test_a_photo_the_model_is_sure_of_never_jumps_the_queue():
    """A kind of photos the model is sure of (score under 5 %) is not given a turn: its photos
    come after every photo the model is unsure of."""
    cands = _pool(0, 20)
    cands += [(f"sure{i}", 0.01, appearance(_belt(i))) for i in range(10)]
    order = useful_order(cands)
    assert all(k.startswith("stones") for k in order[:20]), order[:20]
