import json

import numpy as np
import pytest
import torch

from stoneseg_core.errors import DataError
from stoneseg_core.io.project import Project, split_by_image
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.network import (
    build_model,
    load_model,
    recalibrate_batchnorm,
    set_bn_momentum,
)
from stoneseg_core.training.events import BatchProgress, EpochSummary
from stoneseg_core.training.train import iter_training, run_training

TINY = TrainConfig(epochs=2, crop=64, work_size=128, batch_size=2, samples_per_image=2, seed=0)


def test_split_is_by_image_reproducible_and_never_empty():
    stems = [f"s{i}" for i in range(10)]
    tr, va = split_by_image(stems, 0.2, seed=3)
    assert len(va) == 2 and set(tr) | set(va) == set(stems) and not set(tr) & set(va)
    assert split_by_image(stems, 0.2, seed=3) == (tr, va)
    assert split_by_image(stems, 0.2, seed=4) != (tr, va)
    assert (
        split_by_image(["a", "b"], 0.0)[1] == ["b"] or len(split_by_image(["a", "b"], 0.0)[1]) == 1
    )
    assert split_by_image(stems, 0.2, val_images=("s3.jpg", "s7")) == (
        [s for s in stems if s not in ("s3", "s7")],
        ["s3", "s7"],
    )
    with pytest.raises(DataError, match="at least two"):
        split_by_image(["only"], 0.2)
    with pytest.raises(DataError, match="not among"):
        split_by_image(stems, 0.2, val_images=("zzz",))


def test_training_yields_progress_and_saves_best_model(dataset, tmp_path):
    pairs = Project.open(dataset).labelled_pairs()
    events = []
    result = run_training(pairs, tmp_path / "m", TINY, on_event=events.append)
    batches = [e for e in events if isinstance(e, BatchProgress)]
    epochs = [e for e in events if isinstance(e, EpochSummary)]
    assert len(epochs) == 2 and len(batches) == 2 * batches[0].batches
    assert all(np.isfinite(b.loss) for b in batches)
    assert result.best_epoch in (1, 2) and not result.cancelled
    assert set(result.train_images).isdisjoint(result.val_images) and len(result.val_images) == 1
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert len(cfg["history"]) == 2 and cfg["metrics"]["best_epoch"] == result.best_epoch
    assert cfg["val_images"] == list(result.val_images) and cfg["train_config"]["crop"] == 64
    assert cfg["metrics"]["validation"]["iou"] == pytest.approx(result.best.iou)
    model, info = load_model(tmp_path / "m")
    assert info.work_size == 128


def test_stop_takes_effect_within_one_batch_and_keeps_a_model(dataset, tmp_path):
    pairs = Project.open(dataset).labelled_pairs()
    seen = []
    cfg = TINY.replace(epochs=5, samples_per_image=4)
    result = run_training(
        pairs, tmp_path / "m", cfg, on_event=seen.append, should_stop=lambda: len(seen) >= 2
    )
    assert result.cancelled
    assert (
        sum(isinstance(e, BatchProgress) for e in seen) == 2
    )  # stopped right after the batch it was asked in
    load_model(tmp_path / "m")  # the best so far is on disk and loads
    assert json.loads((tmp_path / "m" / "config.json").read_text())["metrics"]["cancelled"] is True


def test_closing_the_generator_stops_cleanly(dataset, tmp_path):
    gen = iter_training(
        Project.open(dataset).labelled_pairs(), tmp_path / "m", TINY.replace(epochs=3)
    )
    for e in gen:
        if isinstance(e, EpochSummary):
            break
    gen.close()
    load_model(tmp_path / "m")


def test_one_labelled_image_is_a_clear_error(dataset, tmp_path):
    pairs = Project.open(dataset).labelled_pairs()[:1]
    with pytest.raises(DataError, match="at least two"):
        run_training(pairs, tmp_path / "m", TINY)
    with pytest.raises(DataError, match="No labelled"):
        run_training([], tmp_path / "m", TINY)


def test_fine_tuning_starts_from_the_earlier_model(dataset, tmp_path):
    pairs = Project.open(dataset).labelled_pairs()
    run_training(pairs, tmp_path / "a", TINY.replace(epochs=1))
    result = run_training(
        pairs, tmp_path / "b", TINY.replace(epochs=1, work_size=256), from_model=tmp_path / "a"
    )
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["parent"] == str(tmp_path / "a")
    assert cfg["work_size"] == 128  # a model keeps its working scale
    assert result.best_epoch == 1


def test_batchnorm_recalibration_fixes_lagging_statistics():
    """SMP's efficientnet-b0 uses momentum 0.01: after training from random weights its
    running statistics are far from the data's, and eval-mode output is wrong. After
    recalibration every BatchNorm layer must hold the statistics of its own input, as the
    network computes it at inference (dropout and stochastic depth off)."""
    torch.manual_seed(0)
    model = build_model("efficientnet-b0", "none", bn_momentum=None)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert min(m.momentum for m in bns) == pytest.approx(
        0.01, abs=1e-6
    )  # the trap this test is about
    x = torch.randn(8, 3, 96, 96) * 3 + 2  # data far from the init statistics
    model.train()
    with torch.no_grad():
        for _ in range(3):  # a few "training" batches move the running stats by 1 % each
            model(x)
        model.eval()
        lagging = torch.sigmoid(model(x))
        # the same network using each layer's batch statistics, running stats untouched
        seen = {}
        hooks = [
            m.register_forward_pre_hook(lambda m, inp: seen.__setitem__(m, inp[0].detach()))
            for m in bns
        ]
        for m in bns:
            m.train()
            m.momentum = 0.0
        reference = torch.sigmoid(model(x))
        for h in hooks:
            h.remove()
    bns = [m for m in bns if m in seen]  # the encoder's classifier head never runs in a U-Net
    stale = max((m.running_mean - seen[m].mean((0, 2, 3))).abs().max().item() for m in bns)
    used = recalibrate_batchnorm(model, [x], torch.device("cpu"), max_batches=4)
    assert used == 1 and not model.training
    for m in bns:
        assert m.momentum == 0.0  # each layer gets its own momentum back
        inp = seen[m]
        torch.testing.assert_close(m.running_mean, inp.mean((0, 2, 3)), atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(
            m.running_var, inp.var((0, 2, 3), unbiased=True), atol=1e-4, rtol=1e-3
        )
    assert stale > 0.5  # before: the statistics were far off
    with torch.no_grad():
        fixed = torch.sigmoid(model(x))
    err_before = (lagging - reference).abs().mean().item()
    err_after = (fixed - reference).abs().mean().item()
    assert err_after < 0.5 * err_before  # the rest is BN's unbiased-variance correction on 3x3 maps


def test_momentum_is_set_for_training():
    model = build_model("efficientnet-b0", "none", bn_momentum=0.1)
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    set_bn_momentum(model, 0.05)
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.05}


def test_trained_model_beats_chance_on_held_out_scene(trained_model, tmp_path):
    from synthetic import make_scene

    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.scoring.pixels import confusion

    img, truth = make_scene(np.random.default_rng(99), 128, 160)
    pred = Segmenter.load(trained_model).predict(img).mask
    s = confusion(pred, truth).scores()
    assert s.iou > 0.6, s


def test_a_few_photos_still_get_enough_batches_an_epoch(dataset, tmp_path):
    # the default: 8 crops a photo, raised so that an epoch has 9 batches of 8
    assert [TrainConfig().crops_per_image(n) for n in (1, 4, 9, 40)] == [72, 18, 8, 8]
    with pytest.raises(Exception, match="least batches"):
        TrainConfig(min_batches_per_epoch=-1)
    pairs = Project.open(dataset).labelled_pairs()
    counted = {}
    for least in (0, 5):
        events = []
        cfg = TINY.replace(epochs=1, min_batches_per_epoch=least)
        result = run_training(pairs, tmp_path / f"m{least}", cfg, on_event=events.append)
        batches = [e for e in events if isinstance(e, BatchProgress)]
        n = len(result.train_images)
        assert batches[-1].batches == len(batches)
        assert len(batches) == n * cfg.crops_per_image(n) // 2  # batches of 2
        counted[least] = len(batches)
    assert counted[0] < 5 <= counted[5]
