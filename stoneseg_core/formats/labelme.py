"""labelme JSON (one file per photo): reading its shapes into stones, writing a photo's stones
as one. Read as plain JSON: the labelme package (Qt, its own app) is not needed.

Reading: the photo is the file's ``imagePath`` (else the JSON's own name); every shape of a
chosen label (all but ``background``, unless ``labels`` names some) is a stone:
``polygon`` (also ``oriented_rectangle``), ``rectangle`` (two corners), ``circle`` (centre
and a point on it, drawn as a 128-gon) and ``mask`` (a base64 PNG over the box of its two
points, as labelme 5.3+ writes it); points, lines and line strips are not areas and are
skipped. Shapes that share a label and a ``group_id`` are one stone, as labelme's own
converters take them.
Points are read as positions over the photo, where labelme shows them (pixel (r, c) covers
x from c to c + 1), and a pixel is the stone's when its centre is inside; labelme's own
``shape_to_mask`` (PIL) also paints the pixels its outline touches, up to one more pixel
along the right and bottom edges. A file without shapes is a photo without stones only when
its ``flags`` say ``"labelled": true`` (StoneSeg writes that).

Writing: a polygon per part of each stone (its outline along pixel edges, ``group_id`` the
stone's number), or a ``mask`` shape for a stone with a hole; ``imagePath`` relative to the
JSON, no ``imageData``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stoneseg_core.formats.coco import load_json
from stoneseg_core.formats.raster import exact_polygons, stone_crops
from stoneseg_core.formats.report import FormatReport
from stoneseg_core.formats.shapes import (
    Part,
    PhotoShapes,
    StoneShape,
    is_stone_label,
    ring_array,
)
from stoneseg_core.grains.outlines import label_polygons

LABELME_VERSION = "5.5.0"
POLYGONS = ("polygon", "oriented_rectangle")
NOT_AREAS = ("point", "points", "line", "linestrip")
CIRCLE_VERTICES = 128


def read_labelme(
    path: Path, report: FormatReport, labels: Sequence[str] | None = None
) -> list[PhotoShapes]:
    """The photo and stones of one labelme JSON file (one line each in ``report`` for what
    cannot be read); an empty list when the file is not one."""
    data = load_json(path, report)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        report.skip(path.name, "not a labelme file: no list of shapes")
        return []
    name = data.get("imagePath") if isinstance(data.get("imagePath"), str) else path.stem
    h, w = data.get("imageHeight"), data.get("imageWidth")
    size = (h, w) if all(isinstance(v, int) and v > 0 for v in (h, w)) else None
    flags = data.get("flags") if isinstance(data.get("flags"), dict) else {}
    photo = PhotoShapes(
        name or path.stem,
        size=size,
        labelled=flags.get("labelled") is True,
        source=path.name,
        other_names=(path.stem,),
    )
    left_out: dict[str, int] = {}
    for k, shape in enumerate(data["shapes"]):
        where = f"{path.name}, shape {k}"
        if not isinstance(shape, dict):
            report.skip(where, "is not an object")
            continue
        label = str(shape.get("label", ""))
        if not is_stone_label(label, labels):
            left_out[label] = left_out.get(label, 0) + 1
            continue
        try:
            stone = labelme_stone(shape, where, label)
        except ValueError as exc:
            report.skip(where, str(exc))
            continue
        photo.stones.append(stone)
    for label, n in left_out.items():
        report.skip(path.name, f"{n} shape(s) labelled {label!r} left out (not a stone label)")
    return [photo]


def labelme_stone(shape: dict, where: str, label: str) -> StoneShape:
    """One labelme shape as a ``StoneShape``; ValueError saying why it cannot be one."""
    kind = shape.get("shape_type") or "polygon"
    group = shape.get("group_id")
    group = None if group is None else (label, str(group))
    points = shape.get("points")
    if kind in NOT_AREAS:
        raise ValueError(f"a {kind}, not an area")
    if kind == "mask":
        return mask_stone(shape, where, group)
    if kind in POLYGONS:
        return StoneShape(where, parts=(Part(ring_array(points)),), group=group)
    if kind in ("rectangle", "circle"):
        pts = two_points(points, kind)
        if kind == "rectangle":
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            ring = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        else:
            (cx, cy), edge = pts[0], pts[1]
            radius = float(np.hypot(*(edge - pts[0])))
            angle = np.linspace(0, 2 * np.pi, CIRCLE_VERTICES, endpoint=False)
            ring = np.column_stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)])
        return StoneShape(where, parts=(Part(ring),), group=group)
    raise ValueError(f"its shape type {kind!r} is not one StoneSeg reads")


def two_points(points: Any, kind: str) -> np.ndarray:
    try:
        pts = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"its {kind} points are not numbers") from None
    if pts.shape != (2, 2) or not np.isfinite(pts).all():
        raise ValueError(f"a {kind} needs two (x, y) points")
    return pts


def mask_stone(shape: dict, where: str, group: object) -> StoneShape:
    """A labelme ``mask`` shape: a PNG over the pixels from its first point to its second."""
    pts = two_points(shape.get("points"), "mask")
    data = shape.get("mask")
    if not isinstance(data, str):
        raise ValueError("a mask shape without its mask")
    try:
        raw = np.frombuffer(base64.b64decode(data, validate=True), np.uint8)
    except ValueError:
        raise ValueError("its mask is not base64 data") from None
    bitmap = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if bitmap is None:
        raise ValueError("its mask is not an image")
    if bitmap.ndim == 3:
        bitmap = bitmap.max(axis=2)
    (x0, y0), (x1, y1) = np.floor(pts).astype(int)
    if bitmap.shape != (y1 - y0 + 1, x1 - x0 + 1):
        raise ValueError(
            f"its mask is {bitmap.shape[1]}x{bitmap.shape[0]} pixels but its box "
            f"{x1 - x0 + 1}x{y1 - y0 + 1}"
        )
    return StoneShape(where, bitmap=bitmap > 0, origin=(y0, x0), group=group)


# ------------------------------------------------------------------------------ writing


def encode_bitmap(crop: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", np.where(crop, 255, 0).astype(np.uint8))
    if not ok:
        raise ValueError("cannot encode a stone's mask as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def labelme_document(labels: np.ndarray, photo: Path, json_path: Path) -> dict[str, Any]:
    """A photo's stones (labels 1..N) as a labelme file to be written at ``json_path``."""
    h, w = labels.shape
    rings = label_polygons(labels)
    shapes = []
    for label, (box, crop) in stone_crops(labels).items():
        parts = [Part(p[0], tuple(p[1:])) for p in rings.get(label, [])]
        common = {"label": "stone", "group_id": label, "description": "", "flags": {}}
        if exact_polygons(parts, box, crop, h, w):
            for p in parts:
                points = np.asarray(p.exterior[:-1]).astype(int).tolist()
                shapes.append({**common, "points": points, "shape_type": "polygon", "mask": None})
        else:
            r0, c0, r1, c1 = box
            shapes.append(
                {
                    **common,
                    "points": [[c0, r0], [c1 - 1, r1 - 1]],
                    "shape_type": "mask",
                    "mask": encode_bitmap(crop),
                }
            )
    try:
        image_path = os.path.relpath(photo.resolve(), json_path.resolve().parent)
    except ValueError:  # another drive (Windows): no relative path
        image_path = str(photo.resolve())
    return {
        "version": LABELME_VERSION,
        "flags": {"labelled": True},
        "shapes": shapes,
        "imagePath": Path(image_path).as_posix(),
        "imageData": None,
        "imageHeight": h,
        "imageWidth": w,
    }
