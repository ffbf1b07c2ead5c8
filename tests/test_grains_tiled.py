"""Grains of a big mask split window by window (stoneseg_core/grains/tiled.py), checked
against the whole-mask split on masks small enough for both, with small windows forced."""

from __future__ import annotations

import csv
import json
import tracemalloc

import numpy as np
import pytest
import tifffile
from skimage.draw import disk, ellipse
from synthetic import separated_stones

from stoneseg_core.grains import GrainOptions, analyse_mask, stones_csv
from stoneseg_core.grains import tiled as tiled_module
from stoneseg_core.grains.tiled import TiledEvent, grains_tiled, iter_grains_tiled
from stoneseg_core.io.geo import make_georeference, read_georeference, write_geotiff_mask
from stoneseg_core.io.images import read_instance_labels

FIELDS = (
    "area_px",
    "equivalent_diameter_px",
    "a_axis_px",
    "b_axis_px",
    "perimeter_px",
    "circularity",
    "centroid_x",
    "centroid_y",
    "bbox",
    "touches_edge",
    "mm_per_px",
    "excluded",
    "exclusion_reason",
)


def by_box(stones) -> dict:
    out = {s.bbox: s for s in stones}
    assert len(out) == len(stones)  # apart stones: the box names one
    return out


def assert_same_stones(whole, tiled) -> None:
    a, b = by_box(whole), by_box(tiled)
    assert a.keys() == b.keys()
    for box, s in a.items():
        t = b[box]
        for f in FIELDS:
            if isinstance(getattr(s, f), float):
                assert getattr(t, f) == pytest.approx(getattr(s, f), rel=1e-9, abs=1e-9), f
            else:
                assert getattr(t, f) == getattr(s, f), f


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The two label images hold the same stones, whatever their numbers."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_a_stone_on_window_borders_is_counted_once_whole(tmp_path):
    mask = np.zeros((512, 512), np.uint8)
    disc_pixels = disk((256, 256), 40, shape=mask.shape)
    mask[disc_pixels] = 255  # on the corner of four windows
    rr, cc = ellipse(100, 256, 15, 45, shape=mask.shape, rotation=0.3)  # across a border
    mask[rr, cc] = 255
    _, whole = analyse_mask(mask)
    events, res = run(iter_grains_tiled(mask, tmp_path, "border", window_px=256, margin_px=64))
    assert [e.window for e in events] == [1, 2, 3, 4] and events[-1].windows == 4
    assert all(isinstance(e, TiledEvent) for e in events)
    assert len(res.grains.stones) == 2 and res.cut_stones == 0
    disc = max(res.grains.stones, key=lambda s: s.area_px)
    assert disc.area_px == disc_pixels[0].size
    assert disc.b_axis_px == pytest.approx(80, rel=0.02)
    assert_same_stones(whole.stones, res.grains.stones)
    labels = tifffile.imread(res.instances_path)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert np.array_equal(labels > 0, mask > 0)


def test_a_stone_larger_than_the_margin_widens_the_window(tmp_path):
    mask = np.zeros((512, 512), np.uint8)
    mask[disk((230, 230), 70, shape=mask.shape)] = 255  # 139 px across, past the margin (32)
    res = grains_tiled(mask, tmp_path, "big", window_px=256, margin_px=32, max_margin_px=256)
    assert res.widened_windows >= 1 and res.cut_stones == 0
    (s,) = res.grains.stones
    assert s.area_px == int(np.count_nonzero(mask)) and not s.excluded
    # a margin that cannot grow enough: the stone is kept, flagged, counted
    res = grains_tiled(mask, tmp_path, "big", window_px=256, margin_px=32, max_margin_px=32)
    assert res.cut_stones >= 1 and res.unlabelled_px > 0
    assert all("processing window" in s.exclusion_reason for s in res.grains.stones if s.excluded)


@pytest.mark.parametrize("use_probability", [False, True])
def test_tiled_equals_whole_on_separated_stones(tmp_path, use_probability):
    truth = separated_stones(np.random.default_rng(3), 600, 760, cell=44)
    mask = np.where(truth > 0, 255, 0).astype(np.uint8)
    # a probability that is not flat, so the split really uses it
    prob = np.where(truth > 0, 0.6 + 0.4 * np.random.default_rng(4).random(truth.shape), 0.0)
    prob = prob.astype(np.float32) if use_probability else None
    options = GrainOptions(exclude_edge=True, min_size_mm=1.0)
    labels, whole = analyse_mask(mask, prob, 0.5, options)
    # the split itself cuts a few stones clipped by the photo's edge in two: the same here
    assert 0 <= len(whole.stones) - truth.max() <= 5
    res = grains_tiled(
        mask,
        tmp_path,
        "scene",
        probability=prob,
        mm_per_px=0.5,
        options=options,
        window_px=128,
        margin_px=48,
    )
    assert res.windows == 5 * 6
    assert (res.overlap_px, res.unlabelled_px, res.cut_stones) == (0, 0, 0)
    assert_same_stones(whole.stones, res.grains.stones)
    assert sum(s.excluded for s in res.grains.stones) > 0  # edge and size rules applied
    written = tifffile.imread(res.instances_path)
    assert written.dtype == np.uint16 and same_partition(labels, written)
    # every id of the table is the stone painted with that id
    for s in res.grains.stones[::7]:
        r0, c0, r1, c1 = s.bbox
        assert np.count_nonzero(written[r0:r1, c0:c1] == s.label) == s.area_px


def test_more_than_65535_stones_give_a_32_bit_tiff(tmp_path):
    # 257 rows of 256 squares of 5 x 5 px, each joined to the next by a 1 x 2 px bridge: one
    # component per row (split at the narrow necks), so the split is quick for 65792 stones
    rows, cols = 257, 256
    mask = np.zeros((rows * 7, cols * 7), np.uint8)
    for i in range(5):
        mask[i::7, np.arange(cols * 7) % 7 < 5] = 255
    mask[2::7, 5::7] = mask[2::7, 6::7] = 255
    mask[:, -2:] = 0
    res = grains_tiled(mask, tmp_path, "dots", window_px=512, margin_px=16)
    n = rows * cols
    assert len(res.grains.stones) == n > 65535
    assert {s.area_px for s in res.grains.stones} <= {26, 27}  # a square and half a bridge
    assert res.label_dtype == "uint32" and res.unlabelled_px == 0
    with tifffile.TiffFile(res.instances_path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.dtype == np.uint32
        labels = page.asarray()
    assert labels.max() == n and np.array_equal(np.unique(labels), np.arange(n + 1))
    assert np.array_equal(labels > 0, mask > 0)


def test_instance_geotiff_round_trip_csv_and_geojson(tmp_path):
    truth = separated_stones(np.random.default_rng(5), 400, 500, cell=40)
    mask = np.where(truth > 0, 255, 0).astype(np.uint8)
    georef = make_georeference((0.002, 0.0, 500000.0, 0.0, -0.002, 5200000.0), 32633)
    mask_path = tmp_path / "ortho.tif"
    write_geotiff_mask(mask_path, mask, georef)
    out = tmp_path / "out"
    res = grains_tiled(
        mask_path, out, "ortho", mm_per_px=2.0, scale_source="georeference", window_px=128
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "ortho_instances.tif",
        "ortho_stones.csv",
        "ortho_stones.geojson",
    ]
    # the label TIFF: tiled, 16-bit, the mask's georeference, one id per stone
    with tifffile.TiffFile(res.instances_path) as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].dtype == np.uint16
    back = read_georeference(res.instances_path)
    assert back is not None and back.epsg == 32633 and back.transform == georef.transform
    labels = read_instance_labels(res.instances_path)
    assert labels.shape == mask.shape and np.array_equal(labels > 0, mask > 0)
    whole_labels, whole = analyse_mask(mask)
    assert same_partition(whole_labels, labels)
    n = len(whole.stones)
    areas = np.bincount(labels.ravel())
    assert [s.area_px for s in res.grains.stones] == [
        int(areas[s.label]) for s in res.grains.stones
    ]
    # the CSV is what stones_csv writes for the same stones
    text = res.csv_path.read_text()
    assert text == stones_csv([res.grains], GrainOptions())
    assert len(list(csv.DictReader(text.splitlines()))) == n
    # the GeoJSON: one feature per stone, in the CRS, inside the photo's bounds
    doc = json.loads(res.geojson_path.read_text())
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert doc["mm_per_px_source"] == "georeference"
    assert len(doc["features"]) == n
    x0, y0, x1, y1 = georef.bounds(500, 400)
    for f in doc["features"]:
        ring = np.array(f["geometry"]["coordinates"][0])
        assert (ring[:, 0] >= x0).all() and (ring[:, 0] <= x1).all()
        assert (ring[:, 1] >= y0).all() and (ring[:, 1] <= y1).all()
        assert f["properties"]["label"] == f["id"]


def test_cancel_and_close_leave_the_folder_as_it_was(tmp_path):
    truth = separated_stones(np.random.default_rng(6), 512, 512)
    mask = np.where(truth > 0, 255, 0).astype(np.uint8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep_stones.csv").write_text("the user's table\n")
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    events, res = run(iter_grains_tiled(mask, out, "keep", window_px=128, should_stop=stop))
    assert res.cancelled and len(events) == 3 and res.instances_path is None
    assert [p.name for p in out.iterdir()] == ["keep_stones.csv"]
    assert (out / "keep_stones.csv").read_text() == "the user's table\n"
    # a generator closed at a yield (the window's stop for jobs without should_stop)
    gen = iter_grains_tiled(mask, out, "keep", window_px=128)
    next(gen)
    next(gen)
    gen.close()
    assert [p.name for p in out.iterdir()] == ["keep_stones.csv"]


def test_bad_masks_are_named(tmp_path):
    zero_one = tmp_path / "zero_one.tif"
    write_geotiff_mask(zero_one, np.zeros((64, 64)), None)
    tifffile.imwrite(zero_one, np.eye(64, dtype=np.uint8))  # 0/1, not 0/255
    with pytest.raises(Exception, match="zero_one.tif holds 0 and 1"):
        grains_tiled(zero_one, tmp_path / "out", "z", window_px=64)
    floats = tmp_path / "floats.tif"
    tifffile.imwrite(floats, np.zeros((64, 64), np.float32))
    with pytest.raises(Exception, match="floats.tif holds float32"):
        grains_tiled(floats, tmp_path / "out", "f", window_px=64)
    with pytest.raises(Exception, match="multiple of 64"):
        grains_tiled(np.zeros((64, 64), np.uint8), tmp_path / "out", "w", window_px=100)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_mask_is_read_by_windows(tmp_path):
    """A 6144 x 1024 GeoTIFF mask split with 256-px windows: Python's allocations (numpy's
    included) stay below one int32 label image of the photo, of which the whole-mask split
    holds several at once (with a float64 distance transform: ~60 bytes a pixel)."""
    h, w = 6144, 1024
    mask = np.zeros((h, w), np.uint8)
    for r in range(40, h, 160):
        for c in range(40, w, 160):
            mask[disk((r, c), 12, shape=mask.shape)] = 255
    path = tmp_path / "big_mask.tif"
    write_geotiff_mask(path, mask, None)
    del mask
    warm = np.zeros((64, 64), np.uint8)
    warm[20:30, 20:30] = 255
    grains_tiled(warm, tmp_path / "warm", "warm", window_px=64)  # imports, cached weights
    tracemalloc.start()
    try:
        res = grains_tiled(path, tmp_path / "out", "big", window_px=256, margin_px=32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(res.grains.stones) == 39 * 7
    assert peak < h * w * 4  # 25 MB


def test_grains_sends_big_masks_through_windows(tmp_path, monkeypatch, capsys):
    """``stoneseg grains`` with a real (untrained) tiny model: a photo over the size
    threshold is split window by window and its labels written as a tiled TIFF."""
    import cv2

    from stoneseg_core.cli import main
    from stoneseg_core.model.network import ModelInfo, build_model, save_model

    model = tmp_path / "model"
    save_model(
        build_model("efficientnet-b0", "none"),
        ModelInfo(encoder="efficientnet-b0", work_size=64),
        model,
    )
    src = tmp_path / "photos"
    src.mkdir()
    for stem, (h, w) in (("small", (96, 128)), ("large", (192, 256))):
        truth = separated_stones(np.random.default_rng(7), h, w)
        photo = np.where(truth[:, :, None] > 0, 220, 30).astype(np.uint8).repeat(3, axis=2)
        cv2.imwrite(str(src / f"{stem}.png"), photo)
    monkeypatch.setattr(tiled_module, "DEFAULT_WINDOW_PX", 64)
    monkeypatch.setattr(tiled_module, "TILED_ABOVE_PX", 96 * 128)
    out = tmp_path / "out"
    assert main(["grains", str(model), str(src), str(out), "--mm-per-px", "0.5"]) == 0, (
        capsys.readouterr().err
    )
    names = sorted(p.name for p in out.iterdir())
    assert "large_instances.tif" in names and "large_instances.png" not in names
    assert "small_instances.png" in names  # under the threshold: the whole-mask path
    report = json.loads((out / "percentiles.json").read_text())
    labels = tifffile.imread(out / "large_instances.tif")
    assert labels.shape == (192, 256)
    rows = list(csv.DictReader((out / "large_stones.csv").read_text().splitlines()))
    assert len(rows) == report["images"]["large.png"]["stones_found"] > 0
    assert {int(r["label"]) for r in rows} == set(np.unique(labels)[1:].tolist())
    assert all(r["mm_per_px"] == "0.5" for r in rows)
    features = json.loads((out / "large_stones.geojson").read_text())["features"]
    assert [f["id"] for f in features] == [int(r["label"]) for r in rows]


def test_a_png_mask_gives_what_its_array_gives(tmp_path):
    from stoneseg_core.io.images import write_mask

    truth = separated_stones(np.random.default_rng(8), 300, 200)
    mask = np.where(truth > 0, 255, 0).astype(np.uint8)
    write_mask(tmp_path / "m.png", mask)
    from_file = grains_tiled(tmp_path / "m.png", tmp_path / "a", "m", window_px=64)
    from_array = grains_tiled(mask, tmp_path / "b", "m", window_px=64, name="m.png")
    assert from_file.grains == from_array.grains and len(from_file.grains.stones) > 20
    assert from_file.csv_path.read_text() == from_array.csv_path.read_text()
