"""The optional boundary-aware target ("mask+boundary"): targets, augmentation, model files,
inference (whole, tiled, TTA, ONNX Runtime on the CPU) and the boundary-aware split. Real files, real U-Nets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from skimage.draw import disk
from synthetic import make_dataset, make_scene

from stoneseg_core.errors import ModelFileError, StonesegError
from stoneseg_core.grains import (
    analyse_mask,
    match_instances,
    read_instance_labels,
    split_stones,
    write_instance_png,
)
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.project import Project
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.network import ModelInfo, build_model, load_model, save_model
from stoneseg_core.training.dataset import (
    CropDataset,
    Sample,
    boundary_band,
    instances_to_work_scale,
    load_samples,
    mask_components,
    small_stone_weights,
    stone_and_boundary,
    train_augmentation,
)
from stoneseg_core.training.losses import StoneBoundaryLoss
from stoneseg_core.training.train import run_training

# two stones side by side, on ground, in a 5 x 8 image
TWO = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 2, 2, 2, 0],
        [0, 1, 1, 1, 2, 2, 2, 0],
        [0, 1, 1, 1, 2, 2, 2, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ],
    np.int32,
)


# ---------------------------------------------------------------------------------- targets


def test_boundary_from_instances_marks_the_seam_between_stones():
    band = boundary_band(TWO, 1)
    expected = TWO > 0
    expected[2, 2] = expected[2, 5] = False  # the only pixels whose 4 neighbours are their own
    np.testing.assert_array_equal(band, expected)
    assert band.dtype == bool


def test_boundary_from_a_binary_mask_has_no_seam():
    stone, band = stone_and_boundary(np.where(TWO > 0, 255, 0).astype(np.uint8), None, 1)
    np.testing.assert_array_equal(stone, TWO > 0)
    expected = TWO > 0
    expected[2, 2:6] = False  # one piece: the middle row is inside it
    np.testing.assert_array_equal(band, expected)
    np.testing.assert_array_equal(mask_components(TWO > 0), (TWO > 0).astype(np.int32))


def test_boundary_width_is_euclidean_and_the_photo_edge_is_no_boundary():
    square = np.zeros((7, 7), np.int32)
    square[1:6, 1:6] = 5
    band = boundary_band(square, 2)
    expected = square > 0
    expected[3, 3] = False  # the centre is 3 px from the ground; every other pixel <= 2 px
    np.testing.assert_array_equal(band, expected)
    # a stone that fills the photo touches nothing: no band at all
    assert not boundary_band(np.ones((4, 4), np.int32), 3).any()
    # a stone cut by the photo's edge has a band only towards the ground
    half = np.zeros((3, 5), np.int32)
    half[:, :3] = 1
    np.testing.assert_array_equal(boundary_band(half, 1), np.array([[0, 0, 1, 0, 0]] * 3, bool))


def test_boundary_target_stays_inside_the_mask():
    inst = TWO.copy()
    mask = np.where(TWO > 0, 255, 0).astype(np.uint8)
    mask[1, 1] = 0  # the painted mask and the instances disagree on one pixel
    stone, band = stone_and_boundary(mask, inst, 1)
    assert not (band & ~stone).any() and band[1, 2] and not band[1, 1]


def test_instances_are_resized_with_nearest_ids():
    labels = np.kron(TWO, np.ones((4, 4), np.int32)) * 1000  # 20 x 32, ids 1000 and 2000
    small = instances_to_work_scale(labels, 16)
    assert small.shape == (10, 16) and set(np.unique(small)) == {0, 1000, 2000}
    big = np.zeros((20, 30), np.int64)
    big[5:15, 5:25] = 70000  # beyond 16 bits: kept as it is, still nearest
    out = instances_to_work_scale(big, 15)
    assert out.shape == (10, 15) and set(np.unique(out)) == {0, 70000}


# ----------------------------------------------------------------------------- augmentation


def test_augmentation_keeps_image_mask_and_instances_aligned():
    rng = np.random.default_rng(0)
    inst = np.zeros((120, 140), np.uint16)
    for i, (r, c, rad) in enumerate([(30, 30, 18), (30, 64, 18), (80, 50, 25), (85, 110, 20)]):
        rr, cc = disk((r, c), rad, shape=inst.shape)
        inst[rr, cc] = 100 + i
    mask = np.where(inst > 0, 255, 0).astype(np.uint8)
    image = np.where(inst[..., None] > 0, 200, 30).astype(np.uint8).repeat(3, 2)
    image = (image + rng.normal(0, 3, image.shape)).clip(0, 255).astype(np.uint8)
    t = train_augmentation(64, seed=3)
    rotated = 0
    for _ in range(40):
        out = t(image=image, mask=mask, instances=inst)
        m, ins, img = out["mask"], out["instances"], out["image"]
        assert ins.dtype == np.uint16 and m.shape == ins.shape == img.shape[:2] == (64, 64)
        np.testing.assert_array_equal(m > 127, ins > 0)  # same geometry, nearest ids
        assert set(np.unique(ins)) <= {0, 100, 101, 102, 103}
        grey, stone = img.mean(axis=2), m > 127
        if stone.any() and (~stone).any():  # the photo moved with its labels
            on, off = grey[stone].mean(), grey[~stone].mean()
            assert on > off + 50 and ((grey > (on + off) / 2) == stone).mean() > 0.95
        rotated += not np.array_equal(ins, inst[:64, :64])
    assert rotated > 30

    # the dataset's two-channel target is computed on the augmented crop
    sample = Sample("s", image, mask, None, inst)
    ds = CropDataset([sample], 64, 8, (0.5,) * 3, (0.25,) * 3, seed=0, boundary_px=2)
    seams = 0
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 64, 64) and y.shape == (2, 64, 64) and y.dtype == torch.float32
        stone, band = y[0].numpy() > 0.5, y[1].numpy() > 0.5
        assert not (band & ~stone).any()
        # pixels of the band that are not next to the ground: seams between two stones
        near_ground = cv2.dilate((~stone).view(np.uint8), np.ones((5, 5), np.uint8)) > 0
        seams += int((band & ~near_ground).sum())
    assert seams > 0  # discs 0 and 1 touch: the band runs between them
    # without instances: only the edge to the ground, and the 1-channel default is unchanged
    plain = CropDataset([Sample("s", image, mask, None)], 64, 2, (0.5,) * 3, (0.25,) * 3)
    assert plain[0][1].shape == (1, 64, 64)


def test_small_stone_weights_lift_whole_stones_under_the_median():
    labels = np.zeros((40, 40), np.int32)
    labels[2:12, 2:12] = 1  # 100 px
    labels[2:12, 20:30] = 2  # 100 px
    labels[20:30, 2:12] = 3  # 100 px: the median of the whole stones
    labels[20:23, 20:23] = 4  # 9 px: sqrt(100 / 9) = 3.33
    labels[24:25, 24:25] = 6  # 1 px: sqrt(100) = 10, capped at 4
    labels[37:40, 35:38] = 5  # 9 px but cut by the crop's edge: its size is unknown
    w = small_stone_weights(labels, 4.0)
    assert w.dtype == np.float32 and w.shape == labels.shape
    assert np.allclose(w[labels == 4], np.sqrt(100 / 9)) and np.all(w[labels == 6] == 4.0)
    for plain in (0, 1, 2, 3, 5):  # ground, the median-sized stones, the cut stone
        assert np.all(w[labels == plain] == 1.0)
    assert np.all(small_stone_weights(labels, 1.0) == 1.0)  # the setting off
    huge = np.where(labels > 0, labels + 2_000_000_000, 0).astype(np.int64)  # 32-bit-sized ids
    np.testing.assert_array_equal(small_stone_weights(huge, 4.0), w)
    few = np.zeros((20, 20), np.int32)
    few[2:10, 2:10], few[12:14, 12:14] = 1, 2  # two whole stones: no median to go by
    assert np.all(small_stone_weights(few, 4.0) == 1.0)


def test_the_weight_plane_reaches_the_loss():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 8, 8), torch.rand(2, 2, 8, 8).round()
    loss = StoneBoundaryLoss()
    ones = torch.cat([target, torch.ones(2, 1, 8, 8)], 1)
    assert torch.isclose(loss(logits, target), loss(logits, ones))  # weight 1: the same loss
    heavy = ones.clone()
    wrong = (logits[:, :1] > 0) != (target[:, :1] > 0.5)  # pixels the logits get wrong
    heavy[:, 2:3][wrong] = 4.0
    assert loss(logits, heavy) > loss(logits, ones)  # their weight raises the loss
    # the dataset adds the plane only when the setting is on, from the crop's stones
    inst = np.zeros((64, 64), np.uint16)
    for i, (r, c, rad) in enumerate([(12, 12, 8), (12, 40, 8), (40, 12, 8), (40, 40, 2)]):
        rr, cc = disk((r, c), rad, shape=inst.shape)
        inst[rr, cc] = i + 1
    mask = np.where(inst > 0, 255, 0).astype(np.uint8)
    image = np.where(inst[..., None] > 0, 200, 30).astype(np.uint8).repeat(3, 2)
    sample = Sample("s", image, mask, None, inst)
    args = ([sample], 64, 1, (0.5,) * 3, (0.25,) * 3)
    plain = CropDataset(*args, augment=False, boundary_px=2)[0][1]
    weighed = CropDataset(*args, augment=False, boundary_px=2, small_stone_weight=4.0)[0][1]
    assert plain.shape == (2, 64, 64) and weighed.shape == (3, 64, 64)
    assert torch.equal(plain, weighed[:2])
    small = torch.from_numpy(inst == 4)
    assert float(weighed[2][small].min()) > 3.0 and float(weighed[2][~small].max()) == 1.0
    # a photo without per-stone labels: its mask's pieces are the stones, as for the band
    bare = CropDataset(
        [Sample("s", image, mask, None)],
        *args[1:],
        augment=False,
        boundary_px=2,
        small_stone_weight=4.0,
    )[0][1]
    assert torch.equal(bare, weighed)  # these discs do not touch: pieces = stones


# ------------------------------------------------------------------------------ model files


@pytest.fixture(scope="module")
def two_channel_model(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("efficientnet-b0", "none", classes=2).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    info = ModelInfo(encoder="efficientnet-b0", work_size=96, target="mask+boundary")
    folder = save_model(model, info, tmp_path_factory.mktemp("m2") / "model")
    return model, folder


def test_two_channel_model_round_trip(two_channel_model):
    model, folder = two_channel_model
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["classes"] == 2 and cfg["target"] == "mask+boundary"
    loaded, info = load_model(folder)
    assert info.classes == 2 and info.target == "mask+boundary"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = loaded(x)
        torch.testing.assert_close(out, model(x))
    assert out.shape == (1, 2, 64, 64)


def test_model_files_with_other_outputs_are_refused(two_channel_model, tmp_path):
    _, folder = two_channel_model
    cfg = json.loads((folder / "config.json").read_text())
    for name, change, words in [
        ("three", {"classes": 3, "target": "mask+boundary"}, "cannot run"),
        ("text", {"classes": "2"}, "cannot run"),
        ("mismatch", {"classes": 1, "target": "mask+boundary"}, "cannot tell"),
        ("unknown", {"target": "edges"}, "cannot tell"),
        ("one", {"classes": 1, "target": "mask"}, "1 output channel"),  # weights have 2
    ]:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({**cfg, **change}))
        (d / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        with pytest.raises(ModelFileError, match=words):
            load_model(d)
    with pytest.raises(ModelFileError):
        build_model("efficientnet-b0", classes=3)


def test_old_model_files_load_as_one_channel_masks(mask_model, tmp_path):
    cfg = json.loads((mask_model / "config.json").read_text())
    assert cfg["classes"] == 1 and cfg["target"] == "mask"
    assert cfg["train_config"]["target"] == "mask"
    old = tmp_path / "old"
    old.mkdir()
    del cfg["target"]  # as written before the boundary target existed
    del cfg["train_config"]["target"], cfg["train_config"]["boundary_px"]
    (old / "config.json").write_text(json.dumps(cfg))
    (old / "model.safetensors").write_bytes((mask_model / "model.safetensors").read_bytes())
    model, info = load_model(old)
    assert info.classes == 1 and info.target == "mask"
    assert info.train_config.target == "mask"
    seg = Segmenter(model, info, InferenceConfig(device="cpu"))
    img, _ = make_scene(np.random.default_rng(0), 96, 128)
    p = seg.predict(img)
    assert p.boundary is None and p.probability.shape == (96, 128)
    ref = Segmenter.load(mask_model, InferenceConfig(device="cpu")).predict(img)
    np.testing.assert_array_equal(p.probability, ref.probability)


# -------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("tta", [False, True])
def test_two_channel_prediction_whole_and_tiled(two_channel_model, tta):
    _, folder = two_channel_model
    img, _ = make_scene(np.random.default_rng(4), 150, 190, n_stones=7)
    whole = Segmenter.load(folder, InferenceConfig(tile=512, tta=tta, device="cpu"))
    tiled = Segmenter.load(
        folder, InferenceConfig(tile=64, overlap=16, batch_tiles=3, tta=tta, device="cpu")
    )
    for seg in (whole, tiled):
        seg.info.work_size = 190  # native size, so the 64-px tiles really tile
    a, b = whole.predict(img), tiled.predict(img)
    for p in (a, b):
        assert p.probability.shape == p.boundary.shape == p.mask.shape == (150, 190)
        assert p.boundary.dtype == np.float32 and 0 <= p.boundary.min() <= p.boundary.max() <= 1
        assert not np.array_equal(p.probability, p.boundary)
    # tiles see less context, so they differ a little near the seams
    assert np.abs(a.probability - b.probability).mean() < 0.05
    assert np.abs(a.boundary - b.boundary).mean() < 0.05
    probs = whole.probabilities_at_work_scale(img)
    assert probs.shape == (2, 150, 190)
    np.testing.assert_allclose(whole.probability_at_work_scale(img), probs[0], atol=1e-4)
    # the device tiling code (plain torch, run on the CPU here) gives the host's result
    from stoneseg_core.inference.tiling import pad_to

    dev = tiled.network.pytorch.tiles_on_device(
        pad_to(img, 150, 190), tiled.config, tiled.info, None
    )
    np.testing.assert_allclose(
        dev[:, :150, :190], tiled.probabilities_at_work_scale(img), atol=1e-4
    )
    if tta:  # on a multiple of 32, so the flipped photo is padded the same way
        sub = np.ascontiguousarray(img[:128, :160])
        whole.info.work_size = 160
        c = whole.predict(sub)
        flipped = whole.predict(sub[:, ::-1].copy())
        np.testing.assert_allclose(c.boundary, flipped.boundary[:, ::-1], atol=2e-3)
        np.testing.assert_allclose(c.probability, flipped.probability[:, ::-1], atol=2e-3)


def test_onnx_runtime_agrees_for_two_channels(two_channel_model):
    _, folder = two_channel_model
    img, _ = make_scene(np.random.default_rng(6), 96, 96)
    seg = Segmenter.load(folder, InferenceConfig(device="cpu"))
    ref = Segmenter.load(folder, InferenceConfig(device="cpu", runtime="torch"))
    got, want = seg.predict(img), ref.predict(img)
    assert seg.runtime_in_use == "onnxruntime" and ref.runtime_in_use == "torch"
    np.testing.assert_allclose(got.probability, want.probability, atol=1e-4)
    np.testing.assert_allclose(got.boundary, want.boundary, atol=1e-4)


# --------------------------------------------------------------------------------- training


def _with_instances(root, seed=0):
    """Add instances/<stem>.png (16-bit) to a synthetic dataset: one id per stone-ish piece."""
    project = Project.open(root)
    pairs = []
    for img, mask in project.labelled_pairs():
        m = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
        labels = mask_components(m) * 300  # ids above 255, so only a 16-bit PNG holds them
        inst = root / "instances" / f"{img.stem}.png"
        inst.parent.mkdir(exist_ok=True)
        write_instance_png(inst, labels)
        assert read_instance_labels(inst).max() == labels.max()
        pairs.append((img, mask, inst))
    return pairs


def test_training_with_the_boundary_target_writes_a_two_channel_model(tmp_path):
    root = make_dataset(tmp_path / "data", n=3, size=(96, 128), seed=2)
    pairs = _with_instances(root)
    samples = load_samples(pairs, 64, keep_full_mask=False)
    assert samples[0].instances is not None and samples[0].instances.shape == (48, 64)
    assert load_samples(pairs, 64, False, with_instances=False)[0].instances is None
    cfg = TrainConfig(
        epochs=1, crop=64, work_size=128, batch_size=2, samples_per_image=2, seed=0
    ).replace(target="mask+boundary", boundary_px=2)
    result = run_training(pairs, tmp_path / "m", cfg)
    assert result.best_epoch == 1
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["classes"] == 2 and saved["train_config"]["target"] == "mask+boundary"
    p = Segmenter.load(tmp_path / "m").predict(make_scene(np.random.default_rng(1), 70, 90)[0])
    assert p.boundary is not None and p.boundary.shape == p.probability.shape == (70, 90)
    # plain (image, mask) pairs train the boundary target too, from the mask's pieces
    run_training([pr[:2] for pr in pairs], tmp_path / "m2", cfg)
    assert load_model(tmp_path / "m2")[1].classes == 2


def test_a_one_channel_model_can_be_fine_tuned_with_the_boundary_target(trained_model, tmp_path):
    root = make_dataset(tmp_path / "data", n=3, size=(96, 128), seed=3)
    pairs = Project.open(root).labelled_pairs()
    cfg = TrainConfig(epochs=1, crop=64, batch_size=2, samples_per_image=1, target="mask+boundary")
    run_training(pairs, tmp_path / "ft", cfg, from_model=trained_model)
    model, info = load_model(tmp_path / "ft")
    assert info.classes == 2 and info.parent == str(trained_model)
    parent, _ = load_model(trained_model)
    # the encoder came from the parent (one epoch moved it only a little)
    stem = next(n for n, _ in parent.named_parameters() if "conv_stem" in n)
    a = dict(parent.named_parameters())[stem]
    b = dict(model.named_parameters())[stem]
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.9
    # fine-tuning it again with the default target keeps its boundary channel
    run_training(pairs, tmp_path / "ft2", cfg.replace(target="mask"), from_model=tmp_path / "ft")
    assert load_model(tmp_path / "ft2")[1].classes == 2


def test_target_setting_is_checked():
    # the default sees where one stone ends (docs/stones.md); "mask" stays selectable
    assert TrainConfig().target == "mask+boundary" and TrainConfig().classes == 2
    assert TrainConfig(target="mask").classes == 1
    # a dict without one takes the default; a model file without one is a mask model
    # (ModelInfo.train_config, test_old_model_files_load_as_one_channel_masks)
    assert TrainConfig.from_dict({"epochs": 3}).target == "mask+boundary"
    with pytest.raises(StonesegError, match="Target"):
        TrainConfig(target="boundary")
    with pytest.raises(StonesegError, match="Boundary width"):
        TrainConfig(boundary_px=0)
    with pytest.raises(StonesegError, match="small-stone weight"):
        TrainConfig(small_stone_weight=0.5)


# ---------------------------------------------------------------------------------- splitting


def _overlapping_discs():
    truth = np.zeros((80, 110), np.int32)
    rr, cc = disk((40, 45), 24)
    truth[rr, cc] = 1
    rr, cc = disk((40, 67), 24)  # centres 22 px apart, radius 24: a fat peanut, no waist to cut
    truth[rr, cc] = 2
    return truth


@pytest.mark.parametrize("how", ["seams", "cores"])
def test_boundary_map_splits_discs_the_distance_transform_merges(how):
    truth = _overlapping_discs()
    fg = truth > 0
    assert split_stones(fg).max() == 1  # the shape alone: one stone
    assert split_stones(fg, fg.astype(np.float32)).max() == 1  # a sure probability: the same
    boundary = boundary_band(truth, 2).astype(np.float32)
    labels = split_stones(fg, None, boundary=boundary, boundary_split=how)
    assert labels.max() == 2 and match_instances(labels, truth).f1 == 1.0
    np.testing.assert_array_equal(labels > 0, fg)  # no stone pixel is dropped
    # a soft, blurred map (as a model gives) works as well, with or without the probability
    soft = cv2.GaussianBlur(boundary, (0, 0), 1.0)
    for prob in (None, fg.astype(np.float32)):
        labels = split_stones(fg, prob, boundary=soft, boundary_split=how)
        assert match_instances(labels, truth).f1 == 1.0
    # a speck of non-boundary inside the band seeds nothing: it joins a stone
    speck = boundary.copy()
    speck[40, 56] = 0.0
    assert split_stones(fg, None, boundary=speck, boundary_split=how).max() == 2
    # analyse_mask passes it through (and leaves it out when the model is not to be used)
    got, result = analyse_mask(fg, None, None, name="p", boundary=boundary)
    assert len(result.stones) == 2
    from stoneseg_core.grains import GrainOptions

    _, plain = analyse_mask(fg, None, None, GrainOptions(use_probability=False), boundary=boundary)
    assert len(plain.stones) == 1


@pytest.mark.parametrize("how", ["seams", "cores"])
def test_boundary_split_edge_cases(how):
    truth = _overlapping_discs()
    fg = truth > 0
    # everything boundary: each piece of the mask is one stone
    labels = split_stones(fg, None, boundary=np.ones(fg.shape, np.float32), boundary_split=how)
    assert labels.max() == 1 and (labels > 0).sum() == fg.sum()
    # nothing boundary: the pieces of the mask
    two = np.zeros_like(fg)
    two[5:15, 5:15] = two[30:40, 30:40] = True
    nothing = np.zeros(two.shape, np.float32)
    assert split_stones(two, None, boundary=nothing, boundary_split=how).max() == 2
    empty = split_stones(np.zeros((5, 5), bool), None, boundary=np.zeros((5, 5)))
    assert empty.max() == 0
    with pytest.raises(StonesegError, match="same photo"):
        split_stones(fg, None, boundary=np.zeros((3, 3), np.float32), boundary_split=how)
    if how == "cores":
        with pytest.raises(StonesegError, match="threshold"):
            split_stones(
                fg, None, boundary=np.zeros(fg.shape), boundary_threshold=1.0, boundary_split=how
            )
    with pytest.raises(StonesegError, match="seams"):
        split_stones(fg, None, boundary=np.zeros(fg.shape), boundary_split="edges")
    # without a boundary map, nothing changes
    np.testing.assert_array_equal(
        split_stones(fg, None, 5), split_stones(fg, None, 5, boundary=None)
    )


# ---------------------------------------------------------------------------- command line


def test_cli_trains_the_boundary_target_and_grains_uses_it(tmp_path, capsys, monkeypatch):
    from stoneseg_core.cli import main
    from stoneseg_core.grains import analyse
    from stoneseg_core.scoring import stones as stone_scores

    data = make_dataset(tmp_path / "data", n=4, size=(96, 128), seed=4)
    pairs = _with_instances(data)
    (data / "instances" / f"{pairs[0][0].stem}.png").unlink()  # one photo without: mask pieces
    model = tmp_path / "model"
    args = ["train", str(data), "--out", str(model), "--epochs", "1", "--crop", "64"]
    args += ["--work-size", "128", "--batch-size", "4", "--target", "mask+boundary"]
    assert main(args + ["--boundary-px", "3", "--small-stone-weight", "4"]) == 0
    assert "3 of 4 photos have instance labels" in capsys.readouterr().err
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["classes"] == 2 and cfg["train_config"]["boundary_px"] == 3
    assert cfg["train_config"]["small_stone_weight"] == 4.0

    seen = []
    real = analyse.split_stones

    def spy(*a, **k):
        seen.append(k.get("boundary"))
        return real(*a, **k)

    monkeypatch.setattr(analyse, "split_stones", spy)  # the folder job's split
    monkeypatch.setattr(stone_scores, "split_stones", spy)  # the stone-level evaluation's
    out = tmp_path / "grains"
    assert main(["grains", str(model), str(data / "images"), str(out)]) == 0
    assert len(seen) == 4 and all(b is not None and b.shape == (96, 128) for b in seen)
    assert (out / "percentiles.json").is_file()
    # stone-level evaluation splits on the boundary map too
    seen.clear()
    capsys.readouterr()
    args = ["evaluate", str(model), str(data), "--json", "--instances", str(data / "instances")]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert len([r for r in result["per_image"] if "stones" in r]) == 3
    assert len(seen) == 3 and all(b is not None for b in seen)
