"""The stone-size scale policy (work_scale.py): the typical stone, the estimate, mosaics,
training with it, and old long-side models loading unchanged."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from synthetic import make_dataset

from stoneseg_core.errors import ModelFileError, StonesegError
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.network import ModelInfo, read_model_info
from stoneseg_core.model.scale import (
    ScalePolicy,
    drop_specks_at_work_scale,
    resize_by,
    snap,
    to_work_scale,
    typical_stone_px,
)


def _pebbles(
    size: int, diameter: int, seed: int = 0, gap: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """A gravel-like scene: discs of about ``diameter`` px on a grid (some touching), bright on dark."""
    rng = np.random.default_rng(seed)
    image = rng.normal(60, 8, (size, size, 3)).clip(0, 255).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    step = diameter + gap
    for y in range(step // 2, size - step // 2 + 1, step):
        for x in range(step // 2, size - step // 2 + 1, step):
            r = int(diameter * rng.uniform(0.4, 0.5))
            cv2.circle(mask, (x, y), r, 255, -1)
    tone = rng.uniform(170, 200)
    image[mask > 0] = (tone + rng.normal(0, 6, (int((mask > 0).sum()), 3))).clip(0, 255)
    return image.astype(np.uint8), mask


def test_typical_stone_is_the_disc_diameter_and_scales_with_the_photo():
    for d in (12, 24, 48, 96):
        m = np.zeros((400, 400), np.uint8)
        cv2.circle(m, (200, 200), d // 2, 255, -1)  # a disc of d + 1 pixels across
        assert typical_stone_px(m) == pytest.approx(d + 1, rel=0.1)
    _, mask = _pebbles(480, 30)
    d1 = typical_stone_px(mask)
    for k in (0.5, 2.0):
        big = cv2.resize(mask, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
        assert typical_stone_px(big) == pytest.approx(k * d1, rel=0.08)
    assert typical_stone_px(np.zeros((50, 50), np.uint8)) is None  # no stones: unknown


def test_touching_stones_keep_their_own_size():
    """A piece of 81 touching discs is a blob 9 stones wide; the typical stone is one disc."""
    touching = np.zeros((400, 400), np.uint8)
    for y in range(30, 371, 40):
        for x in range(30, 371, 40):
            cv2.circle(touching, (x, y), 20, 255, -1)
    assert cv2.connectedComponents(touching)[0] - 1 < 81  # they do touch
    assert typical_stone_px(touching) == pytest.approx(41, rel=0.1)


def test_policy_round_trip_and_clamps():
    p = ScalePolicy("stone-size", 384, stone_px=50.0, train_scale=0.8)
    q = ScalePolicy.from_json(json.loads(json.dumps(p.to_json())), 384)
    assert q == p
    assert ScalePolicy.from_json({}, 256) == ScalePolicy("long-side", 256)
    with pytest.raises(ValueError):
        ScalePolicy.from_json({"policy": "magic"}, 384)
    # a photo of one huge stone is not shrunk below 256 px on its long side ...
    assert p.for_stone(2000, 1000, 1500) == pytest.approx(256 / 1500)
    # ... nor a photo of sand grains enlarged more than 4 times
    assert p.for_stone(2, 1000, 1500) == 4.0
    assert p.for_stone(100, 1000, 1500) == pytest.approx(0.5)
    # snapping: factors within one step land on the same value
    assert snap(0.5) == 0.5 and snap(0.51) == snap(0.49) == 0.5


def _threshold_net(model_input_mean: float = 0.0):
    """A real 1x1 convolution that calls bright pixels stone: exact, scale-free behaviour,
    so what is tested is the policy and the estimate, not a network's skill."""
    import torch
    from torch import nn

    net = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        net.weight.fill_(20.0 / 3)
        net.bias.fill_(-20.0 * model_input_mean)
    return net.eval()


def _stone_size_segmenter(stone_px: float, **cfg) -> Segmenter:
    info = ModelInfo(encoder="local", work_size=384, mean=(0.5,) * 3, std=(0.5,) * 3)
    info.scale = ScalePolicy("stone-size", 384, stone_px=stone_px).to_json()
    return Segmenter(_threshold_net(), info, InferenceConfig(runtime="torch", **cfg), "cpu")


def test_estimate_finds_the_scale_of_photos_rescaled_by_known_factors():
    """The same gravel photographed at 1x, 2x and 3x the resolution: the estimated factors
    are in the inverse ratio, and the stones reach the model's standard size."""
    seg = _stone_size_segmenter(40.0)
    image, mask = _pebbles(300, 20)
    base = seg.work_scale(image)
    assert typical_stone_px(resize_by(mask, base)) == pytest.approx(40, rel=0.15)
    for k in (2.0, 3.0):
        big = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
        f = seg.work_scale(big)
        assert f * k == pytest.approx(base, rel=0.1)
        assert len(seg.last_estimate) >= 1
    # a given stone size and mm/px skip the estimate: 20 px stones of 10 mm at 0.5 mm/px
    given = _stone_size_segmenter(40.0, stone_mm=10.0)
    assert given.work_scale(image, mm_per_px=0.5) == pytest.approx(2.0)


def test_a_mosaic_of_a_photo_is_segmented_at_the_photo_scale():
    """The result must not depend on how much photo surrounds the stones: a 4 x 4 mosaic
    of a photo gets the photo's factor and its mask is the photo's mask, repeated."""
    seg = _stone_size_segmenter(40.0)
    image, truth = _pebbles(256, 18, seed=3)
    mosaic, mosaic_truth = np.tile(image, (4, 4, 1)), np.tile(truth, (4, 4))
    one, four = seg.predict(image), seg.predict(mosaic)
    # the small photo's last estimate pass is its prediction (reused, not run again): the same
    # figures as a pass made afresh at that factor
    fresh = seg.probability_at_work_scale(resize_by(image, one.scale))
    assert np.array_equal(
        one.probability, cv2.resize(fresh, (256, 256), interpolation=cv2.INTER_LINEAR)
    )
    # the same step of the 9 % grid, or its neighbour (the estimate measures the central
    # window, which in the mosaic crosses the seams)
    assert abs(np.log2(one.scale / four.scale)) <= 1 / 8 + 1e-9

    def iou(a, b):
        return np.logical_and(a > 0, b > 0).sum() / np.logical_or(a > 0, b > 0).sum()

    assert iou(four.mask, mosaic_truth) >= 0.95 * iou(one.mask, truth)
    # the long-side policy sees the mosaic's stones 4 times smaller
    long_side = _stone_size_segmenter(40.0, scale="long-side")
    assert long_side.work_scale(mosaic) == pytest.approx(long_side.work_scale(image) / 4)


def test_old_long_side_models_load_and_predict_unchanged(trained_model, tmp_path):
    """A config.json written before scale policies existed (no "scale") is a long-side
    model: it loads, and its prediction is the old computation exactly."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained_model, old)
    cfg_file = old / "config.json"
    d = json.loads(cfg_file.read_text())
    d.pop("scale", None)
    d["train_config"].pop("scale_policy", None)
    d["train_config"].pop("stone_px", None)
    cfg_file.write_text(json.dumps(d))
    info = read_model_info(old)
    assert info.scale_policy == ScalePolicy("long-side", info.work_size)
    seg = Segmenter.load(old, InferenceConfig(runtime="torch"))
    image, _ = _pebbles(300, 24)
    got = seg.predict(image)
    work = to_work_scale(image, info.work_size)
    prob = seg.probability_at_work_scale(work)
    # with the speck floor of a model that records none (a 3-px disc at working scale)
    drop_specks_at_work_scale(prob, seg.config.threshold, seg.speck_floor(1.0))
    expect = cv2.resize(prob, (300, 300), interpolation=cv2.INTER_LINEAR)
    assert got.scale == pytest.approx(info.work_size / 300)
    assert np.array_equal(got.probability, expect)
    # an unknown policy is a damaged file, named
    d["scale"] = {"policy": "magic"}
    cfg_file.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="old"):
        read_model_info(old)


def test_training_with_the_stone_size_policy_records_it_and_fine_tuning_keeps_it(tmp_path):
    from stoneseg_core.io.project import Project
    from stoneseg_core.training.train import run_training

    root = make_dataset(tmp_path / "data", n=5, size=(128, 160), seed=2)
    pairs = Project.open(root).labelled_pairs()
    cfg = TrainConfig(
        epochs=1,
        crop=64,
        work_size=160,
        batch_size=4,
        samples_per_image=2,
        scale_policy="stone-size",
        weights="none",
        encoder="efficientnet-b0",
    )
    out = tmp_path / "m"
    run_training(pairs, out, cfg)
    info = read_model_info(out)
    policy = info.scale_policy
    assert policy.policy == "stone-size"
    # stone_px 0 = the training photos' median typical stone at the long-side scale
    train = [p for p in pairs if p[0].stem in info.train_images]
    sizes = [
        typical_stone_px(cv2.imread(str(m), 0)) * 160 / 160 for _, m in train
    ]  # 160 px photos at work size 160: factor 1
    assert policy.stone_px == pytest.approx(float(np.median(sizes)), rel=1e-3)
    assert policy.train_scale > 0
    assert info.metrics["validation"]["iou"] >= 0  # validated at the estimated scale
    tuned = tmp_path / "tuned"
    run_training(
        pairs,
        tuned,
        TrainConfig(epochs=1, crop=64, batch_size=4, samples_per_image=2),
        from_model=out,
    )
    assert read_model_info(tuned).scale_policy.stone_px == pytest.approx(policy.stone_px)
    # "same scale as the training photos"
    seg = Segmenter.load(out, InferenceConfig(scale="training", runtime="torch"))
    assert seg.work_scale(np.zeros((500, 700, 3), np.uint8)) == pytest.approx(policy.train_scale)


def test_bad_scale_settings_are_refused():
    with pytest.raises(StonesegError, match="Scale policy"):
        TrainConfig(scale_policy="photo")
    with pytest.raises(StonesegError, match="Scale must be"):
        InferenceConfig(scale="big")
    with pytest.raises(StonesegError, match="standard stone"):
        TrainConfig(stone_px=3)


def test_a_long_side_model_records_its_stone_size_for_stone_size_inference(trained_model):
    """Long-side training records the standard stone too (the training photos' median at
    the long-side scale), so ``--scale stone-size`` brings any photo to it at inference."""
    info = read_model_info(trained_model)
    assert info.scale_policy.policy == "long-side" and info.scale_policy.stone_px > 0
    image = np.tile(_pebbles(256, 18, seed=4)[0], (4, 4, 1))
    plain = Segmenter.load(trained_model, InferenceConfig(runtime="torch"))
    assert plain.work_scale(image) == pytest.approx(info.work_size / 1024)
    assert plain.last_estimate == []  # long-side: nothing estimated
    by_stone = Segmenter.load(trained_model, InferenceConfig(runtime="torch", scale="stone-size"))
    factor = by_stone.work_scale(image)
    assert len(by_stone.last_estimate) >= 1
    assert by_stone.scale_policy.clamp(factor, 1024, 1024) == factor


def _fragmenting_network(cap: int):
    """What a network trained on stones of one size does when shown far bigger ones
    (measured on the dev photos): it calls bright pixels stone but paints every stone wider
    than ``cap`` work pixels as pieces about ``cap`` across (a grid of ground lines through
    it), so the size measured on its mask stops growing with the zoom."""

    def stone_mask_at(work: np.ndarray, factor: float, whole: bool) -> np.ndarray:
        stone = (work.mean(axis=2) > 128).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(stone, 4)
        big = np.isin(labels, 1 + np.flatnonzero(stats[1:, 2:4].max(axis=1) > cap))
        lines = np.zeros_like(big)
        lines[::cap, :] = lines[1::cap, :] = lines[:, ::cap] = lines[:, 1::cap] = True
        stone[big & lines] = 0
        return stone > 0

    return stone_mask_at


def test_the_estimate_does_not_follow_a_network_that_fragments_big_stones(monkeypatch):
    """Zoomed in past the scale it knows, the network's pieces stay under 32 px whatever the
    zoom, always 'too small' for a 40-px standard: the estimate stops where zooming in
    stopped making the stones bigger, near the photo's scale, instead of walking to the
    4x upscale limit (7.jpg of the dev photos went to 4.3x its scale)."""
    import stoneseg_core.model.scale as ws

    image, mask = _pebbles(480, 48, seed=5)
    policy = ScalePolicy("stone-size", 384, stone_px=40.0, train_scale=3.0)
    truth = policy.for_stone(typical_stone_px(mask), *mask.shape)
    factor, trail = ws.estimate_scale(image, policy, _fragmenting_network(cap=32))
    assert 0.5 * truth <= factor <= 1.2 * truth, (truth, trail)
    # the trail shows the trap: a measurement zoomed in further that did not grow
    assert any(t["factor"] > 1.4 * truth for t in trail)
    # the same estimate without the guard (no growth required) walks far past the scale
    monkeypatch.setattr(ws, "SATURATION_GROWTH", -math.inf)
    runaway, _ = ws.estimate_scale(image, policy, _fragmenting_network(cap=32))
    assert runaway > 2 * truth


def test_the_guard_leaves_a_network_that_sees_stones_whole_alone():
    """The same photo, rescaled by known factors, with a network that segments stones whole
    at every zoom: the estimates are in the inverse ratio of the rescaling, each bringing the
    stones to the standard size (the guard never fires where sizes grow with the zoom)."""
    from stoneseg_core.model.scale import estimate_scale

    def whole(work, factor, is_whole):
        return work.mean(axis=2) > 128

    image, mask = _pebbles(480, 24, seed=6)
    policy = ScalePolicy("stone-size", 384, stone_px=40.0, train_scale=0.25)
    base, _ = estimate_scale(image, policy, whole)
    assert typical_stone_px(resize_by(mask, base)) == pytest.approx(40, rel=0.1)
    for k in (0.5, 2.0):
        f, trail = estimate_scale(resize_by(image, k), policy, whole)
        assert f * k == pytest.approx(base, rel=0.1), trail


def test_the_typical_stone_shrugs_off_speckle():
    """Isolated specks a network leaves on the ground (2 % of the ground pixels) and
    pinholes in its stones move the typical stone by a few per cent only: it is weighted by
    stone pixels, and a speck has one."""
    _, mask = _pebbles(480, 40, seed=7)
    rng = np.random.default_rng(0)
    clean = typical_stone_px(mask)
    specks = mask.copy()
    specks[(mask == 0) & (rng.random(mask.shape) < 0.02)] = 255
    assert typical_stone_px(specks) == pytest.approx(clean, rel=0.06)
    holes = mask.copy()
    holes[(mask > 0) & (rng.random(mask.shape) < 0.0005)] = 0
    assert typical_stone_px(holes) == pytest.approx(clean, rel=0.15)


def test_stone_size_training_crops_show_a_range_of_stone_sizes():
    """The stone-size policy brings every photo's stones to one size; its training crops
    are zoomed (log-uniform, +-STONE_SIZE_ZOOM_OCTAVES) so the network still sees a range,
    as the long-side policy's photos give it. Each crop's mask stays on its stones."""
    import random

    from stoneseg_core.training.dataset import STONE_SIZE_ZOOM_OCTAVES, CropDataset, Sample

    image, mask = _pebbles(480, 24, seed=8)
    sample = Sample(stem="p", image=image, mask=mask, full_mask=None)
    base = typical_stone_px(mask)
    random.seed(0)

    def sizes(zoom: float) -> list[float]:
        ds = CropDataset(
            [sample], 96, 40, (0.5,) * 3, (0.5,) * 3, augment=False, seed=0, zoom_octaves=zoom
        )
        out = []
        for i in range(len(ds)):
            x, y = ds[i]
            bright = x.numpy().mean(axis=0) > 0
            stone = y[0].numpy() > 0.5
            assert (bright & stone).sum() >= 0.9 * max(stone.sum(), bright.sum())
            out.append(typical_stone_px(stone))
        return out

    plain = sizes(0.0)
    assert max(plain) / min(plain) < 1.3  # one size (less stones cut by the crop's edge)
    zoomed = sizes(STONE_SIZE_ZOOM_OCTAVES)
    assert min(zoomed) < 0.8 * base and max(zoomed) > 1.3 * base
    assert 0.4 * base < min(zoomed) and max(zoomed) < 2.0 * base


def _bench_common():
    """The benchmarks' shared helpers (tests/benchmarks/_common.py: network_reading)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "benchmarks" / "_common.py"
    spec = importlib.util.spec_from_file_location("bench_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fattening_network(grow: int):
    """A network that finds every stone but paints it ``grow`` px fatter all round (touching
    stones merge), as weak models do: it reads every stone bigger than its mask."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))

    def stone_mask_at(work, factor=None, is_whole=None):
        return cv2.dilate((work.mean(axis=2) > 128).view(np.uint8), kernel) > 0

    return stone_mask_at


def test_the_networks_reading_of_the_standard_stone_corrects_a_fattening_network():
    """Trained on photos whose stones are ~36 px (the masks' standard), a network that paints
    stones 4 px fatter reads them at ~44 px (``network_reading``). Estimated towards the
    masks' figure, a photo of such stones is shrunk below its scale; towards the reading, it
    is brought to that scale. (Measured on real data this helps the conveyor mosaics and
    hurts the dev photos, so the app estimates towards the masks' figure: README.)"""
    import dataclasses

    from stoneseg_core.model.scale import estimate_scale, mask_by

    network_reading = _bench_common().network_reading

    net = _fattening_network(4)
    training = [_pebbles(320, 40, seed=seed, gap=8) for seed in (11, 12, 13)]
    stone_px = float(np.median([typical_stone_px(m) for _, m in training]))
    policy = ScalePolicy("stone-size", 384, stone_px=stone_px, train_scale=1.0)
    read = network_reading(policy, training, lambda im: net(im))
    assert read is not None and read > 1.1 * stone_px
    # a new photo of such stones, taken from twice as far: its true factor is about 2
    image, mask = _pebbles(640, 40, seed=14, gap=8)
    small = resize_by(image, 0.5)
    truth = policy.for_stone(typical_stone_px(mask_by(mask, 0.5)), *small.shape[:2])
    plain, _ = estimate_scale(small, policy, net)
    towards, trail = estimate_scale(small, dataclasses.replace(policy, stone_px=read), net)
    assert abs(math.log2(towards / truth)) <= 1 / 8 + 1e-9, (truth, trail)
    assert plain < towards and abs(math.log2(plain / truth)) > abs(math.log2(towards / truth))


def test_the_reading_needs_stones_and_stays_within_its_limit():
    network_reading = _bench_common().network_reading
    policy = ScalePolicy("long-side", 384, stone_px=30.0)
    blank = np.zeros((64, 64, 3), np.uint8)
    # no stones in the network's masks: nothing to read
    assert network_reading(policy, [(blank, blank[..., 0])], lambda im: im[..., 0] > 0) is None
    # a network gone wild is kept within READ_RATIO_LIMIT of the masks' figure
    image, mask = _pebbles(256, 12, seed=3, gap=30)
    wild = network_reading(policy, [(image, mask)], lambda im: np.ones(im.shape[:2], bool))
    assert wild == pytest.approx(4.0 * policy.stone_px)
