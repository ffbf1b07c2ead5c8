"""CPU inference through ONNX Runtime: same outputs as PyTorch, a cache that is reused, rebuilt
for new weights and refused when damaged, and PyTorch whenever the runtime is missing or wrong.
Real (tiny-input) U-Nets; every export goes to the test session's cache (conftest)."""

from __future__ import annotations

import builtins
import logging
import sys

import cv2
import numpy as np
import pytest
import torch
from synthetic import make_scene, write_rgb

from stoneseg_core.inference import onnx_cache
from stoneseg_core.inference import onnx_export as runtime
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import file_sha256
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.network import ModelInfo, build_model

ENCODERS = ["tu-tf_efficientnet_lite0", "efficientnet-b0"]
TARGETS = {1: "mask", 2: "mask+boundary"}


def _model(encoder: str, classes: int, seed: int = 0) -> torch.nn.Module:
    """A U-Net with random weights and BatchNorm statistics that are not the identity."""
    torch.manual_seed(seed)
    model = build_model(encoder, "none", classes=classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, int], torch.nn.Module]:
    return {(e, c): _model(e, c) for e in ENCODERS for c in TARGETS}


def _segmenters(model, classes, work_size, **cfg):
    info = ModelInfo(encoder="x", work_size=work_size, target=TARGETS[classes])
    onnx = Segmenter(model, info, InferenceConfig(device="cpu", **cfg))
    torch_ = Segmenter(model, info, InferenceConfig(device="cpu", runtime="torch", **cfg))
    return onnx, torch_


@pytest.mark.parametrize("classes", [1, 2])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_onnx_network_computes_what_the_model_does(models, encoder, classes):
    model = models[encoder, classes]
    net = runtime.onnx_network(model)
    assert net is not None
    for shape in [(1, 3, 64, 96), (2, 3, 96, 64)]:  # batch, height and width are free
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            ref = model(x)
        out = net(x)
        assert out.shape == ref.shape == (shape[0], classes, *shape[2:])
        assert float((ref - out).abs().max()) < 1e-3 * (1 + float(ref.abs().max()))


@pytest.mark.parametrize("classes", [1, 2])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_segmenter_on_onnx_matches_pytorch_whole_and_tiled(models, encoder, classes):
    model = models[encoder, classes]
    img, _ = make_scene(np.random.default_rng(4), 80, 120)
    for cfg in ({"tile": 512}, {"tile": 64, "overlap": 16, "batch_tiles": 3}):
        onnx, ref = _segmenters(model, classes, 120, **cfg)
        a, b = onnx.predict(img), ref.predict(img)
        assert onnx.runtime_in_use == "onnxruntime" and ref.runtime_in_use == "torch"
        np.testing.assert_allclose(a.probability, b.probability, atol=1e-4)
        if classes == 2:
            np.testing.assert_allclose(a.boundary, b.boundary, atol=1e-4)
        else:
            assert a.boundary is None and b.boundary is None
        assert (a.mask != b.mask).mean() < 1e-3


def test_tta_on_onnx_matches_pytorch(models):
    model = models["efficientnet-b0", 1]
    img, _ = make_scene(np.random.default_rng(5), 64, 96)
    onnx, ref = _segmenters(model, 1, 96, tta=True)
    np.testing.assert_allclose(
        onnx.predict(img).probability, ref.predict(img).probability, atol=1e-4
    )


def _count_exports(monkeypatch) -> list:
    calls = []
    real = runtime._export

    def spy(model, path):
        calls.append(path)
        return real(model, path)

    monkeypatch.setattr(runtime, "_export", spy)
    return calls


def test_cache_is_reused_and_rebuilt_for_new_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    calls = _count_exports(monkeypatch)
    model = _model("efficientnet-b0", 1)
    first = runtime.onnx_network(model)
    again = runtime.onnx_network(model)
    assert first is not None and again is not None
    assert len(calls) == 1 and again.path == first.path
    assert first.path.parent == tmp_path / "onnx"
    # a Segmenter whose weights change in place (a training step, a load) exports again,
    # and predicts with the new weights
    info = ModelInfo(encoder="efficientnet-b0", work_size=64)
    seg = Segmenter(model, info, InferenceConfig(device="cpu"))
    img, _ = make_scene(np.random.default_rng(3), 64, 64)
    before = seg.predict(img).probability
    assert len(calls) == 1  # the cached export
    with torch.no_grad():
        seg.model.segmentation_head[0].bias += 3.0  # every logit + 3: probabilities rise
    after = seg.predict(img).probability
    assert len(calls) == 2 and calls[1] != first.path
    assert after.mean() > before.mean() + 0.05
    assert seg.runtime_in_use == "onnxruntime"
    # the two-channel U-Net with the same encoder is another file
    assert runtime.weights_key(_model("efficientnet-b0", 2)) != runtime.weights_key(model)


def test_damaged_cache_file_is_refused_and_rebuilt(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    model = _model("efficientnet-b0", 1)
    path = runtime.onnx_network(model).path
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    calls = _count_exports(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="stoneseg_core.inference.onnx_export"):
        net = runtime.onnx_network(model)
    assert "is damaged" in caplog.text and str(path) in caplog.text
    assert net is not None and len(calls) == 1
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert float((model(x) - net(x)).abs().max()) < 1e-3
    # a file ORT cannot read at all, whose checksum matches (written by hand): rebuilt too
    path.write_bytes(b"not an onnx file")
    onnx_cache.digest_path(path).write_text(file_sha256(path))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stoneseg_core.inference.onnx_export"):
        assert runtime.onnx_network(model) is not None
    assert "cannot be loaded" in caplog.text and len(calls) == 2


def test_damaged_cache_that_cannot_be_rebuilt_means_pytorch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    model = _model("efficientnet-b0", 1)
    path = runtime.onnx_network(model).path
    path.write_bytes(b"garbage")

    def fail(model, path):
        raise OSError("read-only cache")

    monkeypatch.setattr(runtime, "_export", fail)
    info = ModelInfo(encoder="efficientnet-b0", work_size=64)
    img, _ = make_scene(np.random.default_rng(2), 64, 64)
    with caplog.at_level(logging.WARNING, logger="stoneseg_core.inference.onnx_export"):
        seg = Segmenter(model, info, InferenceConfig(device="cpu"))
        got = seg.predict(img)
    assert "is damaged" in caplog.text and "runs in PyTorch" in caplog.text
    assert seg.runtime_in_use == "torch"
    ref = Segmenter(model, info, InferenceConfig(device="cpu", runtime="torch")).predict(img)
    np.testing.assert_array_equal(got.probability, ref.probability)


def test_export_that_disagrees_is_not_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(runtime, "PROBE_TOLERANCE", -1.0)  # nothing agrees
    with caplog.at_level(logging.WARNING, logger="stoneseg_core.inference.onnx_export"):
        assert runtime.onnx_network(_model("efficientnet-b0", 1)) is None
    assert "disagrees" in caplog.text
    assert not list((tmp_path / "onnx").glob("*.onnx"))  # not kept for the next run


def test_missing_onnxruntime_falls_back_to_pytorch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    model = _model("efficientnet-b0", 2)
    info = ModelInfo(encoder="efficientnet-b0", work_size=64, target="mask+boundary")
    img, _ = make_scene(np.random.default_rng(1), 64, 64)
    with caplog.at_level(logging.INFO, logger="stoneseg_core.inference.onnx_export"):
        seg = Segmenter(model, info, InferenceConfig(device="cpu"))
        got = seg.predict(img)
    assert "not installed" in caplog.text
    assert seg.runtime_in_use == "torch"
    ref = Segmenter(model, info, InferenceConfig(device="cpu", runtime="torch")).predict(img)
    np.testing.assert_array_equal(got.probability, ref.probability)
    np.testing.assert_array_equal(got.boundary, ref.boundary)
    assert not (tmp_path / "onnx").exists()


def test_runtime_option_is_validated_and_torch_never_exports(tmp_path, monkeypatch):
    from stoneseg_core.errors import StonesegError

    with pytest.raises(StonesegError, match="Runtime"):
        InferenceConfig(runtime="openvino")
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    calls = _count_exports(monkeypatch)
    model = _model("efficientnet-b0", 1)
    seg = Segmenter(
        model, ModelInfo(encoder="b0", work_size=64), InferenceConfig(runtime="torch", device="cpu")
    )
    seg.predict(make_scene(np.random.default_rng(0), 64, 64)[0])
    assert calls == [] and seg.runtime_in_use == "torch"


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path / "c"))
    assert runtime.cache_dir() == tmp_path / "c" / "onnx"
    monkeypatch.delenv(runtime.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert runtime.cache_dir() == tmp_path / "xdg" / "stoneseg" / "onnx"


# ----------------------------------------------------------------- the folder, end to end


def _exif_jpeg(path, rgb: np.ndarray, orientation: int) -> None:
    from PIL import Image

    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif)


@pytest.mark.parametrize("orientation", [1, 6])
def test_reduced_jpeg_decode_keeps_orientation_and_full_mask_size(
    trained_model, tmp_path, orientation
):
    from stoneseg_core.io.images import image_size, jpeg_reduction, read_image
    from stoneseg_core.jobs.segment_folder import iter_segment_folder

    # working scale 160; JPEGs decoded smaller where that allows
    seg = Segmenter.load(trained_model, InferenceConfig(device="cpu", reduced_decode=True))
    stored, _ = make_scene(np.random.default_rng(7), 480, 720)  # as stored, before EXIF
    src = tmp_path / "in"
    src.mkdir()
    path = src / "photo.jpg"
    _exif_jpeg(path, stored, orientation)
    full = read_image(path)
    assert full.shape[:2] == ((720, 480) if orientation == 6 else (480, 720))
    k = jpeg_reduction(path, seg.info.work_size)
    assert k == 4 and image_size(path) == (full.shape[1], full.shape[0])
    small = read_image(path, reduce=k)
    assert small.shape[:2] == (-(-full.shape[0] // k), -(-full.shape[1] // k))
    # the same picture, the same way up: close to the full decode shrunk by area
    area = cv2.resize(full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - area).mean() < 4
    summary = list(iter_segment_folder(seg, src, tmp_path / "out"))
    assert [e.status for e in summary] == ["written"]
    mask = cv2.imread(str(tmp_path / "out" / "photo.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == full.shape[:2]
    ref = seg.predict(full).mask
    inter = np.count_nonzero((mask > 0) & (ref > 0))
    union = np.count_nonzero((mask > 0) | (ref > 0))
    assert union and inter / union > 0.97


def test_mask_without_full_size_float_matches_predict(trained_model):
    seg = Segmenter.load(trained_model, InferenceConfig(device="cpu"))
    img, _ = make_scene(np.random.default_rng(8), 333, 517)
    ref = seg.predict(img).mask
    got = seg.predict_mask(img)
    assert got.shape == ref.shape and got.dtype == np.uint8 and set(np.unique(got)) <= {0, 255}
    assert (got != ref).mean() < 2e-3
    # the photo decoded smaller, mask at the full size
    small = cv2.resize(img, (259, 167), interpolation=cv2.INTER_AREA)
    assert seg.predict_mask(small, size=(333, 517)).shape == (333, 517)


def test_write_failures_are_reported_per_file_while_the_others_are_written(trained_model, tmp_path):

    from stoneseg_core.jobs.segment_folder import iter_segment_folder

    src, out = tmp_path / "in", tmp_path / "out"
    rng = np.random.default_rng(2)
    for i in range(4):
        write_rgb(src / f"p{i}.jpg", make_scene(rng, 64, 96)[0])
    (out / "p1.png").mkdir(parents=True)  # a folder where the mask should go: cannot write
    seg = Segmenter.load(trained_model, InferenceConfig(device="cpu"))
    gen = iter_segment_folder(seg, src, out, overwrite=True)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            summary = stop.value
            break
    assert [(e.index, e.image.name, e.status) for e in events] == [
        (1, "p0.jpg", "written"),
        (2, "p1.jpg", "failed"),
        (3, "p2.jpg", "written"),
        (4, "p3.jpg", "written"),
    ]
    assert "p1.png" in events[1].message
    assert summary.written == 3 and [p.name for p, _ in summary.failed] == ["p1.jpg"]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_optimised_graph_is_saved_reused_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    net = runtime.onnx_network(_model("efficientnet-b0", 1))
    (opt,) = (tmp_path / "onnx").glob(f"{net.path.stem}.opt-*.onnx")
    assert onnx_cache.is_intact(opt) and net.loaded_from == net.path
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    again = onnx_cache.OnnxNetwork(net.path)
    assert again.loaded_from == opt  # the saved graph: no optimising at start
    np.testing.assert_allclose(again.run(x), net.run(x), atol=1e-4)
    opt.write_bytes(opt.read_bytes()[:1000])  # damaged: not used, written again
    third = onnx_cache.OnnxNetwork(net.path)
    assert third.loaded_from == net.path and onnx_cache.is_intact(opt)
    np.testing.assert_allclose(third.run(x), net.run(x), atol=1e-4)
    assert not list((tmp_path / "onnx").glob(".*.tmp"))


def test_cache_keeps_only_the_most_recently_used(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(runtime, "MAX_CACHED", 2)
    models = [_model("efficientnet-b0", 1, seed=s) for s in range(3)]
    paths = []
    for i, m in enumerate(models[:2]):
        paths.append(runtime.onnx_network(m).path)
        os.utime(paths[-1], (1000 + i, 1000 + i))  # distinct, old times
    runtime.onnx_network(models[0])  # a cache hit: now the most recent
    paths.append(runtime.onnx_network(models[2]).path)  # exported: the oldest (model 1) goes
    # the optimised graphs go with their networks (onnx_cache.OnnxNetwork)
    assert not list((tmp_path / "onnx").glob(f"{paths[1].stem}*"))
    assert list((tmp_path / "onnx").glob(f"{paths[2].stem}.opt-*.onnx"))
    left = sorted(p.name for p in (tmp_path / "onnx").iterdir() if ".opt-" not in p.name)
    assert left == sorted(
        [paths[0].name, paths[0].name + ".sha256", paths[2].name, paths[2].name + ".sha256"]
    )


def test_a_model_folder_with_a_cached_export_runs_without_building_the_model(
    trained_model, monkeypatch
):
    from stoneseg_core.inference.networks import pytorch

    img, _ = make_scene(np.random.default_rng(9), 96, 128)
    first = Segmenter.load(trained_model, InferenceConfig(device="cpu"))
    want = first.predict(img)  # exports (or finds) the network, and notes it for the folder
    assert first.runtime_in_use == "onnxruntime"
    built = []
    real = pytorch.load_model
    monkeypatch.setattr(pytorch, "load_model", lambda *a, **k: built.append(1) or real(*a, **k))
    again = Segmenter.load(trained_model, InferenceConfig(device="cpu"))
    got = again.predict(img)
    assert built == [] and again.runtime_in_use == "onnxruntime"
    np.testing.assert_array_equal(got.probability, want.probability)
    # the PyTorch model is still there when asked for, and PyTorch gives the same
    assert isinstance(again.model, torch.nn.Module) and built == [1]
    ref = Segmenter.load(trained_model, InferenceConfig(device="cpu", runtime="torch"))
    np.testing.assert_allclose(got.probability, ref.predict(img).probability, atol=1e-4)


# ----------------------------------------------------------------------------------- int8


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero((a > 0) | (b > 0))
    return np.count_nonzero((a > 0) & (b > 0)) / union if union else 1.0


def test_int8_round_trips_and_agrees_with_float32(trained_model, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path))
    quantised = []
    real = onnx_cache._quantize
    monkeypatch.setattr(onnx_cache, "_quantize", lambda *a: quantised.append(a[1]) or real(*a))
    rng = np.random.default_rng(21)
    calib = [make_scene(rng, 120, 160)[0] for _ in range(3)]
    held_out = [make_scene(rng, 120, 160)[0] for _ in range(3)]
    fp32 = Segmenter.load(trained_model, InferenceConfig(device="cpu"))
    seg = Segmenter.load(trained_model, InferenceConfig(device="cpu", runtime="onnx-int8"))
    # float32 until calibrated; then int8, from a file with its checksum beside
    assert np.array_equal(seg.predict(held_out[0]).mask, fp32.predict(held_out[0]).mask)
    assert seg.runtime_in_use == "onnxruntime"
    assert seg.calibrate_int8(iter(calib)) and len(quantised) == 1
    assert seg.runtime_in_use == "onnxruntime-int8"
    path = quantised[0]
    assert (
        path.is_file()
        and onnx_cache.is_intact(path)
        and path.stat().st_size < 0.6 * seg.network.float32.exported.path.stat().st_size
    )
    # agrees with float32 within its tolerance (masks: IoU; probabilities: mean difference)
    for img in held_out:
        a, b = seg.predict(img), fp32.predict(img)
        assert not np.array_equal(a.probability, b.probability)  # it is another network
        assert np.abs(a.probability - b.probability).mean() < 0.05
        assert _iou(a.mask, b.mask) > 0.9
    want = seg.predict(held_out[1]).probability
    # a second load finds the int8 file: no calibration read, no quantising, same output
    again = Segmenter.load(trained_model, InferenceConfig(device="cpu", runtime="onnx-int8"))
    np.testing.assert_array_equal(again.predict(held_out[1]).probability, want)
    assert again.runtime_in_use == "onnxruntime-int8"
    assert again.calibrate_int8(iter(())) and len(quantised) == 1
    # a damaged int8 file: refused with a message, float32 meanwhile, quantised again
    path.write_bytes(path.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING, logger="stoneseg_core.inference.onnx_cache"):
        third = Segmenter.load(trained_model, InferenceConfig(device="cpu", runtime="onnx-int8"))
        third.predict(held_out[1])
    assert "damaged" in caplog.text and str(path) in caplog.text
    assert third.runtime_in_use == "onnxruntime"
    assert third.calibrate_int8(iter(calib)) and len(quantised) == 2
    np.testing.assert_array_equal(third.predict(held_out[1]).probability, want)


def test_int8_segment_command(trained_model, tmp_path, monkeypatch):
    from stoneseg_core.cli import main

    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path / "cache"))
    src = tmp_path / "in"
    rng = np.random.default_rng(5)
    for i in range(3):
        write_rgb(src / f"p{i}.jpg", make_scene(rng, 96, 128)[0])
    for runtime_name in ("onnx-int8", "onnx"):
        out = tmp_path / runtime_name
        assert (
            main(["segment", str(trained_model), str(src), str(out), "--runtime", runtime_name])
            == 0
        )
    assert list((tmp_path / "cache" / "onnx").glob(f"*.{onnx_cache.INT8_FORMAT}.onnx"))
    for i in range(3):
        a = cv2.imread(str(tmp_path / "onnx-int8" / f"p{i}.png"), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(tmp_path / "onnx" / f"p{i}.png"), cv2.IMREAD_GRAYSCALE)
        assert a.shape == b.shape == (96, 128) and _iou(a, b) > 0.9
