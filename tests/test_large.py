"""Photos of any size: windowed segmentation equals the whole-photo one, in bounded memory."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
import tifffile
from synthetic import make_scene

from stoneseg_core.cli import main
from stoneseg_core.errors import StonesegError
from stoneseg_core.inference import large
from stoneseg_core.inference.exact_resize import ScaledSide, scaled_side
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io import geo, raster_sources
from stoneseg_core.io.images import read_mask
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.scale import resize_by

UTM33_5MM = (0.005, 0.0, 500000.0, 0.0, -0.005, 5500000.0)


def _orthophoto(height: int, width: int, cell: tuple[int, int] = (500, 600), seed: int = 0):
    """A mosaic of synthetic scenes (stones about cell/10 across)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(-(-height // cell[0])):
        rows.append(
            np.concatenate([make_scene(rng, *cell, 8)[0] for _ in range(-(-width // cell[1]))], 1)
        )
    return np.ascontiguousarray(np.concatenate(rows)[:height, :width])


def _segmenter(model, tile=64, overlap=16, batch=3) -> Segmenter:
    return Segmenter.load(model, InferenceConfig(tile=tile, overlap=overlap, batch_tiles=batch))


def _iou(a, b) -> float:
    a, b = a > 0, b > 0
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def _run(gen, events=None):
    events = [] if events is None else events
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


@pytest.fixture(scope="module")
def ortho(tmp_path_factory):
    """A 3000 x 2500 tiled GeoTIFF (deflate, 256-px tiles) and its pixels."""
    image = _orthophoto(2500, 3000)
    path = tmp_path_factory.mktemp("ortho") / "ortho.tif"
    geo.write_tiff(path, image, geo.make_georeference(UTM33_5MM, 32633))
    return path, image


@pytest.mark.parametrize(
    "scale, size", [(0.26, (2500, 3000)), (2 ** (-15 / 8), (2500, 3000)), (0.26, (2477, 2999))]
)
def test_windowed_equals_whole_photo_at_the_same_scale(trained_model, ortho, tmp_path, scale, size):
    h, w = size
    image = np.ascontiguousarray(ortho[1][:h, :w])
    path = tmp_path / "ortho.tif"
    geo.write_tiff(path, image, geo.make_georeference(UTM33_5MM, 32633))
    seg = _segmenter(trained_model)
    out = tmp_path / "mask.tif"
    events, summary = _run(
        large.iter_segment_large(seg, path, out, scale, read_side=256)  # small windows
    )
    got = tifffile.imread(out)
    whole = large.segment_whole(seg, image, scale)
    assert got.shape == (h, w) and set(np.unique(got)) <= {0, 255}
    assert 0.05 < np.count_nonzero(got) / got.size < 0.95  # stones and ground, not a blank
    assert np.array_equal(got, whole), np.count_nonzero(got != whole)
    # and what the plain whole-photo resize (predict.py's way, OpenCV both ways) gives
    work = resize_by(image, scale)
    prob = seg.probabilities_at_work_scale(work)[0]
    plain = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR) >= seg.config.threshold
    # (ratios within 1/(1024 q) of its own: a few flips where this tiny model sits on its threshold)
    assert _iou(got, plain) >= 0.998
    assert summary.windowed and not summary.cancelled and summary.output == out
    assert summary.scale == pytest.approx(scale, rel=1e-5)
    assert summary.tiles > 20 and events[-1].tiles_done == events[-1].tiles_total == summary.tiles
    assert [e.tiles_done for e in events] == sorted(e.tiles_done for e in events)
    assert events[-1].rows_done == h
    assert sorted(tmp_path.iterdir()) == [out, path]  # no temporary file left beside it


def test_working_size_rounds_like_a_resize():
    assert scaled_side(3000, 0.26) == ScaledSide(3000, 13, 50, 780, False)  # whole cells
    assert scaled_side(25, 0.5) == ScaledSide(25, 12, 25, 12, False)  # 12.5 -> 12 exactly
    cases = [
        (2477, 0.26, 644, 0.05),
        (2048, 0.768, 1573, 0.05),
        (20000, 2 ** (-15 / 8), 5453, 0.25),
    ]
    for n, scale, work, off in cases:
        a = scaled_side(n, scale)  # the last cell partial; p/q within a hair of work / n
        assert (a.work, a.padded) == (work, False) and a.q <= 1024 and a.n % a.q
        assert abs(n * a.p / a.q - work) < off  # working pixels off across the whole side
    with pytest.raises(StonesegError, match="positive"):
        scaled_side(100, 0.0)


def test_enlarging_scale_and_a_png_output(trained_model, tmp_path):
    image = _orthophoto(310, 355, cell=(150, 180), seed=3)
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    seg = _segmenter(trained_model, batch=2)
    out = tmp_path / "out" / "mask.png"
    _, summary = _run(large.iter_segment_large(seg, src, out, 1.37, read_side=64))
    assert not summary.windowed  # a PNG is read whole
    got = read_mask(out)
    assert np.array_equal(got, large.segment_whole(seg, image, 1.37))
    assert summary.tiles > 30


def test_geotiff_mask_keeps_georeference_crs_and_is_tiled(trained_model, ortho, tmp_path):
    path, _ = ortho
    out = tmp_path / "mask.tif"
    _run(large.iter_segment_large(_segmenter(trained_model), path, out, 0.1))
    assert geo.read_georeference(out) == geo.read_georeference(path)
    assert geo.read_georeference(out).epsg == 32633
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression == 8 and page.dtype == np.uint8
        assert page.shape == (2500, 3000)
        assert int(tif.geotiff_metadata["ProjectedCSTypeGeoKey"]) == 32633
        assert set(np.unique(page.asarray())) == {0, 255}


def test_cancel_and_close_leave_nothing_written(trained_model, ortho, tmp_path):
    path, _ = ortho
    seg = _segmenter(trained_model)
    out = tmp_path / "mask.tif"
    seen: list = []
    gen = large.iter_segment_large(seg, path, out, 0.26, lambda: len(seen) >= 4)
    events, summary = _run(gen, seen)
    assert summary.cancelled and summary.output is None and len(events) == 4
    assert list(tmp_path.iterdir()) == []
    # an existing output survives a cancelled run, and closing the generator stops it too
    out.write_bytes(b"old")
    gen = large.iter_segment_large(seg, path, out, 0.26)
    next(gen)
    next(gen)
    gen.close()
    assert list(tmp_path.iterdir()) == [out] and out.read_bytes() == b"old"


def test_windowed_reading_never_loads_the_whole_file(trained_model, tmp_path):
    rows, cols = np.mgrid[0:6000, 0:6000]
    image = np.stack([(rows * 7 + cols * 13) % 251, (rows // 40 * 50) % 256, cols // 30], -1)
    image = image.astype(np.uint8)  # 108 MB
    path = tmp_path / "big.tif"
    geo.write_tiff(path, image, geo.make_georeference(UTM33_5MM, 32633))
    del image, rows, cols
    seg = _segmenter(trained_model, tile=128, overlap=32)
    tracemalloc.start()
    try:
        _, summary = _run(
            large.iter_segment_large(seg, path, tmp_path / "m.tif", 0.06, read_side=1024)
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.windowed and summary.tiles > 4
    # windows of ~1024^2 x 3 bytes and a band of the mask, not the 108 MB photo nor the 36 MB mask
    assert peak < 25_000_000, peak
    assert tifffile.imread(tmp_path / "m.tif").shape == (6000, 6000)


def test_unreadable_photos_are_named_and_nothing_is_written(
    trained_model, ortho, tmp_path, monkeypatch
):
    _, image = ortho
    seg = _segmenter(trained_model)
    # as a 20000^2 strip would be
    monkeypatch.setattr(raster_sources, "MAX_SEGMENT_BYTES", 2**20)
    strip = tmp_path / "strip.tif"  # one deflate strip: cannot be read by windows
    tifffile.imwrite(strip, image, photometric="rgb", compression="zlib", rowsperstrip=2500)
    out = tmp_path / "out" / "strip.tif"
    with pytest.raises(StonesegError, match="strip.tif") as info:
        _run(large.iter_segment_large(seg, strip, out, 0.26, memory_limit=10_000_000))
    assert "one strip" in str(info.value) and "tiled" in str(info.value)
    assert not out.parent.exists()
    # with the memory for it, it is read whole, with the same result
    _, summary = _run(large.iter_segment_large(seg, strip, out, 0.26))
    assert not summary.windowed
    assert np.array_equal(tifffile.imread(out), large.segment_whole(seg, image, 0.26))

    # a compression without its codec, in a tiled file: named on the first window
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, image[:512, :512], photometric="rgb", tile=(256, 256), metadata=None)
    data = bytearray(raw.read_bytes())
    entry = b"\x03\x01\x03\x00\x01\x00\x00\x00\x01\x00"  # Compression, SHORT, 1, none
    at = data.index(entry)
    data[at + 8 : at + 10] = (50099).to_bytes(2, "little")
    odd = tmp_path / "odd.tif"
    odd.write_bytes(bytes(data))
    with pytest.raises(StonesegError, match="odd.tif") as info:
        _run(large.iter_segment_large(seg, odd, tmp_path / "odd_mask.tif", 0.5))
    assert "compression" in str(info.value)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II+\x00" + b"\x08\x00\x00\x00" + b"\xff" * 40)  # a broken BigTIFF
    with pytest.raises(StonesegError, match="junk.tif"):
        _run(large.iter_segment_large(seg, junk, tmp_path / "junk_mask.tif", 0.5))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "junk.tif", "odd.tif", "out", "raw.tif", "strip.tif"
    ]  # fmt: skip


def test_segment_sends_large_photos_through_windows(trained_model, ortho, tmp_path, monkeypatch):
    path, image = ortho
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "ortho.tif").write_bytes(path.read_bytes())
    small = _orthophoto(200, 240, cell=(100, 120), seed=5)
    cv2.imwrite(str(photos / "small.png"), small)
    monkeypatch.setattr(large, "LARGE_PIXELS", 1_000_000)  # 7.5 MP counts as large here
    calls = []
    real = large.iter_segment_large
    monkeypatch.setattr(
        large, "iter_segment_large", lambda *a, **k: calls.append(a[1]) or real(*a, **k)
    )
    assert main(["segment", str(trained_model), str(photos), str(tmp_path / "out")]) == 0
    assert [p.name for p in calls] == ["ortho.tif"]
    got = tifffile.imread(tmp_path / "out" / "ortho.tif")
    assert geo.read_georeference(tmp_path / "out" / "ortho.tif").epsg == 32633
    seg = Segmenter.load(trained_model)
    scale = seg.info.work_size / 3000  # the model's long-side policy
    assert np.array_equal(got, large.segment_whole(seg, image, scale))
    # what the whole-photo path gives: it rounds the working size to whole pixels (133 x 160
    # here, not 133.3 x 160: up to half a working pixel, 9 photo pixels, off at the far edge).
    # The window-by-window mask keeps pieces under the speck floor (a piece may span windows;
    # its stones are floored when split): compared with the whole path's mask before the floor
    seg.floor_specks = False
    assert _iou(got, seg.predict_mask(image)) >= 0.97
    assert read_mask(tmp_path / "out" / "small.png").shape == (200, 240)


def test_the_model_scale_policy_is_estimated_on_windows(tmp_path):
    """A stone-size model (test_scale_policy's exact 1x1 network) on a large gravel mosaic:
    the scale is the one ``Segmenter.work_scale`` finds on the photo held whole, read from
    its central windows only."""
    from test_scale_policy import _pebbles, _stone_size_segmenter

    seg = _stone_size_segmenter(40.0, tile=128, overlap=16)
    image = np.ascontiguousarray(np.tile(_pebbles(300, 20, seed=2)[0], (8, 8, 1)))  # 2400^2
    path = tmp_path / "gravel.tif"
    geo.write_tiff(path, image)
    factor = seg.work_scale(image)
    tracemalloc.start()
    try:
        gen = large.iter_segment_large(seg, path, tmp_path / "m.tif", read_side=256)
        _, summary = _run(gen)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.scale == factor and 1.5 < factor < 2.5  # 20 px stones made 40
    work = round(2400 * factor) ** 2 * 3  # the working image alone, 98 MB: never held
    assert peak < work / 2, (peak, work)
    got = tifffile.imread(tmp_path / "m.tif")
    assert np.array_equal(got, large.segment_whole(seg, image, factor))


def test_grains_segments_and_splits_a_large_photo_window_by_window(
    trained_model, ortho, tmp_path, monkeypatch
):
    """``stoneseg grains`` on a photo too large to hold whole: segmented window by window
    into <stem>_mask.tif (the photo's georeference kept), its stones split from that mask
    window by window; the stones are the ones the tiled split finds on the same mask."""
    import csv
    import json

    from stoneseg_core.grains import tiled

    path, _ = ortho
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "ortho.tif").write_bytes(path.read_bytes())
    monkeypatch.setattr(large, "LARGE_PIXELS", 1_000_000)
    read_whole = []
    monkeypatch.setattr(
        "stoneseg_core.jobs.grains_folder.read_image", lambda p, *a, **k: read_whole.append(p)
    )
    out = tmp_path / "out"
    assert main(["grains", str(trained_model), str(photos), str(out)]) == 0
    assert read_whole == []  # never read whole
    mask = tifffile.imread(out / "ortho_mask.tif")
    assert mask.shape == (2500, 3000) and set(np.unique(mask)) <= {0, 255}
    assert geo.read_georeference(out / "ortho_mask.tif").epsg == 32633
    rows = list(csv.DictReader((out / "ortho_stones.csv").read_text().splitlines()))
    # the mask keeps pieces under the model's speck floor; its stones do not
    seg = Segmenter.load(trained_model)
    floor = seg.speck_floor(seg.info.work_size / 3000)  # the model's long-side scale
    again = tiled.grains_tiled(
        out / "ortho_mask.tif", tmp_path / "again", "ortho", min_stone_px=floor
    )
    assert len(rows) == len(again.grains.stones) > 0
    every = tiled.grains_tiled(out / "ortho_mask.tif", tmp_path / "every", "ortho")
    assert len(every.grains.stones) > len(rows)
    report = json.loads((out / "percentiles.json").read_text())
    assert report["images"]["ortho.tif"]["stones_found"] == len(rows)
