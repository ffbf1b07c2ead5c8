"""CVAT's "Segmentation mask 1.1" export (a zip or its unpacked folder): ``labelmap.txt``,
``SegmentationClass/<photo>.png`` (a colour per label) and ``SegmentationObject/<photo>.png``
(a colour per object). CVAT's COCO export is read by ``coco``.

Each object of a stone label (every label but ``background``, unless ``labels`` names some)
is a stone: its pixels are those of its colour in SegmentationObject whose class colour in
SegmentationClass is a stone label's. Stone pixels of no object become stones of their own
(their 8-connected pieces, said in the report). An export without SegmentationObject gives
masks only (no instances/). CVAT writes every frame of a task, those nobody annotated all
black: a photo without stones is imported as an empty mask only when asked (``empty``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.formats.photos import pieces_of
from stoneseg_core.formats.report import FormatReport
from stoneseg_core.formats.shapes import PhotoShapes, is_stone_label

LABELMAP = "labelmap.txt"
CLASS_DIR, OBJECT_DIR = "SegmentationClass", "SegmentationObject"


def find_root(folder: Path) -> Path | None:
    """The folder of a CVAT mask export at or below ``folder`` (where labelmap.txt or
    SegmentationObject/ is), or None."""
    for candidate in [folder, *sorted(p.parent for p in folder.rglob(LABELMAP))]:
        if (candidate / LABELMAP).is_file() or (candidate / OBJECT_DIR).is_dir():
            return candidate
    return None


def read_labelmap(path: Path, report: FormatReport) -> dict[str, tuple[int, int, int]]:
    """{label: (r, g, b)} of a labelmap.txt ("name:r,g,b:parts:actions" lines)."""
    out: dict[str, tuple[int, int, int]] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        report.skip(LABELMAP, f"cannot be read ({exc})")
        return out
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        try:
            rgb = tuple(int(v) for v in fields[1].split(","))
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise ValueError
        except (IndexError, ValueError):
            report.skip(f"{LABELMAP}, line {n}", f"not 'label:r,g,b:parts:actions' ({line!r})")
            continue
        out[fields[0]] = rgb  # type: ignore[assignment]
    return out


def read_rgb(path: Path) -> np.ndarray | None:
    raw = np.fromfile(path, np.uint8)
    arr = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    return None if arr is None else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def packed(rgb: np.ndarray) -> np.ndarray:
    """RGB pixels as one int per colour."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def stone_colours(labelmap: dict, labels: Sequence[str] | None, report: FormatReport) -> set[int]:
    chosen = [rgb for name, rgb in labelmap.items() if is_stone_label(name, labels)]
    if labels and not chosen:
        report.skip(LABELMAP, f"has no label {', '.join(labels)}")
    return {(r << 16) | (g << 8) | b for r, g, b in chosen}


def read_cvat_masks(
    folder: Path, report: FormatReport, labels: Sequence[str] | None = None
) -> list[PhotoShapes]:
    """The photos of a CVAT mask export (see the module's docstring)."""
    root = find_root(folder)
    if root is None:
        report.skip(folder.name, f"not a CVAT mask export: no {LABELMAP} or {OBJECT_DIR}/")
        return []
    labelmap = read_labelmap(root / LABELMAP, report) if (root / LABELMAP).is_file() else {}
    colours = stone_colours(labelmap, labels, report) if labelmap else None
    objects = root / OBJECT_DIR
    pngs = sorted((objects if objects.is_dir() else root / CLASS_DIR).rglob("*.png"))
    if not pngs:
        report.skip(root.name, f"holds no PNG under {OBJECT_DIR}/ or {CLASS_DIR}/")
    found = (cvat_photo(root, png, colours, report) for png in pngs)
    return [photo for photo in found if photo is not None]


def cvat_photo(root: Path, png: Path, colours: set[int] | None, report: FormatReport):
    """One photo's labels from its object (and class) PNGs, or None (said in the report)."""
    have_objects = (root / OBJECT_DIR).is_dir()
    rel = png.relative_to(root / (OBJECT_DIR if have_objects else CLASS_DIR))
    where = rel.as_posix()
    class_png = root / CLASS_DIR / rel
    classes = read_rgb(class_png) if class_png.is_file() else None
    objects = read_rgb(png) if have_objects else None
    if (have_objects and objects is None) or (class_png.is_file() and classes is None):
        report.skip(where, "a PNG of the export cannot be read")
        return None
    if objects is not None and classes is not None and objects.shape != classes.shape:
        report.skip(where, "its class and object PNGs differ in size")
        return None
    base = classes if classes is not None else objects
    stone = np.isin(packed(base), list(colours)) if colours is not None else packed(base) != 0
    photo = PhotoShapes(rel.with_suffix("").as_posix(), size=base.shape[:2], source=where)
    if objects is None:
        photo.labels, photo.mask_only = stone.astype(np.int32), True
        return photo
    ids = np.where(stone, packed(objects), 0)
    values, first, inverse = np.unique(ids.ravel(), return_index=True, return_inverse=True)
    rank = np.zeros(values.size, np.int32)  # objects numbered in the order they are met
    objects_first = np.argsort(np.where(values == 0, -1, first), kind="stable")
    rank[objects_first] = np.arange(values.size) + (0 if values[0] == 0 else 1)
    rank[values == 0] = 0
    labels = rank[inverse].reshape(ids.shape)
    n = int(np.count_nonzero(values))
    loose = stone & (labels == 0)
    if loose.any():
        extra = pieces_of(loose)
        labels = np.where(extra > 0, extra + n, labels)
        report.note(
            where,
            f"{int(loose.sum())} stone pixel(s) of no object became "
            f"{int(extra.max())} stone(s) of their own",
        )
    photo.labels = labels
    return photo
