import cv2
import numpy as np
import pytest
from synthetic import make_scene, write_rgb

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.inference.tiling import blend_window, pad_to, tile_starts
from stoneseg_core.io.images import read_mask
from stoneseg_core.jobs.segment_folder import iter_segment_folder
from stoneseg_core.model.config import InferenceConfig


def test_tiles_cover_everything_with_overlap():
    assert tile_starts(100, 128, 16) == [0]
    starts = tile_starts(300, 128, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:]))
    w = blend_window(64, 16)
    assert w.shape == (64, 64) and w[32, 32] == 1 and 0 < w[0, 0] < 0.01


def test_output_has_the_photo_size_for_any_size(trained_model):
    seg = Segmenter.load(trained_model)
    for h, w in [(37, 51), (200, 90), (96, 128)]:
        img, _ = make_scene(np.random.default_rng(h), h, w)
        p = seg.predict(img)
        assert p.probability.shape == (h, w) and p.mask.shape == (h, w)
        assert p.probability.dtype == np.float32 and set(np.unique(p.mask)) <= {0, 255}


def _local_net():
    """A fully convolutional net that sees 7x7 pixels: tiling cannot change what it sees
    except within 3 px of a tile's edge, where the blending weight is nearly zero."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 1, 3, padding=1),
    )
    return net.eval()


def test_tiles_are_placed_and_blended_exactly():
    """Tiled inference of a local network equals one pass over the whole image: any tile
    put in the wrong place, dropped, or weighted wrongly would show."""
    from stoneseg_core.model.network import ModelInfo

    img, _ = make_scene(np.random.default_rng(5), 220, 260, n_stones=9)
    info = ModelInfo(encoder="local", work_size=260)
    whole = Segmenter(_local_net(), info, InferenceConfig(tile=512), "cpu")
    tiled = Segmenter(
        _local_net(), info, InferenceConfig(tile=128, overlap=32, batch_tiles=3), "cpu"
    )
    a = whole.probability_at_work_scale(img)
    b = tiled.probability_at_work_scale(img)
    assert a.shape == b.shape == (220, 260)
    # the photo's own last pixels differ a little: one pass pads the image to a multiple
    # of 32 (the tiles do not), and the net sees 3 px into that padding
    inner = np.abs(a - b)[4:-4, 4:-4]
    assert inner.max() < 0.01 and np.abs(a - b).mean() < 1e-3


def test_tiled_inference_of_a_trained_unet_is_close_to_whole_image(trained_model):
    """A U-Net's deepest layers see the whole input, so tiles (less context) may answer
    differently; the masks must still agree closely."""
    img, _ = make_scene(np.random.default_rng(5), 220, 260, n_stones=9)
    seg_whole = Segmenter.load(trained_model, InferenceConfig(tile=512))
    seg_whole.info.work_size = 260  # keep native size so that tiling really happens
    seg_tiled = Segmenter.load(trained_model, InferenceConfig(tile=128, overlap=32, batch_tiles=3))
    seg_tiled.info.work_size = 260
    whole = seg_whole.predict(img)
    tiled = seg_tiled.predict(img)
    assert np.abs(whole.probability - tiled.probability).mean() < 0.1
    inter = np.logical_and(whole.mask, tiled.mask).sum()
    union = np.logical_or(whole.mask, tiled.mask).sum()
    assert inter / union > 0.9


def test_no_seams_in_tiled_probability(trained_model):
    flat = np.full((192, 192, 3), 70, np.uint8)  # uniform ground: any seam would show as a step
    seg = Segmenter.load(trained_model, InferenceConfig(tile=128, overlap=32))
    seg.info.work_size = 192
    p = seg.predict(flat).probability
    steps = np.abs(np.diff(p, axis=1))[:, 8:-8]
    assert steps.max() < 0.1


def test_tta_is_flip_invariant(trained_model):
    img, _ = make_scene(np.random.default_rng(8), 128, 160)
    seg = Segmenter.load(trained_model, InferenceConfig(tta=True))
    a = seg.predict(img).probability
    b = seg.predict(img[:, ::-1].copy()).probability[:, ::-1]
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_segment_folder_reports_bad_files_and_carries_on(trained_model, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_rgb(src / f"p{i}.jpg", make_scene(rng, 64 + 10 * i, 80)[0])
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (src / "notes.txt").write_text("ignored")
    seg = Segmenter.load(trained_model)
    gen = iter_segment_folder(seg, src, out)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            summary = stop.value
            break
    assert (
        summary.written == 3 and len(summary.failed) == 1 and "broken.jpg" in summary.failed[0][1]
    )
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    for i in range(3):
        m = cv2.imread(str(out / f"p{i}.png"), cv2.IMREAD_UNCHANGED)
        assert (
            m.dtype == np.uint8 and m.shape == (64 + 10 * i, 80) and set(np.unique(m)) <= {0, 255}
        )
    # a second run keeps what is there unless told to overwrite
    before = (out / "p0.png").stat().st_mtime_ns
    again = list(iter_segment_folder(seg, src, out))
    assert [e.status for e in again].count("skipped") == 3 and (
        out / "p0.png"
    ).stat().st_mtime_ns == before
    over = list(iter_segment_folder(seg, src, out, overwrite=True))
    assert [e.status for e in over].count("written") == 3
    read_mask(out / "p0.png", expected_size=(64, 80))


def test_segment_folder_can_be_cancelled(trained_model, tmp_path):
    src = tmp_path / "in"
    rng = np.random.default_rng(1)
    for i in range(4):
        write_rgb(src / f"p{i}.png", make_scene(rng, 64, 64)[0])
    done = []
    gen = iter_segment_folder(
        Segmenter.load(trained_model), src, tmp_path / "out", should_stop=lambda: len(done) >= 2
    )
    while True:
        try:
            done.append(next(gen))
        except StopIteration as stop:
            summary = stop.value
            break
    assert summary.cancelled and summary.written == 2


def test_inference_settings_are_validated():
    from stoneseg_core.errors import StonesegError

    with pytest.raises(StonesegError):
        InferenceConfig(threshold=1.5)
    with pytest.raises(StonesegError):
        InferenceConfig(tile=100)


# ------------------------------------------------------------------------- device tiling
# (ONNX Runtime on the CPU: tests/test_runtime.py)


def test_tiling_on_the_device_matches_the_host_path(trained_model):
    """The GPU path (whole photo uploaded once, tiles and blending on the device) is plain
    torch code: on the CPU it must give the host path's probabilities."""
    seg = Segmenter.load(trained_model, InferenceConfig(tile=128, overlap=32, batch_tiles=3))
    img, _ = make_scene(np.random.default_rng(11), 200, 300, n_stones=8)
    host = seg.probability_at_work_scale(img)
    padded = pad_to(img, 200, 300)
    dev = seg.network.pytorch.tiles_on_device(padded, seg.config, seg.info, None)[0, :200, :300]
    np.testing.assert_allclose(host, dev, atol=1e-4)


def test_out_of_memory_retries_tile_by_tile_then_says_so(trained_model, monkeypatch):
    """A batch of tiles that does not fit is run again one tile at a time (same result);
    a single tile that does not fit is a clear message, not a crash."""
    import torch

    from stoneseg_core.errors import OutOfMemoryError

    img, _ = make_scene(np.random.default_rng(4), 200, 300, n_stones=8)
    # PyTorch's out of memory (CUDA, or the CPU), and ONNX Runtime's (numpy / ORT allocation)
    for runtime, error in (
        ("torch", torch.OutOfMemoryError("CUDA out of memory (simulated)")),
        ("auto", MemoryError("Unable to allocate 1 GiB (simulated)")),
    ):
        cfg = InferenceConfig(tile=128, overlap=32, batch_tiles=4, runtime=runtime)
        seg = Segmenter.load(trained_model, cfg)
        expected = seg.probability_at_work_scale(img)
        real = seg.network.forward  # TorchNetwork's, or OnnxRuntimeNetwork's on the CPU
        sizes = []

        def tight(*args, real=real, error=error, sizes=sizes):
            sizes.append(len(args[-1]))
            if len(args[-1]) > 1:
                raise error
            return real(*args)

        monkeypatch.setattr(seg.network, "forward", tight)
        got = seg.probability_at_work_scale(img)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert max(sizes) == 4 and sizes.count(1) >= 4

        def none_fits(*args, error=error):
            raise error

        monkeypatch.setattr(seg.network, "forward", none_fits)
        with pytest.raises(OutOfMemoryError, match="ran out of memory on one tile"):
            seg.probability_at_work_scale(img)


def test_any_config_runs_at_the_models_own_threshold_unless_it_names_one(trained_model, tmp_path):
    """InferenceConfig's threshold defaults to the model's (the one it chose on its
    validation photos), whoever builds the config: a scale, flips or a device given must not
    bring it back to 0.5."""
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    config = json.loads((model / "config.json").read_text())
    config["threshold"] = 0.37
    (model / "config.json").write_text(json.dumps(config))
    for cfg in (None, InferenceConfig(), InferenceConfig(scale="long-side", tta=True)):
        assert Segmenter.load(model, cfg).config.threshold == pytest.approx(0.37)
    assert Segmenter.load(model, InferenceConfig(threshold=0.6)).config.threshold == 0.6
    seg = Segmenter.load(model)
    assert Segmenter(seg.model, seg.info).config.threshold == pytest.approx(0.37)
