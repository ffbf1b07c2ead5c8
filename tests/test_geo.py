"""GeoTIFFs: georeference, windows of tiled files, georeferenced masks, grains on orthophotos."""

import csv
import json
import logging
import sys
import tracemalloc

import numpy as np
import pytest
import tifffile
from synthetic import make_scene

from stoneseg_core.cli import main
from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import read_instance_labels, write_instance_labels
from stoneseg_core.grains.outlines import ring_area, stone_polygons
from stoneseg_core.io import geo
from stoneseg_core.io.images import read_image

UTM33_5MM = (0.005, 0.0, 500000.0, 0.0, -0.005, 5500000.0)  # 5 mm pixels, north up


def _tiff_with_tags(path, array, tags):
    """A TIFF carrying raw GeoTIFF ``tags`` {code: values}, as another program wrote it."""
    extratags = [
        (code, "H" if code == geo.GEO_KEY_DIRECTORY else "d", len(v), v, True)
        for code, v in tags.items()
    ]
    tifffile.imwrite(path, array, extratags=extratags, metadata=None)
    return path


def _keys(*entries):
    directory = [1, 1, 0, len(entries)]
    for key, value in entries:
        directory += [key, 0, 1, value]
    return tuple(directory)


def test_geotiff_mask_round_trip_keeps_transform_crs_size_and_values(tmp_path):
    georef = geo.make_georeference(UTM33_5MM, 32633)
    mask = np.zeros((300, 517), np.uint8)
    mask[40:90, 100:260] = 255
    mask[200:, 400:] = 1  # any non-zero is stone
    path = tmp_path / "m.tif"
    geo.write_geotiff_mask(path, mask, georef)

    back = geo.read_georeference(path)
    assert back == georef and back.epsg == 32633 and back.model == "projected"
    assert back.transform == UTM33_5MM
    assert back.mm_per_px() == (5.0, "5 mm per pixel from the georeference (EPSG:32633)")
    assert back.bounds(517, 300) == pytest.approx((500000.0, 5500000 - 1.5, 500002.585, 5500000))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression == 8  # deflate
        assert page.shape == (300, 517) and page.dtype == np.uint8
        meta = tif.geotiff_metadata
        assert int(meta["ProjectedCSTypeGeoKey"]) == 32633
        assert meta["ModelPixelScale"][:2] == [0.005, 0.005]
        assert meta["ModelTiepoint"][3:5] == [500000.0, 5500000.0]
        data = page.asarray()
    assert set(np.unique(data)) == {0, 255}
    assert np.array_equal(data > 0, mask > 0)


def test_geographic_web_mercator_point_and_transformation_georeferences(tmp_path, caplog):
    img = np.zeros((20, 30), np.uint8)
    wgs84 = _tiff_with_tags(
        tmp_path / "wgs84.tif",
        img,
        {
            geo.MODEL_PIXEL_SCALE: (1e-7, 1e-7, 0.0),
            geo.MODEL_TIEPOINT: (0.0, 0.0, 0.0, 15.0, 48.0, 0.0),
            geo.GEO_KEY_DIRECTORY: _keys((1024, 2), (1025, 1), (2048, 4326)),
        },
    )
    g = geo.read_georeference(wgs84)
    assert g.epsg == 4326 and g.model == "geographic"
    mm, note = g.mm_per_px()
    assert mm is None and "degrees" in note

    merc = geo.make_georeference(UTM33_5MM, 3857)
    assert merc.mm_per_px()[0] is None and "Web Mercator" in merc.mm_per_px()[1]

    # pixel-is-point: the tie point is the centre of pixel (0, 0), so the corner is half a pixel off
    point = _tiff_with_tags(
        tmp_path / "point.tif",
        img,
        {
            geo.MODEL_PIXEL_SCALE: (0.01, 0.01, 0.0),
            geo.MODEL_TIEPOINT: (0.0, 0.0, 0.0, 100.0, 200.0, 0.0),
            geo.GEO_KEY_DIRECTORY: _keys((1024, 1), (1025, 2), (3072, 32632), (3076, 9001)),
        },
    )
    assert geo.read_georeference(point).transform == pytest.approx(
        (0.01, 0, 99.995, 0, -0.01, 200.005)
    )
    # a rotated raster through ModelTransformation; UTM without a stated unit is metres
    a, b = 0.004 * np.cos(0.3), 0.004 * np.sin(0.3)
    matrix = (a, -b, 0, 10.0, b, a, 0, 20.0, 0, 0, 0, 0, 0, 0, 0, 1)
    rotated = _tiff_with_tags(
        tmp_path / "rotated.tif",
        img,
        {
            geo.MODEL_TRANSFORMATION: matrix,
            geo.GEO_KEY_DIRECTORY: _keys((1024, 1), (3072, 32633)),
        },
    )
    g = geo.read_georeference(rotated)
    assert g.transform == pytest.approx((a, -b, 10.0, b, a, 20.0))
    assert g.mm_per_px()[0] == pytest.approx(4.0)
    # feet: ProjLinearUnits 9002
    feet = geo._georeference_from_tags(
        {
            geo.MODEL_PIXEL_SCALE: (0.01, 0.01, 0),
            geo.MODEL_TIEPOINT: (0, 0, 0, 0, 0, 0),
            geo.GEO_KEY_DIRECTORY: _keys((1024, 1), (3072, 2264), (3076, 9002)),
        }
    )
    assert feet.mm_per_px()[0] == pytest.approx(3.048)

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, img)
    with caplog.at_level(logging.INFO, logger="stoneseg_core.io.geo"):
        assert geo.read_georeference(plain) is None
    assert "no georeference" in caplog.text and "plain image" in caplog.text
    assert geo.read_georeference(tmp_path / "photo.jpg") is None


def _pattern(h, w):
    rows, cols = np.mgrid[0:h, 0:w]
    return ((rows * 7 + cols * 13) % 251).astype(np.uint8)


def test_a_window_of_a_tiled_geotiff_reads_only_its_tiles(tmp_path):
    full = _pattern(4000, 4000)
    path = tmp_path / "big.tif"
    geo.write_tiff(path, full, geo.make_georeference(UTM33_5MM, 32633))
    assert geo.tiff_shape(path) == (4000, 4000)
    del full

    tracemalloc.start()
    try:
        window = geo.read_window(path, 1100, 2050, 1000, 1000)  # 1/16 of the image
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(window, _pattern(4000, 4000)[1100:2100, 2050:3050])
    assert peak < 4_000_000, peak  # the window (1 MB) and a few tiles, not the 16 MB image
    # clipped at the edges
    corner = geo.read_window(path, 3900, 3950, 500, 500)
    assert corner.shape == (100, 50)
    assert np.array_equal(corner, _pattern(4000, 4000)[3900:, 3950:])


@pytest.mark.parametrize(
    "layout", [{"rowsperstrip": 7}, {"tile": (32, 48), "planarconfig": "separate"}]
)
def test_windows_of_striped_and_planar_tiffs(tmp_path, layout):
    rgb = np.random.default_rng(0).integers(0, 255, (150, 170, 3), dtype=np.uint8)
    data = np.moveaxis(rgb, 2, 0) if layout.get("planarconfig") else rgb
    tile = layout.get("tile")
    if tile is not None:
        tile = (32, 48)
    tifffile.imwrite(tmp_path / "x.tif", data, photometric="rgb", compression="zlib", **layout)
    assert np.array_equal(geo.read_window(tmp_path / "x.tif", 13, 29, 80, 111), rgb[13:93, 29:140])


def test_damaged_and_unsupported_tiffs_are_named(tmp_path):
    good = tmp_path / "good.tif"
    geo.write_tiff(good, _pattern(600, 600), geo.make_georeference(UTM33_5MM, 32633))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(StonesegError, match="cut.tif"):
        geo.read_window(cut, 0, 0, 600, 600)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II+\x00" + b"\x08\x00\x00\x00" + b"\xff" * 40)  # a BigTIFF header, broken
    with pytest.raises(StonesegError, match="junk.tif"):
        geo.read_georeference(junk)
    assert geo.georeference_or_none(junk) is None  # the folder loops leave it to the reader

    # an unknown compression code (as a JPEG/JPEG-XL file looks without its codec)
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, _pattern(64, 64), compression=None, metadata=None)
    data = bytearray(raw.read_bytes())
    entry = b"\x03\x01\x03\x00\x01\x00\x00\x00\x01\x00"  # Compression, SHORT, 1, none
    at = data.index(entry)
    data[at + 8 : at + 10] = (50099).to_bytes(2, "little")
    odd = tmp_path / "odd.tif"
    odd.write_bytes(bytes(data))
    with pytest.raises(StonesegError, match="odd.tif") as info:
        geo.read_window(odd, 0, 0, 10, 10)
    assert "compression" in str(info.value)


def test_imageio_reads_geotiff_photos(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    geo.write_tiff(tmp_path / "ortho.tif", rgb, geo.make_georeference(UTM33_5MM, 32633))
    assert np.array_equal(read_image(tmp_path / "ortho.tif"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    geo.write_tiff(tmp_path / "alpha.tiff", rgba)
    assert np.array_equal(read_image(tmp_path / "alpha.tiff"), rgb)
    grey = (np.arange(70 * 90).reshape(70, 90) % 4096).astype(np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", grey)
    assert read_image(tmp_path / "grey.tif").shape == (70, 90, 3)


def test_more_than_65535_stones_round_trip_as_a_32_bit_tiff(tmp_path):
    labels = np.arange(1, 300 * 300 + 1, dtype=np.int64).reshape(300, 300)
    labels[0, :5] = 0
    written = write_instance_labels(tmp_path / "a_instances.png", labels)
    assert written == tmp_path / "a_instances.tif" and not (tmp_path / "a_instances.png").exists()
    back = read_instance_labels(written, expected_size=(300, 300))
    assert back.dtype == np.int32 and np.array_equal(back, labels)
    few = write_instance_labels(tmp_path / "b_instances.png", labels % 1000)
    assert few.suffix == ".png"
    assert np.array_equal(read_instance_labels(few), labels % 1000)


def test_outlines_follow_pixel_edges():
    m = np.zeros((12, 12), bool)
    m[2:9, 2:9] = True
    m[4:6, 4:7] = False  # a hole
    m[10, 10] = m[11, 11] = True  # touching only at a corner: two rings
    polygons = stone_polygons(m)
    assert len(polygons) == 3
    assert sum(ring_area(r) for poly in polygons for r in poly) == m.sum()
    big = max(polygons, key=lambda p: ring_area(p[0]))
    assert len(big) == 2 and ring_area(big[0]) == 49 and ring_area(big[1]) == -6
    assert big[0][:-1].tolist() == [[2, 2], [9, 2], [9, 9], [2, 9]]  # corners only
    shifted = stone_polygons(m[2:9, 2:9], offset=(2, 2))
    assert shifted[0][0].tolist() == big[0].tolist()


def _ortho(folder, georef, name="ortho.tif", seed=3):
    rng = np.random.default_rng(seed)
    image, _ = make_scene(rng, 128, 160)
    folder.mkdir(parents=True, exist_ok=True)
    geo.write_tiff(folder / name, image, georef)
    return folder / name


def _polygon_area(coords):
    return sum(ring_area(np.asarray(r)) for r in coords)


def test_orthophoto_segmented_and_measured_in_its_crs(trained_model, tmp_path, capsys):
    georef = geo.make_georeference(UTM33_5MM, 32633)
    photos = tmp_path / "photos"
    _ortho(photos, georef)

    assert main(["segment", str(trained_model), str(photos), str(tmp_path / "masks")]) == 0
    mask_path = tmp_path / "masks" / "ortho.tif"
    assert mask_path.exists() and not (tmp_path / "masks" / "ortho.png").exists()
    assert geo.read_georeference(mask_path) == georef
    mask = tifffile.imread(mask_path)
    assert mask.shape == (128, 160) and set(np.unique(mask)) <= {0, 255}
    capsys.readouterr()
    # the skip-if-exists check looks for the .tif
    assert main(["segment", str(trained_model), str(photos), str(tmp_path / "masks")]) == 0
    assert "0 written, 1 skipped" in capsys.readouterr().out
    # into the photo's own folder its mask would replace it: refused, the photo kept
    before = (photos / "ortho.tif").read_bytes()
    assert main(["segment", str(trained_model), str(photos), str(photos)]) == 1
    assert "would replace the photo" in capsys.readouterr().err
    assert (photos / "ortho.tif").read_bytes() == before

    out = tmp_path / "grains"
    assert main(["grains", str(trained_model), str(photos), str(out)]) == 0
    report = json.loads((out / "percentiles.json").read_text())
    assert report["images"]["ortho.tif"]["mm_per_px"] == 5.0
    rows = list(csv.DictReader((out / "ortho_stones.csv").open()))
    assert rows and all(float(r["mm_per_px"]) == 5.0 for r in rows)
    collection = json.loads((out / "ortho_stones.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert collection["mm_per_px"] == 5.0 and collection["mm_per_px_source"] == "georeference"
    features = collection["features"]
    assert [f["properties"]["label"] for f in features] == [int(r["label"]) for r in rows]
    x0, y0, x1, y1 = georef.bounds(160, 128)
    for f, row in zip(features, rows):
        assert f["properties"]["b_axis_mm"] == pytest.approx(float(row["b_axis_mm"]), rel=1e-5)
        assert f["properties"]["area_px"] == int(row["area_px"])
        geometry = f["geometry"]
        parts = [geometry["coordinates"]]
        if geometry["type"] == "MultiPolygon":
            parts = geometry["coordinates"]
        xy = np.array([pt for part in parts for ring in part for pt in ring])
        assert (xy[:, 0] >= x0).all() and (xy[:, 0] <= x1).all()
        assert (xy[:, 1] >= y0).all() and (xy[:, 1] <= y1).all()
        # the outline encloses exactly the stone's pixels (5 mm = 0.005 m each), exterior anticlockwise
        area_m2 = sum(_polygon_area(part) for part in parts)
        assert area_m2 == pytest.approx(int(row["area_px"]) * 0.005**2)
        assert all(ring_area(np.asarray(part[0])) > 0 for part in parts)
    # a scale given by the user wins over the georeference
    assert (
        main(["grains", str(trained_model), str(photos), str(tmp_path / "g2"), "--mm-per-px", "2"])
        == 0
    )
    report = json.loads((tmp_path / "g2" / "percentiles.json").read_text())
    assert report["images"]["ortho.tif"]["mm_per_px"] == 2.0
    collection = json.loads((tmp_path / "g2" / "ortho_stones.geojson").read_text())
    assert collection["mm_per_px_source"] == "given" and "crs" in collection
    # --min-size in mm takes the georeference's scale too (no --mm-per-px needed)
    out3 = tmp_path / "g3"
    assert main(["grains", str(trained_model), str(photos), str(out3), "--min-size", "1e6"]) == 0
    rows3 = list(csv.DictReader((out3 / "ortho_stones.csv").open()))
    assert len(rows3) == len(rows) and all(r["exclusion_reason"] for r in rows3)
    assert all(float(r["min_size_mm"]) == 1e6 for r in rows3)


def test_a_tiff_without_georeference_works_in_pixels(trained_model, tmp_path):
    photos = tmp_path / "photos"
    _ortho(photos, None, "plain.tif")
    assert main(["segment", str(trained_model), str(photos), str(tmp_path / "masks")]) == 0
    assert (tmp_path / "masks" / "plain.png").exists()
    out = tmp_path / "grains"
    assert main(["grains", str(trained_model), str(photos), str(out)]) == 0
    report = json.loads((out / "percentiles.json").read_text())
    assert report["images"]["plain.tif"]["mm_per_px"] is None
    collection = json.loads((out / "plain_stones.geojson").read_text())
    assert "crs" not in collection and collection["coordinates"].startswith("pixels")
    rows = list(csv.DictReader((out / "plain_stones.csv").open()))
    assert len(collection["features"]) == len(rows)
    for f in collection["features"]:
        xy = np.array([pt for ring in f["geometry"]["coordinates"] for pt in ring])
        assert (xy >= 0).all() and (xy[:, 0] <= 160).all() and (xy[:, 1] <= 128).all()


def test_georeferenced_photos_and_others_do_not_pool(trained_model, tmp_path):
    photos = tmp_path / "photos"
    _ortho(photos, geo.make_georeference(UTM33_5MM, 32633), "a.tif")
    _ortho(photos, None, "b.tif", seed=4)
    with pytest.raises(StonesegError, match="b.tif"):
        from stoneseg_core.inference.segmenter import Segmenter
        from stoneseg_core.jobs.grains_folder import iter_grains_folder

        list(iter_grains_folder(Segmenter.load(trained_model), photos, tmp_path / "out"))


def test_a_damaged_tif_is_named_by_segment(trained_model, tmp_path, capsys):
    photos = tmp_path / "photos"
    good = _ortho(photos, geo.make_georeference(UTM33_5MM, 32633))
    (photos / "broken.tif").write_bytes(good.read_bytes()[:2500])
    assert main(["segment", str(trained_model), str(photos), str(tmp_path / "masks")]) == 1
    err = capsys.readouterr().err
    assert "broken.tif" in err and (tmp_path / "masks" / "ortho.tif").exists()


def test_predict_all_into_a_project_keeps_png_masks(trained_model, tmp_path):
    """The window's Predict all writes a project's masks/, which are PNGs for every photo."""
    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.jobs.segment_folder import iter_segment_images

    photo = _ortho(tmp_path / "images", geo.make_georeference(UTM33_5MM, 32633))
    gen = iter_segment_images(Segmenter.load(trained_model), [photo], tmp_path / "masks")
    events = list(gen)
    assert [e.status for e in events] == ["written"]
    assert events[0].output == tmp_path / "masks" / "ortho.png" and events[0].output.exists()


def test_without_tifffile_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tifffile", None)  # as if it were not installed
    with pytest.raises(StonesegError, match=r"pip install stoneseg\[geo\]"):
        geo.read_georeference(tmp_path / "x.tif")
    with pytest.raises(StonesegError, match=r"pip install stoneseg\[geo\]"):
        geo.write_geotiff_mask(tmp_path / "m.tif", np.zeros((4, 4), np.uint8), None)


def test_geojson_rings_holes_and_parts_in_the_crs():
    from stoneseg_core.grains import CSV_COLUMNS, GrainOptions, stones_geojson
    from stoneseg_core.grains.analyse import ImageGrains
    from stoneseg_core.grains.measure import measure_stones

    labels = np.zeros((40, 50), np.int32)
    labels[5:25, 5:30] = 1
    labels[10:15, 10:20] = 0  # a hole in stone 1
    labels[30, 40] = labels[31, 41] = labels[32, 42] = 2  # three pixels touching at corners
    georef = geo.make_georeference(UTM33_5MM, 32633)
    stones = measure_stones(labels, 5.0, min_size_px=1)
    result = ImageGrains("p.tif", 5.0, tuple(stones))
    collection = stones_geojson(result, labels, GrainOptions(), georef, "georeference")
    json.dumps(collection, allow_nan=False)
    one, two = collection["features"]
    assert one["geometry"]["type"] == "Polygon" and len(one["geometry"]["coordinates"]) == 2
    exterior, hole = (np.asarray(r) for r in one["geometry"]["coordinates"])
    assert ring_area(exterior) == pytest.approx(500 * 0.005**2)  # anticlockwise, y up
    assert ring_area(hole) == pytest.approx(-50 * 0.005**2)  # clockwise
    assert np.allclose(exterior[0], exterior[-1])
    assert two["geometry"]["type"] == "MultiPolygon" and len(two["geometry"]["coordinates"]) == 3
    assert one["properties"]["area_px"] == 450 and one["properties"]["mm_per_px"] == 5.0
    assert list(one["properties"]) == list(CSV_COLUMNS)
