"""Label files of other tools (stoneseg_core.formats): every format's round trip is exact,
other tools' files import as they mean, bad input is one line each, nothing is lost."""

from __future__ import annotations

import base64
import json
import zipfile

import cv2
import numpy as np
import pytest
import shapely
from formats_data import (
    UTM33_5MM,
    read_labels,
    read_stone_mask,
    run,
    touching_stones,
    write_project,
)
from pycocotools import mask as coco_mask

from stoneseg_core.errors import StonesegError
from stoneseg_core.formats import iter_export, iter_import
from stoneseg_core.formats.report import EXISTS
from stoneseg_core.formats.rle import compress, crop_to_runs, runs_to_crop, string_counts
from stoneseg_core.io import geo
from stoneseg_core.io.project import Project

OUT = {"coco": "labels.json", "labelme": "labelme", "geojson": "geojson", "gpkg": "s.gpkg"}


def source_project(tmp_path, georef=None, suffix=".png"):
    photos = {
        f"a{suffix}": touching_stones(60, 80, seed=1),
        f"b{suffix}": touching_stones(45, 70, seed=2),
        f"empty{suffix}": np.zeros((30, 40), np.int32),  # labelled: no stones
        f"unlabelled{suffix}": None,
    }
    return write_project(tmp_path / "src", photos, georef=georef), photos


def fresh_copy(tmp_path, src, name="dst"):
    dst = tmp_path / name
    (dst / "images").mkdir(parents=True)
    for photo in (src / "images").iterdir():
        (dst / "images" / photo.name).write_bytes(photo.read_bytes())
    return dst


@pytest.mark.parametrize("fmt", ["coco", "labelme", "geojson", "gpkg"])
def test_round_trip_is_exact(tmp_path, fmt):
    src, photos = source_project(tmp_path)
    out = tmp_path / OUT[fmt]
    exported = run(iter_export(fmt, src, out))
    assert exported.stones == sum(int(v.max()) for v in photos.values() if v is not None)
    assert "unlabelled.png" not in exported.photos and not exported.skipped
    dst = fresh_copy(tmp_path, src)
    imported = run(iter_import(fmt, out, dst))
    assert not imported.skipped, imported.text()
    assert set(imported.photos) == {"a.png", "b.png", "empty.png"}
    for name, labels in photos.items():
        stem = name.split(".")[0]
        if labels is None:
            assert not (dst / "masks" / f"{stem}.png").exists()
            continue
        back = read_labels(dst, stem)
        assert np.array_equal(back, labels), f"{fmt} {name}: the same stones, same ids"
        assert np.array_equal(read_stone_mask(dst, stem), read_stone_mask(src, stem))


@pytest.mark.parametrize("fmt", ["geojson", "gpkg"])
def test_geojson_and_geopackage_over_a_geotiff_are_in_its_crs(tmp_path, fmt):
    georef = geo.make_georeference(UTM33_5MM, 32633)
    src, photos = source_project(tmp_path, georef=georef, suffix=".tif")
    out = tmp_path / OUT[fmt]
    run(iter_export(fmt, src, out))
    if fmt == "gpkg":
        import pyogrio
        from pyogrio import raw

        assert pyogrio.read_info(out, layer="stones")["crs"] == "EPSG:32633"
        meta, _, wkb, fields = raw.read(out, layer="stones")
        geoms = shapely.from_wkb(wkb)
        b_axis_mm = fields[meta["fields"].tolist().index("b_axis_mm")]
        b_axis_px = fields[meta["fields"].tolist().index("b_axis_px")]
        np.testing.assert_allclose(b_axis_mm, b_axis_px * 5.0)  # 5 mm pixels
    else:
        doc = json.loads((out / "a.geojson").read_text())
        assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
        geoms = [shapely.geometry.shape(f["geometry"]) for f in doc["features"]]
        assert doc["features"][0]["properties"]["b_axis_mm"] > 0
    assert all(shapely.is_valid(geoms))
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    assert 500000 <= x0 < x1 <= 500000 + 80 * 0.005 and 5500000 - 60 * 0.005 <= y0 < y1 <= 5500000
    dst = fresh_copy(tmp_path, src)
    report = run(iter_import(fmt, out, dst))
    assert not report.skipped, report.text()
    for stem in ("a", "b", "empty"):
        assert np.array_equal(read_labels(dst, stem), photos[f"{stem}.tif"])


def geojson_file(path, features, crs=None, **members):
    doc = {"type": "FeatureCollection", "features": features, **members}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def square_feature(x0, y0, x1, y1, **props):
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {
        "type": "Feature",
        "properties": props,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def test_map_polygons_land_on_the_photo_whose_footprint_holds_them(tmp_path):
    georef = geo.make_georeference(UTM33_5MM, 32633)
    project = write_project(tmp_path / "p", {"ortho.tif": None}, georef=georef)
    # pixels 10..19 across, 4..7 down: x = 500000 + 0.005 col, y = 5500000 - 0.005 row
    feature = square_feature(500000.05, 5499999.98, 500000.10, 5499999.96)
    path = geojson_file(tmp_path / "stones.geojson", [feature], crs="EPSG:32633")
    report = run(iter_import("geojson", path, project))
    assert report.photos == {"ortho.tif": 1}, report.text()
    labels = read_labels(project, "ortho")
    expected = np.zeros((40, 50), np.int32)
    expected[4:8, 10:20] = 1
    assert np.array_equal(labels, expected)


def test_a_layer_in_another_crs_is_reprojected_or_named(tmp_path, monkeypatch):
    georef = geo.make_georeference(UTM33_5MM, 32633)
    project = write_project(tmp_path / "p", {"ortho.tif": None}, georef=georef)
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    corners = [
        to_wgs84.transform(x, y) for x, y in [(500000.05, 5499999.98), (500000.10, 5499999.96)]
    ]
    (lon0, lat0), (lon1, lat1) = corners
    path = geojson_file(
        tmp_path / "wgs84.geojson",
        [square_feature(lon0, lat0, lon1, lat1, image="ortho.tif")],
        crs="urn:ogc:def:crs:OGC:1.3:CRS84",
    )
    report = run(iter_import("geojson", path, project))
    assert report.photos == {"ortho.tif": 1}, report.text()
    assert any("reprojected" in line.text for line in report.notes)
    assert abs(int((read_labels(project, "ortho") > 0).sum()) - 40) <= 6  # ~ a 10 x 4 square
    import stoneseg_core.formats.vector as vector

    monkeypatch.setattr(vector, "reprojector", lambda layer, photo: None)
    monkeypatch.setattr(vector, "same_crs", lambda layer, photo: None)  # as without pyproj
    again = run(iter_import("geojson", path, project, overwrite=True))
    assert not again.photos
    assert [line.what for line in again.skipped] == ["wgs84.geojson"]
    assert "pyproj" in again.skipped[0].text


def test_coco_polygons_and_rles_import_as_pycocotools_draws_them(tmp_path):
    project = write_project(tmp_path / "p", {"x.jpg": None})  # 40 x 50
    h, w = 40, 50
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (30, 20), 7, 1, -1)
    compressed = coco_mask.encode(np.asfortranarray(disc))
    compressed["counts"] = compressed["counts"].decode()
    bar = np.zeros((h, w), bool)
    bar[30:33, 2:40] = True
    runs = crop_to_runs(bar, 0, 0, (h, w))
    triangle = [1.3, 1.2, 20.7, 2.4, 6.1, 18.8]
    coco = {
        "images": [{"id": 7, "file_name": "images/x.jpg", "width": w, "height": h}],
        "categories": [{"id": 1, "name": "rock"}, {"id": 2, "name": "belt"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "segmentation": [triangle], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": compressed, "iscrowd": 0},
            {
                "id": 3,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": runs},
            },
            {"id": 4, "image_id": 7, "category_id": 2, "segmentation": [[0, 0, 5, 0, 5, 5]]},
            {"id": 5, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": compressed},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    report = run(iter_import("coco", path, project, labels=["Rock"]))
    assert report.photos == {"x.jpg": 3}
    labels = read_labels(project, "x")
    expected_triangle = coco_mask.decode(coco_mask.frPyObjects([triangle], h, w)[0]).astype(bool)
    assert np.array_equal(labels == 1, expected_triangle & ~disc.astype(bool) & ~bar)
    assert np.array_equal(labels == 2, disc.astype(bool))
    assert np.array_equal(labels == 3, bar)
    assert [line.what for line in report.skipped] == ["annotation 5", "coco.json"]
    assert "category 2" in report.skipped[1].text


def test_rle_helpers_agree_with_pycocotools():
    rng = np.random.default_rng(5)
    for h, w in [(1, 1), (7, 3), (31, 45), (64, 64)]:
        mask = rng.random((h, w)) < 0.3
        mask[rng.integers(h), :] = True
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        runs = string_counts(rle["counts"])
        r0, c0, crop = runs_to_crop(runs, h)
        full = np.zeros((h, w), bool)
        full[r0 : r0 + crop.shape[0], c0 : c0 + crop.shape[1]] = crop
        assert np.array_equal(full, coco_mask.decode(rle).astype(bool))
        ours = compress(crop_to_runs(crop, r0, c0, (h, w)), (h, w))
        assert ours["counts"] == rle["counts"].decode()


def labelme_file(path, shapes, image="x.jpg", **extra):
    doc = {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": f"../images/{image}",
        "imageData": None,
        "imageHeight": 40,
        "imageWidth": 50,
        **extra,
    }
    path.write_text(json.dumps(doc))
    return path


def shape(kind, points, label="stone", group=None, **extra):
    return {
        "label": label,
        "points": points,
        "group_id": group,
        "shape_type": kind,
        "flags": {},
        **extra,
    }


def test_labelme_shapes_import(tmp_path):
    project = write_project(tmp_path / "p", {"x.jpg": None})
    bitmap = np.zeros((4, 6), np.uint8)
    bitmap[1:3, 1:5] = 255
    png = base64.b64encode(cv2.imencode(".png", bitmap)[1].tobytes()).decode()
    folder = tmp_path / "lm"
    folder.mkdir()
    labelme_file(
        folder / "x.json",
        [
            shape("polygon", [[0, 0], [10, 0], [10, 5], [0, 5]]),
            shape("rectangle", [[30, 30], [20, 25]]),  # corners in any order
            shape("circle", [[40, 10], [40, 14]]),
            shape("mask", [[10, 30], [15, 33]], mask=png),
            shape("polygon", [[0, 20], [4, 20], [4, 24]], group=9),
            shape("polygon", [[5, 20], [9, 20], [9, 24]], group=9),  # the same stone
            shape("line", [[0, 39], [20, 39]]),
            shape("polygon", [[0, 35], [5, 35], [5, 38]], label="shadow"),
        ],
    )
    report = run(iter_import("labelme", folder, project, labels=["stone"]))
    assert report.photos == {"x.jpg": 5}, report.text()
    labels = read_labels(project, "x")
    assert np.array_equal(labels[0:5, 0:10], np.full((5, 10), 1)) and (labels == 1).sum() == 50
    assert (labels == 2).sum() == 50 and labels[25:30, 20:30].min() == 2
    circle = labels == 3
    assert abs(int(circle.sum()) - np.pi * 16) < 6 and circle[10, 40]
    assert np.array_equal(labels[30:34, 10:16] == 4, bitmap > 0) and (labels == 4).sum() == 8
    assert set(np.unique(labels[20:24, 0:9])) == {0, 5}  # two triangles, one stone
    assert sorted(line.what for line in report.skipped) == ["x.json", "x.json, shape 6"]


def test_cvat_mask_export_imports_objects_as_stones(tmp_path):
    project = write_project(tmp_path / "p", {"x.jpg": None, "y.jpg": None})
    export = tmp_path / "cvat"
    for sub in ("SegmentationClass", "SegmentationObject"):
        (export / sub).mkdir(parents=True)
    (export / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nstone:250,50,83::\nbelt:10,200,10::\n"
    )
    classes = np.zeros((40, 50, 3), np.uint8)
    objects = np.zeros((40, 50, 3), np.uint8)
    classes[5:15, 5:25] = (250, 50, 83)  # two touching stones, one object each
    objects[5:15, 5:15] = (128, 0, 0)
    objects[5:15, 15:25] = (0, 128, 0)
    classes[30:35, 30:40] = (250, 50, 83)  # stone pixels of no object
    classes[20:25, 0:10] = (10, 200, 10)  # a belt object: not a stone
    objects[20:25, 0:10] = (128, 128, 0)
    for sub, arr in (("SegmentationClass", classes), ("SegmentationObject", objects)):
        cv2.imwrite(str(export / sub / "x.png"), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(export / sub / "y.png"), np.zeros((40, 50, 3), np.uint8))  # unannotated
    archive = tmp_path / "cvat.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in export.rglob("*"):
            z.write(f, f.relative_to(tmp_path))
    everything = run(iter_import("cvat", archive, project))
    assert everything.photos == {"x.jpg": 4}  # every label but background: the belt too
    report = run(iter_import("cvat", archive, project, labels=["stone"], overwrite=True))
    assert report.photos == {"x.jpg": 3}, report.text()
    labels = read_labels(project, "x")
    assert (labels[5:15, 5:15] == 1).all() and (labels[5:15, 15:25] == 2).all()
    assert (labels[30:35, 30:40] == 3).all() and (labels > 0).sum() == 250
    assert any("of no object" in line.text for line in report.notes)
    assert not (project / "masks" / "y.png").exists()  # all black: left unlabelled
    report = run(iter_import("cvat", archive, project, True, ["stone"], empty=True))
    assert read_stone_mask(project, "y").max() == 0


def test_bad_input_is_one_line_each_and_the_rest_goes_on(tmp_path, monkeypatch):
    project = write_project(tmp_path / "p", {"x.jpg": None, "y.jpg": None})
    folder = tmp_path / "coco"
    folder.mkdir()
    (folder / "broken.json").write_text('{"images": [,]}')
    rle = {"size": [20, 20], "counts": [400]}
    coco = {
        "images": [
            {"id": 1, "file_name": "x.jpg", "width": 50, "height": 40},
            {"id": 2, "file_name": "gone.jpg", "width": 50, "height": 40},
            {"id": 3, "file_name": "y.jpg", "width": 99, "height": 40},
        ],
        "categories": [{"id": 1, "name": "stone"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[40, 30, 60, 30, 60, 45, 40, 45]],
            },
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[60, 50, 70, 50, 70, 60]]},
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": rle},
            {"id": 4, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
            {"id": 5, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]]},
            {"id": 6, "image_id": 3, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]]},
        ],
    }
    (folder / "good.json").write_text(json.dumps(coco))
    report = run(iter_import("coco", folder, project))
    lines = {line.what: line for line in report.lines}
    assert report.photos == {"x.jpg": 2}
    assert "not valid JSON" in lines["broken.json"].text
    assert lines["annotation 1"].kind == "note" and "clipped" in lines["annotation 1"].text
    assert "outside the photo" in lines["annotation 2"].text
    assert "RLE is 20x20" in lines["annotation 3"].text
    assert "no photo of that name" in lines["gone.jpg"].text
    assert "99x40" in lines["y.jpg"].text
    labels = read_labels(project, "x")
    assert (labels == 1).sum() == 10 * 10 and (labels == 2).sum() == 16
    assert not (project / "masks" / "y.png").exists()


def test_existing_labels_are_kept_unless_overwrite(tmp_path):
    src, photos = source_project(tmp_path)
    out = tmp_path / "labels.json"
    run(iter_export("coco", src, out))
    dst = fresh_copy(tmp_path, src)
    mine = np.zeros((60, 80), np.uint8)
    mine[:10, :10] = 255
    (dst / "masks").mkdir()
    cv2.imwrite(str(dst / "masks" / "a.png"), mine)
    before = (dst / "masks" / "a.png").read_bytes()
    report = run(iter_import("coco", out, dst))
    assert report.existing() == ["a.png"] and report.skipped[0].reason == EXISTS
    assert (dst / "masks" / "a.png").read_bytes() == before
    assert not (dst / "instances" / "a.png").exists()
    assert set(report.photos) == {"b.png", "empty.png"}
    again = run(iter_import("coco", out, dst, overwrite=True, only=["a.png"]))
    assert set(again.photos) == {"a.png"}
    assert np.array_equal(read_labels(dst, "a"), photos["a.png"])


def test_a_failed_write_loses_nothing(tmp_path, monkeypatch):
    src, _ = source_project(tmp_path)
    out = tmp_path / "labels.json"
    run(iter_export("coco", src, out))
    dst = fresh_copy(tmp_path, src)
    write_project(dst, {"a.png": touching_stones(60, 80, seed=9)})
    mask_before = (dst / "masks" / "a.png").read_bytes()
    labels_before = (dst / "instances" / "a.png").read_bytes()
    import stoneseg_core.formats.writing as writing

    def full_disk(path, labels):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writing, "write_instance_png", full_disk)
    report = run(iter_import("coco", out, dst, overwrite=True))
    assert not report.photos
    assert all("disk is full" in line.text for line in report.skipped)
    assert (dst / "masks" / "a.png").read_bytes() == mask_before
    assert (dst / "instances" / "a.png").read_bytes() == labels_before
    assert not (dst / "masks" / "b.png").exists()
    left = [p.name for p in dst.rglob("*") if p.name.startswith(".")]
    assert left == []


def test_predicted_masks_become_labels_and_export_needs_overwrite(tmp_path):
    src, photos = source_project(tmp_path)
    out = tmp_path / "labels.json"
    run(iter_export("coco", src, out))
    with pytest.raises(StonesegError, match="in the way"):
        run(iter_export("coco", src, out))
    assert run(iter_export("coco", src, out, overwrite=True)).stones > 0
    dst = fresh_copy(tmp_path, src)
    project = Project.open(dst)
    project.set_predicted("a", True)
    run(iter_import("coco", out, dst))
    assert "a" not in Project.open(dst).predicted_stems()


def test_masks_without_instances_export_split_or_as_pieces(tmp_path):
    two = np.zeros((30, 60), np.int32)
    cv2.circle(two, (15, 15), 10, 1, -1)
    cv2.circle(two, (34, 15), 10, 1, -1)  # two discs fused by a neck
    src = write_project(tmp_path / "src", {"x.png": two}, instances=False)
    grains = run(iter_export("coco", src, tmp_path / "g.json"))
    pieces = run(iter_export("coco", src, tmp_path / "p.json", split="pieces"))
    assert grains.photos == {"x.png": 2} and pieces.photos == {"x.png": 1}
    assert "grains split" in grains.lines[0].text


def test_a_shapefile_named_after_its_photo_imports_in_its_crs(tmp_path):
    from pyogrio import raw

    georef = geo.make_georeference(UTM33_5MM, 32633)
    project = write_project(tmp_path / "p", {"ortho.tif": None}, georef=georef)
    squares = [
        shapely.box(500000.05, 5499999.96, 500000.10, 5499999.98),  # pixels 10..19 x 4..7
        shapely.box(500000.10, 5499999.96, 500000.12, 5499999.98),  # touching it: 20..23 x 4..7
        shapely.box(500100.0, 5499000.0, 500101.0, 5499001.0),  # far off the photo
    ]
    path = tmp_path / "ortho.shp"
    raw.write(
        path,
        np.array([shapely.to_wkb(g) for g in squares], dtype=object),
        [np.arange(3)],
        ["n"],
        driver="ESRI Shapefile",
        geometry_type="Polygon",
        crs="EPSG:32633",
    )
    report = run(iter_import("shp", path, project))
    assert report.photos == {"ortho.tif": 2}, report.text()
    assert [line.what for line in report.skipped] == ["ortho.shp, layer ortho, feature 2"]
    assert "outside the photo" in report.skipped[0].text
    labels = read_labels(project, "ortho")
    assert (labels[4:8, 10:20] == 1).all() and (labels[4:8, 20:24] == 2).all()
    assert (labels > 0).sum() == 56
