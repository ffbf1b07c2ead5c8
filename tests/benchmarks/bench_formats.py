"""Label formats (stoneseg_core.formats): are the round trips exact on real stones, and how
fast is a big COCO file imported?

1. conveyor-train (../shared/data/conveyor-train: 174 tiles, their instances/; read-only, it is
   only read): exported as COCO, labelme, GeoJSON and GeoPackage into a temporary folder and
   imported into a fresh project of the same photos. A stone matches when the imported
   project has a stone of exactly its pixels; a photo matches when its mask and all its
   stones do. Seconds for each export and import.
2. A synthetic COCO file of 10,000 touching stones (10 photos of 1000 x 1000, Voronoi cells,
   exported by StoneSeg as polygons) imported into a project; the same stones as compressed
   RLEs (as CVAT and detectron2 write them) imported too. The target: under 10 s.

    python tests/benchmarks/bench_formats.py [--data DIR] [--stones 10000]

Prints one JSON line. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, emit, load_average, machine, r3

sys.path.insert(0, str(REPO / "tests"))
from formats_data import run
from synthetic import write_rgb

from stoneseg_core.formats import iter_export, iter_import
from stoneseg_core.formats.photos import photo_stones
from stoneseg_core.formats.raster import fill_rings
from stoneseg_core.formats.rle import compress, crop_to_runs
from stoneseg_core.grains.io import write_instance_png
from stoneseg_core.io.images import read_instance_labels, read_mask, write_mask
from stoneseg_core.io.project import Project

log = logging.getLogger("bench_formats")
CONVEYOR = REPO.parent / "shared" / "data" / "conveyor-train"
OUT = {"coco": "labels.json", "labelme": "labelme", "geojson": "geojson", "gpkg": "stones.gpkg"}


def linked_project(folder: Path, images: Path) -> Path:
    """A project whose images/ is a link to ``images`` (nothing copied)."""
    folder.mkdir(parents=True)
    (folder / "images").symlink_to(images.resolve(), target_is_directory=True)
    return folder


def matches(truth: np.ndarray, got: np.ndarray) -> tuple[int, int]:
    """(stones of ``truth``, those that ``got`` has pixel for pixel)."""
    ids = np.unique(truth[truth > 0])
    if ids.size == 0:
        return 0, 0
    exact = 0
    got_sizes = np.bincount(got.ravel(), minlength=int(got.max(initial=0)) + 1)
    for i in ids:
        under = got[truth == i]
        if under[0] > 0 and (under == under[0]).all() and got_sizes[under[0]] == under.size:
            exact += 1
    return int(ids.size), exact


def conveyor_round_trips(data: Path, tmp: Path) -> dict:
    source = Project.open(data)
    truth = {}
    for photo, _ in source.labelled_pairs():
        truth[photo.stem] = photo_stones(source, photo).labels  # what is exported
    out: dict = {"photos": len(truth), "stones": int(sum(t.max() for t in truth.values()))}
    for fmt, name in OUT.items():
        t0 = time.perf_counter()
        run(iter_export(fmt, data, tmp / name))
        t1 = time.perf_counter()
        dst = linked_project(tmp / f"back-{fmt}", data / "images")
        report = run(iter_import(fmt, tmp / name, dst))
        t2 = time.perf_counter()
        stones = exact = photos_exact = 0
        for stem, labels in truth.items():
            got = read_instance_labels(dst / "instances" / f"{stem}.png")
            n, ok = matches(labels, got)
            stones, exact = stones + n, exact + ok
            same_mask = np.array_equal(read_mask(dst / "masks" / f"{stem}.png") > 0, labels > 0)
            photos_exact += same_mask and ok == n and int(got.max()) == n
        out[fmt] = {
            "exact_stones": exact / stones,
            "exact_photos": photos_exact / len(truth),
            "skipped": len(report.skipped),
            "export_s": r3(t1 - t0),
            "import_s": r3(t2 - t1),
        }
        log.info("%s: %s", fmt, out[fmt])
    return out


def voronoi_stones(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` touching stones filling a size x size photo (Voronoi cells), a gap of ground
    between every other pair."""
    from scipy.spatial import cKDTree

    seeds = rng.uniform(0, size, (n, 2))
    rows, cols = np.mgrid[0:size, 0:size]
    dist, nearest = cKDTree(seeds).query(np.column_stack([rows.ravel(), cols.ravel()]), k=2)
    labels = (nearest[:, 0] + 1).reshape(size, size).astype(np.int32)
    gap = (dist[:, 1] - dist[:, 0]).reshape(size, size) < 1.0
    labels[gap & (rng.random((size, size)) < 0.5)] = 0  # some stones touch, some do not
    return labels


def big_coco(tmp: Path, stones: int, photos: int = 10, size: int = 1000) -> dict:
    rng = np.random.default_rng(0)
    src = tmp / "big-src"
    per_photo = stones // photos
    for k in range(photos):
        labels = voronoi_stones(size, per_photo, rng)
        write_rgb(src / "images" / f"p{k:02d}.png", rng.integers(0, 255, (size, size, 3), np.uint8))
        write_mask(src / "masks" / f"p{k:02d}.png", (labels > 0).astype(np.uint8) * 255)
        write_instance_png(src / "instances" / f"p{k:02d}.png", labels)
    polygons = tmp / "big-polygons.json"
    t0 = time.perf_counter()
    exported = run(iter_export("coco", src, polygons))
    export_s = time.perf_counter() - t0
    rles = tmp / "big-rle.json"
    doc = json.loads(polygons.read_text())
    for ann in doc["annotations"]:  # the same stones as compressed RLEs
        if isinstance(ann["segmentation"], list):
            x, y, bw, bh = ann["bbox"]
            rings = [np.asarray(p, float).reshape(-1, 2) for p in ann["segmentation"]]
            crop = fill_rings(rings, (y, x, y + bh, x + bw))
            ann["segmentation"] = compress(crop_to_runs(crop, y, x, (size, size)), (size, size))
    rles.write_text(json.dumps(doc))
    out = {"stones": exported.stones, "photos": photos, "size": size, "export_s": r3(export_s)}
    for kind, path in (("polygons", polygons), ("rle", rles)):
        dst = linked_project(tmp / f"big-{kind}", src / "images")
        t0 = time.perf_counter()
        report = run(iter_import("coco", path, dst))
        out[f"import_{kind}_s"] = r3(time.perf_counter() - t0)
        assert report.stones == exported.stones and not report.skipped, report.summary()
        exact = sum(
            matches(
                read_instance_labels(src / "instances" / f"p{k:02d}.png"),
                read_instance_labels(dst / "instances" / f"p{k:02d}.png"),
            )[1]
            for k in range(photos)
        )
        out[f"exact_{kind}"] = exact / exported.stones
        log.info("10k COCO (%s): %s", kind, out)
    return out


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=CONVEYOR)
    parser.add_argument("--stones", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="stoneseg-bench-formats-") as tmp:
        conveyor = conveyor_round_trips(args.data, Path(tmp))
        big = big_coco(Path(tmp), args.stones)
    exact = all(conveyor[f]["exact_photos"] == 1.0 for f in OUT)
    exact = exact and big["exact_polygons"] == 1.0 and big["exact_rle"] == 1.0
    fast = max(big["import_polygons_s"], big["import_rle_s"]) < 10.0
    emit(
        {
            "bench": "formats",
            "data": args.data.name,
            "conveyor": conveyor,
            "coco_10k": big,
            "targets": {"round_trips_exact": exact, "coco_10k_import_under_10s": fast},
            "commit": git_commit(),
            "machine": machine(),
            "load": [load_before, load_average()],
        }
    )


if __name__ == "__main__":
    main()
