"""The "mask+distance" target (each stone's distance to its own edge, over its largest: the deep
watershed transform's energy), measured against the boundary band (docs/stones.md): its
target plane, the split that follows it, and a real tiny U-Net trained on it."""

from __future__ import annotations

import json

import cv2
import numpy as np
from skimage.draw import disk
from synthetic import make_dataset, make_scene

from stoneseg_core.grains import match_instances, split_stones, write_instance_png
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.project import Project
from stoneseg_core.model.config import TARGETS, TrainConfig
from stoneseg_core.scoring.stones import SPLIT_NAMES, score_stones
from stoneseg_core.training.dataset import CropDataset, Sample, stone_distance
from stoneseg_core.training.train import run_training


def _touching_squares() -> np.ndarray:
    labels = np.zeros((14, 22), np.int32)
    labels[2:11, 2:11] = 1  # 9 x 9, centre (6, 6)
    labels[2:11, 11:20] = 2  # touching it with no gap, centre (6, 15)
    labels[12, 20] = 3  # a one-pixel speck
    return labels


def test_each_stone_peaks_at_one_at_its_centre_and_falls_to_the_seam():
    labels = _touching_squares()
    d = stone_distance(labels)
    assert d.dtype == np.float32 and d.shape == labels.shape
    assert (d[labels == 0] == 0).all() and (d[labels > 0] > 0).all()
    assert d[6, 6] == d[6, 15] == 1.0 and d[12, 20] == 1.0  # a speck is a centre throughout
    for i in (1, 2):
        assert d[labels == i].max() == 1.0 and (d[labels == i] == 1.0).sum() == 1
    # the two columns either side of the seam are as low as the stones' outer edges
    assert d[6, 10] == d[6, 11] == d[6, 2] == d[2, 6]
    assert d[6, 10] < 0.25
    # its cores (> 0.5) are two, one in each stone: the seam is found without any gap
    n, cores = cv2.connectedComponents((d > 0.5).view(np.uint8))
    assert n - 1 == 3 and set(np.unique(labels[cores > 0])) == {1, 2, 3}
    # a stone's size does not change its peak: a big stone and a small one both reach 1
    big = np.zeros((60, 60), np.int32)
    big[5:55, 5:30], big[20:24, 40:44] = 1, 2
    db = stone_distance(big)
    assert db[big == 1].max() == db[big == 2].max() == 1.0
    assert stone_distance(np.zeros((4, 4), np.int32)).max() == 0.0


def test_the_photo_edge_is_not_an_edge():
    labels = np.zeros((10, 10), np.int32)
    labels[:, :4] = 1  # a stone cut by the left edge of the crop
    d = stone_distance(labels)
    # its values fall towards its right edge only: the left edge column is its ridge
    np.testing.assert_allclose(d[5, :4], [1.0, 0.75, 0.5, 0.25])


def _overlapping_discs():
    truth = np.zeros((80, 110), np.int32)
    truth[disk((40, 45), 24)] = 1
    truth[disk((40, 67), 24)] = 2  # a fat peanut with no waist for the distance transform
    return truth


def test_the_distance_map_splits_what_the_shape_alone_cannot():
    truth = _overlapping_discs()
    fg = truth > 0
    assert split_stones(fg).max() == 1
    edge_map = 1.0 - cv2.GaussianBlur(stone_distance(truth), (0, 0), 1.0)  # as a model gives it
    for how in ("seams", "cores"):
        labels = split_stones(fg, None, boundary=edge_map, boundary_split=how)
        assert match_instances(labels, truth).f1 == 1.0, how
        np.testing.assert_array_equal(labels > 0, fg)


def test_the_dataset_gives_the_distance_plane():
    labels = _touching_squares()
    mask = np.where(labels > 0, 255, 0).astype(np.uint8)
    image = np.dstack([mask] * 3)
    kw = dict(crop=14, samples_per_image=1, mean=(0, 0, 0), std=(1, 1, 1), augment=False)
    s = Sample("a", image[:, :14], mask[:, :14], None, instances=labels[:, :14])
    _, band = CropDataset([s], boundary_px=2, **kw)[0]
    _, dist = CropDataset([s], boundary_px=2, distance=True, **kw)[0]
    assert band.shape == dist.shape == (2, 14, 14)  # stone, second plane
    np.testing.assert_array_equal(band[0].numpy(), dist[0].numpy())
    assert set(np.unique(band[1].numpy())) <= {0.0, 1.0}
    np.testing.assert_allclose(dist[1].numpy(), stone_distance(labels[:, :14]), atol=1e-6)


def test_a_distance_model_trains_and_its_segmenter_gives_an_edge_map(tmp_path):
    root = make_dataset(tmp_path / "data", n=3, size=(96, 128), seed=4)
    pairs = Project.open(root).labelled_pairs()
    cfg = TrainConfig(
        epochs=1, crop=64, work_size=128, batch_size=2, samples_per_image=2, seed=0
    ).replace(target="mask+distance")
    assert cfg.classes == 2
    run_training(pairs, tmp_path / "m", cfg)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["classes"] == 2 and saved["train_config"]["target"] == "mask+distance"
    seg = Segmenter.load(tmp_path / "m")
    image = make_scene(np.random.default_rng(1), 96, 128)[0]  # at working scale: no resize
    p = seg.predict(image)
    raw = seg._probabilities_at(image, 1.0, None)
    assert p.scale == 1.0 and p.boundary is not None
    # the network's distance channel, turned into the edge map the split follows
    np.testing.assert_allclose(p.boundary, 1.0 - raw[1], atol=1e-6)
    np.testing.assert_allclose(p.probability, raw[0], atol=1e-6)
    assert split_stones(p.mask > 0, p.probability, boundary=p.boundary).shape == (96, 128)
    # evaluate --instances and the validation panel name the split it used
    truth = np.zeros((96, 128), np.uint16)
    truth[20:40, 20:40], truth[50:70, 60:90] = 1, 2
    write_instance_png(tmp_path / "truth.png", truth)
    cv2.imwrite(str(tmp_path / "photo.png"), image[..., ::-1])
    scores = score_stones(seg, [(tmp_path / "photo.png", tmp_path / "truth.png")])
    assert scores["split"] == "seams (distance map)" and scores["n_true"] == 2
    assert set(SPLIT_NAMES) == set(TARGETS)  # every target's split has its name


def test_fine_tuning_a_distance_model_keeps_its_target(tmp_path):
    root = make_dataset(tmp_path / "data", n=3, size=(96, 128), seed=5)
    pairs = Project.open(root).labelled_pairs()
    cfg = TrainConfig(epochs=1, crop=64, work_size=128, batch_size=2, samples_per_image=1, seed=0)
    run_training(pairs, tmp_path / "d", cfg.replace(target="mask+distance"))
    # the window fine-tunes with its default target, the boundary band: the distance
    # channel must not be retrained to mean a band under the same weights
    run_training(pairs, tmp_path / "ft", cfg, from_model=tmp_path / "d")
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["train_config"]["target"] == "mask+distance" and saved["classes"] == 2
    assert Segmenter.load(tmp_path / "ft").info.target == "mask+distance"
