"""COCO JSON (``instances_*.json``; CVAT's "COCO 1.0" export is one): reading it into stones,
writing a project's stones as one.

Reading: every image the file lists is a photo of the project, found by ``file_name``
(``photos.PhotoIndex``); every annotation of a chosen category (all but ``background``,
unless ``labels`` names some; every one when the file lists no categories) is one stone:
its polygons (their union, as pycocotools draws them) or its RLE (compressed or not, of
the photo's size). ``iscrowd`` = 1 regions are not single stones and
are skipped. An image without annotations is a photo without stones only when the file says
it was labelled (``"labelled": true`` in its image entry, which StoneSeg writes).

Writing: one category, "stone"; per stone its outline along pixel edges as polygons (one per
part), which pycocotools, CVAT, labelme's converters and FiftyOne all read, and which come
back pixel for pixel; a stone with a hole (or one whose polygons would not come back exactly)
as a compressed RLE with ``iscrowd`` 0 (pycocotools, CVAT and detectron2 read those too).
``area`` is the pixel count, ``bbox`` the pixel box [x, y, width, height].
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stoneseg_core.formats.raster import exact_polygons, stone_crops
from stoneseg_core.formats.report import FormatReport
from stoneseg_core.formats.rle import compress, crop_to_runs, rle_counts
from stoneseg_core.formats.shapes import (
    Part,
    PhotoShapes,
    StoneShape,
    is_stone_label,
    ring_array,
)
from stoneseg_core.grains.outlines import label_polygons

STONE_CATEGORY = {"id": 1, "name": "stone", "supercategory": "stone"}


def load_json(path: Path, report: FormatReport) -> Any:
    """A JSON file's content, or None with one line in the report saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        report.skip(path.name, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    except UnicodeDecodeError:
        report.skip(path.name, "not a text (UTF-8) file")
    except OSError as exc:
        report.skip(path.name, f"cannot be read ({exc.strerror or exc})")
    return None


def image_size_of(entry: dict) -> tuple[int, int] | None:
    """(height, width) an image entry states, or None."""
    h, w = entry.get("height"), entry.get("width")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w))
    return (h, w) if ok else None


def chosen_categories(data: dict, labels: Sequence[str] | None, report: FormatReport, name: str):
    """{category id: name} of the categories whose annotations are stones; None: all."""
    categories = {}
    for c in data.get("categories") or []:
        if isinstance(c, dict) and isinstance(c.get("id"), int):
            categories[c["id"]] = str(c.get("name", c["id"]))
    if not categories and not labels:
        return None  # a file without categories: every annotation is a stone
    chosen = {i: n for i, n in categories.items() if is_stone_label(n, labels)}
    if labels and not chosen:
        report.skip(
            name,
            f"no category named {', '.join(labels)} (it has: "
            f"{', '.join(categories.values()) or 'none'})",
        )
    return chosen


def read_coco(
    path: Path, report: FormatReport, labels: Sequence[str] | None = None
) -> list[PhotoShapes]:
    """The photos and stones of one COCO file (see the module's docstring); what cannot be
    read is one line each in ``report``."""
    data = load_json(path, report)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        report.skip(path.name, "not a COCO file: no list of images")
        return []
    categories = chosen_categories(data, labels, report, path.name)
    photos: dict[Any, PhotoShapes] = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            report.skip(f"{path.name}, image {i}", "has no file_name")
            continue
        photos[entry.get("id")] = PhotoShapes(
            entry["file_name"],
            size=image_size_of(entry),
            labelled=entry.get("labelled") is True,
            source=path.name,
        )
    others: dict[Any, int] = {}
    for k, ann in enumerate(data.get("annotations") or []):
        stone = coco_stone(ann, k, categories, photos, others, report)
        if stone is not None:
            photos[ann["image_id"]].stones.append(stone)
    for cat, n in others.items():
        report.skip(
            path.name, f"{n} annotation(s) of category {cat} left out (not a stone category)"
        )
    return list(photos.values())


def coco_stone(ann, k: int, categories: dict, photos: dict, others: dict, report: FormatReport):
    """One annotation as a ``StoneShape``, or None (with its line in the report)."""
    if not isinstance(ann, dict):
        report.skip(f"annotation {k}", "is not an object")
        return None
    where = f"annotation {ann.get('id', k)}"
    if ann.get("image_id") not in photos:
        report.skip(where, f"names image id {ann.get('image_id')!r}, which the file does not list")
        return None
    if categories is not None and ann.get("category_id") not in categories:
        key = repr(ann.get("category_id"))
        others[key] = others.get(key, 0) + 1
        return None
    if ann.get("iscrowd") in (1, True):
        report.skip(where, "a crowd region (iscrowd 1), not one stone")
        return None
    seg = ann.get("segmentation")
    try:
        if isinstance(seg, dict):
            runs, size = rle_counts(seg)
            return StoneShape(where, runs=runs, runs_size=size)
        if isinstance(seg, list) and seg:
            rings = seg if isinstance(seg[0], list) else [seg]
            return StoneShape(where, parts=tuple(Part(ring_array(r)) for r in rings))
    except ValueError as exc:
        report.skip(where, str(exc))
        return None
    report.skip(where, "has no segmentation (neither polygons nor an RLE)")
    return None


# ------------------------------------------------------------------------------ writing


def coco_stone_annotations(
    labels: np.ndarray, image_id: int, first_id: int
) -> list[dict[str, Any]]:
    """The annotations of a photo's stones (labels 1..N), ids from ``first_id`` on."""
    h, w = labels.shape
    rings = label_polygons(labels)
    out = []
    for label, (box, crop) in stone_crops(labels).items():
        parts = [Part(p[0], tuple(p[1:])) for p in rings.get(label, [])]
        r0, c0, r1, c1 = box
        if exact_polygons(parts, box, crop, h, w):
            seg: Any = [np.asarray(p.exterior[:-1]).astype(int).ravel().tolist() for p in parts]
        else:
            seg = compress(crop_to_runs(crop, r0, c0, (h, w)), (h, w))
        out.append(
            {
                "id": first_id + len(out),
                "image_id": image_id,
                "category_id": STONE_CATEGORY["id"],
                "segmentation": seg,
                "area": int(np.count_nonzero(crop)),
                "bbox": [c0, r0, c1 - c0, r1 - r0],
                "iscrowd": 0,
            }
        )
    return out


def coco_image(image_id: int, name: str, size: tuple[int, int]) -> dict[str, Any]:
    """A photo's image entry, marked ``"labelled": true`` (StoneSeg reads a photo listed
    without stones as an empty mask only when it says so)."""
    h, w = size
    return {"id": image_id, "file_name": name, "width": w, "height": h, "labelled": True}


def coco_file(images: list[dict], annotations: list[dict], description: str) -> dict[str, Any]:
    """A whole COCO file: its info, images, annotations and the one category."""
    return {
        "info": {
            "description": description,
            "version": "1.0",
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [STONE_CATEGORY],
    }
