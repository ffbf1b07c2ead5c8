"""Stones, not pixels: the speck floor, stone scores over IoU thresholds, the curve's errors."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from test_grains import paint

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import measure_stones, read_instance_labels, split_stones
from stoneseg_core.grains.instances import (
    match_instances,
    match_instances_over_ious,
    stone_curve_errors,
    stone_scores_over_ious,
)
from stoneseg_core.grains.split import drop_specks
from stoneseg_core.model.network import read_model_info
from stoneseg_core.model.scale import (
    MIN_STONE_WORK_PX,
    ScalePolicy,
    smallest_stone_area,
    speck_floor,
)


def _discs(shape, centres_radii) -> np.ndarray:
    return paint(shape, [("disc", cy, cx, r) for cy, cx, r in centres_radii])


# ------------------------------------------------------------------------------ speck floor


def test_the_speck_floor_drops_specks_and_keeps_stones():
    truth = _discs((80, 80), [(20, 20, 10), (55, 55, 12)])
    mask = truth > 0
    mask[70, 5] = mask[5, 70] = True  # two 1-px specks
    mask[40:42, 70:72] = True  # a 4-px speck
    everything = split_stones(mask)
    assert everything.max() == 5
    floored = split_stones(mask, min_stone_px=20)
    assert floored.max() == 2  # numbered 1..N with no gap
    assert set(np.unique(floored)) == {0, 1, 2}
    np.testing.assert_array_equal(floored > 0, truth > 0)
    # a floor above a real stone's area takes it too: the floor is an area in pixels
    assert split_stones(mask, min_stone_px=math.pi * 11**2).max() == 1
    # the boundary-guided splits honour it as well
    boundary = np.zeros(mask.shape, np.float32)
    for how in ("seams", "cores"):
        got = split_stones(mask, boundary=boundary, boundary_split=how, min_stone_px=20)
        assert got.max() == 2, how


def test_drop_specks_keeps_reading_order_and_leaves_no_floor_alone():
    labels = np.zeros((10, 10), np.int32)
    labels[0, 0] = 1
    labels[2:6, 2:6] = 2
    labels[8, 8] = 3
    out = drop_specks(labels, 2)
    assert out.max() == 1 and np.count_nonzero(out) == 16
    assert drop_specks(labels, 0) is labels


def test_smallest_stone_comes_from_the_training_stones_and_has_a_floor():
    disc_area = math.pi * (MIN_STONE_WORK_PX / 2) ** 2
    # per-stone labels: 1st percentile of the stones' areas, halved
    big = _discs((240, 240), [(30 + 40 * (k // 5), 30 + 40 * (k % 5), 15) for k in range(25)])
    areas = np.bincount(big.ravel())[1:]
    assert smallest_stone_area([big]) == pytest.approx(0.5 * np.percentile(areas, 1))
    # a binary mask: its 8-connected pieces are the stones
    assert smallest_stone_area([(big > 0).astype(np.uint8) * 255]) == pytest.approx(
        0.5 * np.percentile(areas, 1)
    )
    # a few stones say nothing of the smallest: the disc
    assert smallest_stone_area([big[:70, :70]]) == pytest.approx(disc_area)
    # tiny stones never push the floor under a 3-px disc; no stones at all: the disc
    tiny = np.zeros((20, 20), np.int32)
    tiny[5, 5] = 1
    assert smallest_stone_area([tiny]) == pytest.approx(disc_area)
    assert smallest_stone_area([np.zeros((9, 9), np.uint8)]) == pytest.approx(disc_area)


def test_the_floor_follows_the_working_scale_and_old_models_get_the_disc():
    policy = ScalePolicy(min_stone_area=100.0)
    assert speck_floor(policy, 1.0) == pytest.approx(100.0)
    # a photo worked at half its size: a working pixel is 4 photo pixels
    assert speck_floor(policy, 0.5) == pytest.approx(400.0)
    old = ScalePolicy.from_json({"policy": "long-side", "stone_px": 30.0}, 384)
    assert old.min_stone_area == 0.0
    assert speck_floor(old, 1.0) == pytest.approx(math.pi * (MIN_STONE_WORK_PX / 2) ** 2)
    again = ScalePolicy.from_json(policy.to_json(), 384)
    assert again.min_stone_area == pytest.approx(100.0)


def test_training_records_the_smallest_stone(trained_model):
    info = read_model_info(trained_model)
    assert info.scale_policy.min_stone_area >= math.pi * (MIN_STONE_WORK_PX / 2) ** 2


# ------------------------------------------------------------------- stone scores and curves


def test_stone_f1_over_iou_thresholds_on_a_known_overlap():
    truth = np.zeros((40, 40), np.int32)
    truth[10:20, 10:20] = 1  # 100 px
    pred = np.zeros_like(truth)
    pred[10:20, 12:22] = 1  # shifted 2 px: intersection 80, union 120, IoU 2/3
    by_t = match_instances_over_ious(pred, truth)
    for t, s in by_t.items():
        assert (s.tp, s.fp, s.fn) == ((1, 0, 0) if t <= 2 / 3 else (0, 1, 1)), t
    assert match_instances(pred, truth, 0.65).tp == 1
    pooled = stone_scores_over_ious([(pred, truth), (truth, truth)])
    assert pooled["f1"] == 1.0
    # IoU 0.5 .. 0.65 (4 thresholds): both photos right; 0.70 .. 0.95 (6): one of two
    assert pooled["f1_50_95"] == pytest.approx((4 * 1.0 + 6 * 0.5) / 10)


def test_curve_errors_are_exact_for_stones_twice_as_large():
    rng = np.random.default_rng(0)
    true = rng.lognormal(3, 0.6, 400)
    areas = true**2
    errs = stone_curve_errors(2 * true, true, 4 * areas, areas)
    assert set(errs) == {
        "d16_psi_error",
        "d50_psi_error",
        "d84_psi_error",
        "d16_psi_error_area",
        "d50_psi_error_area",
        "d84_psi_error_area",
    }
    for k, v in errs.items():
        assert v == pytest.approx(1.0), k
    assert stone_curve_errors([], true)["d50_psi_error"] is None


def test_a_split_of_truth_scores_itself_perfectly():
    truth = _discs((120, 120), [(30, 30, 14), (30, 58, 14), (80, 40, 20), (85, 95, 12)])
    pooled = stone_scores_over_ious([(truth, truth)])
    assert pooled["f1"] == pooled["f1_50_95"] == 1.0
    sizes = [s.b_axis_px for s in measure_stones(truth)]
    assert stone_curve_errors(sizes, sizes)["d84_psi_error"] == 0.0


# ------------------------------------------------------------------ stones at validation


def _labelled_stones(tmp_path, **changes):
    """Four synthetic photos with per-stone labels, and a tiny boundary-model config that
    validates on the last one (``changes`` on top)."""
    from synthetic import make_dataset
    from test_boundary import _with_instances

    from stoneseg_core.model.config import TrainConfig

    root = make_dataset(tmp_path / "data", n=4, size=(96, 128), seed=5)
    cfg = TrainConfig(
        epochs=1,
        crop=64,
        work_size=128,
        batch_size=2,
        samples_per_image=2,
        seed=0,
        val_images=("img3",),
        target="mask+boundary",
    )
    return root, _with_instances(root), cfg.replace(**changes)


def test_training_scores_the_stones_of_validation_photos_with_per_stone_labels(tmp_path):
    from stoneseg_core.training.train import run_training

    root, pairs, cfg = _labelled_stones(tmp_path)
    result = run_training(pairs, tmp_path / "m", cfg)
    stones = result.stones
    assert stones is not None and stones["n_images"] == 1 and stones["photos"] == ["img3"]
    true = np.count_nonzero(np.unique(read_instance_labels(root / "instances" / "img3.png")))
    assert stones["n_true"] == true
    for key in ("precision", "recall", "f1", "f1_50_95"):
        assert 0.0 <= stones[key] <= 1.0
    assert stones["f1_50_95"] <= stones["f1"]
    assert stones["split"].startswith("seams")
    # recorded with the model, and shown by the window's metrics panel from there
    recorded = read_model_info(tmp_path / "m").metrics["stones"]
    assert recorded["n_true"] == true and recorded["f1"] == stones["f1"]
    # photos without per-stone labels: nothing to score
    plain = run_training([p[:2] for p in pairs], tmp_path / "m2", cfg.replace(target="mask"))
    assert plain.stones is None and "stones" not in read_model_info(tmp_path / "m2").metrics


def test_the_epoch_kept_is_the_one_with_the_best_stones(tmp_path):
    from stoneseg_core.training.events import EpochSummary
    from stoneseg_core.training.train import iter_training, run_training

    root, pairs, cfg = _labelled_stones(tmp_path, epochs=4, select_epoch_by="stones")
    summaries = []
    gen = iter_training(pairs, tmp_path / "m", cfg)
    try:
        while True:
            event = next(gen)
            if isinstance(event, EpochSummary):
                summaries.append(event)
    except StopIteration as stop:
        result = stop.value
    history = result.history
    assert all("val_stone_f1" in h for h in history)
    keys = [(h["val_stone_f1"], h["val_iou"]) for h in history]
    assert result.best_epoch == 1 + max(range(len(keys)), key=lambda i: (keys[i], -i))
    kept = history[result.best_epoch - 1]
    # the stones recorded with the model are the kept epoch's
    assert result.stones["f1"] == kept["val_stone_f1"]
    assert read_model_info(tmp_path / "m").metrics["stones"]["f1"] == kept["val_stone_f1"]
    assert [s.stone_f1 for s in summaries] == [h["val_stone_f1"] for h in history]
    # by pixel IoU: no stones scored each epoch, the best IoU kept
    by_iou = run_training(pairs, tmp_path / "m2", cfg.replace(select_epoch_by="iou"))
    assert all("val_stone_f1" not in h for h in by_iou.history)
    ious = [h["val_iou"] for h in by_iou.history]
    assert by_iou.best_epoch == 1 + ious.index(max(ious))
    assert by_iou.stones is not None  # still scored once, for the model kept
    with pytest.raises(StonesegError, match="epoch kept"):
        cfg.replace(select_epoch_by="loss")
    # the command line's choice (the default stays pixel IoU: level over 9 folds)
    from stoneseg_core.cli import build_parser
    from stoneseg_core.cli.train import _train_config

    def chosen(*options: str) -> str:
        args = build_parser().parse_args(["train", str(root), "--out", "m", *options])
        return _train_config(args).select_epoch_by

    assert chosen() == "iou" and chosen("--select-epoch-by", "stones") == "stones"
    # each epoch's line on the command line shows its stone F1 when it decides
    from stoneseg_core.cli.train import _epoch_line

    assert f"stone F1 {summaries[0].stone_f1:.4f}" in _epoch_line(summaries[0])
    assert "stone F1" not in _epoch_line(replace(summaries[0], stone_f1=None))


def test_predicted_masks_hold_no_speck_under_the_floor(trained_model):
    import cv2
    from synthetic import make_scene

    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.model.config import InferenceConfig
    from stoneseg_core.model.scale import drop_specks_at_work_scale

    prob = np.zeros((30, 30), np.float32)
    prob[2:4, 2:4] = 0.9  # 4 px
    prob[10:20, 10:20] = 0.8  # 100 px
    prob[25, 25] = 0.3  # under the threshold: not a piece
    out = drop_specks_at_work_scale(prob.copy(), 0.5, 5)
    assert np.count_nonzero(out >= 0.5) == 100 and out[2, 2] == 0 and out[25, 25] == 0.3
    assert np.count_nonzero(drop_specks_at_work_scale(prob.copy(), 0.5, 0) >= 0.5) == 104

    seg = Segmenter.load(trained_model, InferenceConfig(runtime="torch"))
    image = make_scene(np.random.default_rng(7), 140, 180)[0]
    pred = seg.predict(image)
    assert pred.min_stone_px > 0
    assert pred.min_stone_px == pytest.approx(seg.speck_floor(pred.scale))
    # the floor is applied at working scale: at the photo's size a piece may come out a
    # little smaller than the floor there (resampling), never a speck of a few pixels
    n, _, stats, _ = cv2.connectedComponentsWithStats((pred.mask > 0).view(np.uint8), 8)
    assert (stats[1:, cv2.CC_STAT_AREA] >= 0.5 * pred.min_stone_px).all()
    # the mask-only path agrees
    fast = seg.predict_mask(image)
    n2, _, stats2, _ = cv2.connectedComponentsWithStats((fast > 0).view(np.uint8), 8)
    assert (stats2[1:, cv2.CC_STAT_AREA] >= 0.5 * pred.min_stone_px).all()
