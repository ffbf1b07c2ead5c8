"""What to label next: the uncertainty map and score of a prediction (inference.uncertainty),
kept in the project's state, and measured by the Segmenter and the folder job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stoneseg_core.inference.uncertainty import (
    MIN_STONE_SHARE,
    STATE_KEY,
    UNSURE,
    UncertaintyScore,
    flip_disagreement,
    measure_uncertainty,
    store_score,
    stored_scores,
    threshold_closeness,
)
from stoneseg_core.io.project import Project


def test_threshold_closeness_known_values():
    p = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
    assert np.allclose(threshold_closeness(p, 0.5), [0, 0.5, 1, 0.5, 0])
    assert np.allclose(threshold_closeness(p, 0.5), 1 - np.abs(2 * p - 1))
    # another threshold: 1 at it, half way to 0 and to 1 gives 0.5
    q = np.array([0.0, 0.15, 0.3, 0.65, 1.0], np.float32)
    assert np.allclose(threshold_closeness(q, 0.3), [0, 0.5, 1, 0.5, 0], atol=1e-6)
    assert threshold_closeness(q, 0.3).dtype == np.float32


def test_a_photo_near_the_threshold_ranks_above_a_sure_one():
    rng = np.random.default_rng(0)
    unsure = (0.5 + rng.uniform(-0.05, 0.05, (60, 80))).astype(np.float32)
    sure = np.where(rng.random((60, 80)) < 0.4, 0.98, 0.02).astype(np.float32)
    a, b = measure_uncertainty(unsure), measure_uncertainty(sure)
    assert a.score.score == pytest.approx(1.0)
    assert b.score.score == 0.0
    assert a.score.score > b.score.score
    assert a.map.dtype == np.uint8 and a.map.shape == (60, 80)
    assert a.map.min() >= 229  # closeness >= 0.9 everywhere
    assert b.map.max() <= 11  # closeness <= 0.04


def test_score_is_the_unsure_share_of_stone_or_unsure_pixels():
    prob = np.full((100, 100), 0.02, np.float32)
    prob[:40] = 0.9  # sure stone: 4,000 px
    prob[40:50] = 0.5  # unsure (and stone, at the threshold): 1,000 px
    prob[50:55] = 0.3  # unsure background: 500 px
    unc = measure_uncertainty(prob[None])  # (C, H, W) as the Segmenter has it
    assert unc.score.stone_px == 5000
    assert unc.score.unsure_px == 1500
    assert (unc.score.either_px, unc.score.area_px) == (5500, 10000)
    assert unc.score.score == pytest.approx(1500 / 5500)
    assert unc.score.definition == "threshold" and not unc.score.little_stone
    assert "27 % of what it took for stone" in unc.score.in_words()
    assert unc.score.short_words() == "model unsure on 27 % of its stone"
    # the map: 255 at the threshold, 0.6 x 255 at p = 0.3, ~0.2 x 255 at 0.9
    assert unc.map[45, 0] == 255 and unc.map[52, 0] == 153 and unc.map[0, 0] == 51
    # nothing predicted and nothing unsure: 0, not a division by zero
    assert measure_uncertainty(np.zeros((8, 8), np.float32)).score.score == 0.0


def test_a_photo_almost_bare_of_stone_is_scored_over_a_tenth_of_it():
    prob = np.full((100, 100), 0.02, np.float32)
    prob[:2] = 0.4  # 200 unsure pixels, no stone: all there is to go by
    unc = measure_uncertainty(prob)
    assert unc.score.either_px == 200 and unc.score.little_stone
    assert unc.score.score == pytest.approx(200 / (MIN_STONE_SHARE * 10_000))  # not 1.0
    assert unc.score.short_words() == "little stone, unsure on 2 % of the photo"
    assert "2 % of this photo, which it finds almost bare of stone" in unc.score.in_words()
    # the same doubt over a photo full of stone ranks above it
    full = prob.copy()
    full[50:] = 0.95
    assert measure_uncertainty(full).score.score < unc.score.score
    many = prob.copy()
    many[:30] = 0.45  # 3,000 unsure pixels
    assert measure_uncertainty(many).score.score == pytest.approx(1.0)


def test_map_at_the_photo_size():
    unc = measure_uncertainty(np.full((10, 20), 0.5, np.float32))
    big = unc.map_at(40, 80)
    assert big.shape == (40, 80) and big.dtype == np.uint8 and big.min() == 255
    assert unc.map_at(10, 20) is unc.map


def _biased_network(image: np.ndarray) -> np.ndarray:
    """Stone where the image is bright, plus (a position bias that flips do not undo) its
    leftmost eighth, whatever is there."""
    prob = (image[..., 0] > 128).astype(np.float32)
    prob[:, : image.shape[1] // 8] = 1.0
    return prob


def test_flip_disagreement_on_a_constructed_case():
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 255  # a bright square in the middle: every view agrees on it
    unc = flip_disagreement(_biased_network, image)
    # the left eighth (only the photo as it is and upside down call it stone) and the right
    # eighth (only the left-right flip) disagree; the square does not
    assert unc.score.unsure_px == 2 * 8 * 64
    assert unc.score.stone_px == 32 * 32 + 8 * 64
    assert unc.score.score == pytest.approx(1024 / 2048)
    assert unc.score.definition == "flips"
    assert unc.map[30, 2] >= 128 and unc.map[30, 61] >= 128  # unsure: map >= UNSURE
    assert unc.map[30, 30] == 0 and unc.map[5, 30] == 0
    # twice the std of (1, 0, 1) on the left: 0.94
    assert unc.map[30, 2] / 255 == pytest.approx(2 * np.std([1, 0, 1]), abs=0.01)
    # a network that sees the same stones flipped scores 0
    fair = flip_disagreement(lambda im: (im[..., 0] > 128).astype(np.float32), image)
    assert fair.score.score == 0.0 and fair.map.max() < UNSURE * 255


def test_flip_disagreement_reuses_the_photos_own_probability():
    image = np.zeros((32, 32, 3), np.uint8)
    calls = []

    def forward(im):
        calls.append(im.shape)
        return np.zeros(im.shape[:2], np.float32)

    flip_disagreement(forward, image, prob=np.zeros((32, 32), np.float32))
    assert len(calls) == 2  # the two flips only
    flip_disagreement(forward, image)
    assert len(calls) == 5


def test_scores_in_the_state_round_trip_and_survive_old_files():
    state: dict = {}
    assert stored_scores(state) == {}
    score = UncertaintyScore(0.25, 100, 300, definition="threshold", model="run-1")
    assert store_score(state, "img0", score)
    assert not store_score(state, "img0", score)  # unchanged
    assert stored_scores(state) == {"img0": score}
    # damaged entries and an older file's odd values are left out, not raised
    state[STATE_KEY]["bad"] = {"unsure_px": 3}
    state[STATE_KEY]["worse"] = "0.5"
    assert stored_scores(state) == {"img0": score}
    assert stored_scores({STATE_KEY: [1, 2]}) == {}
    assert store_score(state, "img0", None)
    assert "img0" not in stored_scores(state)


def test_scores_saved_by_two_windows_merge_and_reload(dataset: Path):
    (dataset / "stoneseg.json").write_text(json.dumps({"predicted": ["img1"]}))  # an old file
    a, b = Project.open(dataset), Project.open(dataset)
    assert stored_scores(a.state) == {}
    store_score(a.state, "img1", UncertaintyScore(0.4, 40, 60, model="run-a"))
    a.save_state()
    store_score(b.state, "img2", UncertaintyScore(0.1, 10, 90, model="run-b"))
    b.save_state()  # merged with a's entry, not over it
    again = stored_scores(Project.open(dataset).state)
    assert again == {
        "img1": UncertaintyScore(0.4, 40, 60, model="run-a"),
        "img2": UncertaintyScore(0.1, 10, 90, model="run-b"),
    }
    assert Project.open(dataset).predicted_stems() == {"img1"}


def test_segmenter_measures_the_uncertainty_of_a_prediction(trained_model: Path, dataset: Path):
    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.io.images import read_image

    seg = Segmenter.load(trained_model)
    image = read_image(dataset / "images" / "img0.png")
    assert seg.predict(image).uncertainty is None  # off unless asked for
    seg.measure_uncertainty = True
    pred = seg.predict(image)
    unc = pred.uncertainty
    assert unc is not None
    h, w = image.shape[:2]
    work = (round(h * pred.scale), round(w * pred.scale))
    assert abs(unc.map.shape[0] - work[0]) <= 1 and abs(unc.map.shape[1] - work[1]) <= 1
    # the same numbers as measured on the probability at working scale by hand
    assert unc.score.stone_px == pytest.approx(np.count_nonzero(pred.mask) * pred.scale**2, rel=0.2)
    assert 0.0 <= unc.score.score <= 1.0
    assert unc.map_at(h, w).shape == (h, w)


def test_the_folder_job_reports_each_photos_uncertainty(
    trained_model: Path, dataset: Path, tmp_path: Path
):
    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.jobs.segment_folder import iter_segment_images

    seg = Segmenter.load(trained_model)
    images = sorted((dataset / "images").iterdir())
    events = list(iter_segment_images(seg, images, tmp_path / "plain"))
    assert all(e.uncertainty is None for e in events)
    seg.measure_uncertainty = True
    events = list(iter_segment_images(seg, images, tmp_path / "measured"))
    written = [e for e in events if e.status == "written"]
    assert len(written) == len(images)
    scores = {e.image.stem: e.uncertainty for e in written}
    assert all(isinstance(s, UncertaintyScore) for s in scores.values())
    # each photo's own: the same as predicting it alone
    from stoneseg_core.io.images import read_image

    for path in images:
        alone = seg.predict(read_image(path)).uncertainty.score
        assert scores[path.stem].score == pytest.approx(alone.score, abs=1e-6)
        assert scores[path.stem].unsure_px == alone.unsure_px
