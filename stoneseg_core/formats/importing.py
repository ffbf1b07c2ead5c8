"""Importing labels from another tool into a project: ``iter_import``, a generator the CLI
(``stoneseg import``) and the window run alike.

Each photo the file gives stones for gets ``masks/<stem>.png`` and ``instances/<stem>.png``
(``writing.write_labels``: both written whole, then moved into place), and a line in the
report; what cannot be imported (a file that is not valid JSON, a photo not in the project,
an RLE of the wrong size, a stone outside the photo, a layer in a CRS it cannot reproject)
is a line each, and the rest goes on. A photo that already has a mask or instances is left
as it is unless ``overwrite``. Imported masks are labels: a photo a model predicted is no
longer marked "predicted, not reviewed".
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.formats.coco import read_coco
from stoneseg_core.formats.cvat import read_cvat_masks
from stoneseg_core.formats.labelme import read_labelme
from stoneseg_core.formats.photos import PhotoIndex
from stoneseg_core.formats.raster import StoneCanvas, outside_photo
from stoneseg_core.formats.report import EXISTS, FormatProgress, FormatReport
from stoneseg_core.formats.shapes import PhotoShapes
from stoneseg_core.formats.sources import label_files, unpacked
from stoneseg_core.formats.vector import read_vector_photos
from stoneseg_core.formats.writing import existing, forget_predictions, write_labels
from stoneseg_core.io.project import Project

IMPORT_FORMATS = ("coco", "labelme", "cvat", "geojson", "gpkg", "shp")
PROGRESS_STONES = 2000  # a progress event every so many stones of a photo


def read_source(
    fmt: str,
    place: Path,
    index: PhotoIndex,
    report: FormatReport,
    labels: Sequence[str] | None,
    image: str | None,
) -> list[PhotoShapes]:
    """Every photo's stones that the source at ``place`` (a file or a folder) gives."""
    if fmt == "cvat":
        return read_cvat_masks(place if place.is_dir() else place.parent, report, labels)
    files = label_files(fmt, place)
    if fmt in ("geojson", "gpkg", "shp"):
        return read_vector_photos(files, index, report, image)
    reader = read_coco if fmt == "coco" else read_labelme
    return [photo for f in files for photo in reader(f, report, labels)]


def iter_import(
    fmt: str,
    source: str | Path,
    project_dir: str | Path,
    overwrite: bool = False,
    labels: Sequence[str] | None = None,
    image: str | None = None,
    empty: bool = False,
    only: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
) -> Generator[FormatProgress, None, FormatReport]:
    """Import the labels of ``source`` (a file, folder or zip in format ``fmt``, one of
    ``IMPORT_FORMATS``) into the project at ``project_dir``; yields progress, returns the
    report. ``labels``: the label or category names that are stones (default: all but
    "background"); ``image``: the photo every feature of a vector file lies on; ``empty``:
    a photo the file lists without stones becomes an empty mask even when the file does not
    say it was labelled; ``only``: import just these photos (names or stems); ``data_dir``:
    where the masks go when the project folder is read-only (``Project.open``'s fallback:
    the window's per-user folder)."""
    if fmt not in IMPORT_FORMATS:
        raise StonesegError(f"Unknown format {fmt!r}: one of {', '.join(IMPORT_FORMATS)}.")
    start = time.perf_counter()
    project = Project.open(project_dir, fallback_data_dir=data_dir)
    index = PhotoIndex(project)
    report = FormatReport("import", fmt, Path(source).name, str(project.root))
    wanted = None if only is None else {Path(n).stem.lower() for n in only}
    with unpacked(source) as place:
        yield FormatProgress(0, 0, f"reading {Path(source).name}")
        photos = read_source(fmt, place, index, report, labels, image)
        seen: dict[Path, str] = {}
        for i, shapes in enumerate(photos, start=1):
            photo = find_photo(index, shapes, report, seen)
            if photo is not None and (wanted is None or photo.stem.lower() in wanted):
                yield from import_photo(project, index, photo, shapes, report, overwrite, empty)
            yield FormatProgress(i, len(photos), shapes.name)
    forget_predictions(project, [Path(name).stem for name in report.photos])
    report.seconds = time.perf_counter() - start
    return report


def find_photo(
    index: PhotoIndex, shapes: PhotoShapes, report: FormatReport, seen: dict[Path, str]
) -> Path | None:
    """The project's photo ``shapes`` are for, or None with the reason in the report."""
    photo = index.find(shapes.name)
    for other in shapes.other_names:
        photo = photo or index.find(other)
    if photo is None:
        report.skip(shapes.name, f"no photo of that name in the project ({shapes.source})")
        return None
    if photo in seen:
        report.skip(photo.name, f"{shapes.source} gives it again ({seen[photo]} gave it first)")
        return None
    seen[photo] = shapes.source
    return photo


def import_photo(
    project: Project,
    index: PhotoIndex,
    photo: Path,
    shapes: PhotoShapes,
    report: FormatReport,
    overwrite: bool,
    empty: bool,
):
    """Paint and write one photo's stones (a generator: progress on big photos)."""
    try:
        h, w = index.size(photo)
    except StonesegError as exc:
        report.skip(photo.name, f"the photo cannot be read ({exc})")
        return
    if shapes.size is not None and tuple(shapes.size) != (h, w):
        sh, sw = shapes.size
        report.skip(photo.name, f"{shapes.source} says it is {sw}x{sh} pixels, but it is {w}x{h}")
        return
    in_way = existing(project, photo)
    if in_way and not overwrite:
        names = ", ".join(f"{p.parent.name}/{p.name}" for p in in_way)
        report.skip(photo.name, f"{names} exist(s): kept (--overwrite replaces)", EXISTS)
        return
    labels = yield from paint(shapes, (h, w), photo.name, report)
    if labels is None:
        return
    n = int(labels.max(initial=0))
    if n == 0 and not (shapes.labelled or empty):
        report.note(
            photo.name,
            "no stones in the file: left as it was (--empty imports such a "
            "photo as one without stones)",
        )
        return
    try:
        kept = write_labels(project, photo, labels, not shapes.mask_only)
    except StonesegError as exc:
        report.skip(photo.name, str(exc))
        return
    written = "masks/" + (" only" if shapes.mask_only else " and instances/")
    report.done(photo.name, n, f"{n} stone(s) -> {written}" + (" (replaced)" if in_way else ""))
    if kept is not None:
        report.note(photo.name, f"its instances from before no longer fit: kept as {kept.name}")


def paint(shapes: PhotoShapes, size: tuple[int, int], name: str, report: FormatReport):
    """A photo's stones as labels 1..N (a generator returning them; None when unusable)."""
    h, w = size
    if shapes.labels is not None:
        if shapes.labels.shape != (h, w):
            report.skip(
                name,
                f"its labels are {shapes.labels.shape[1]}x{shapes.labels.shape[0]}"
                f" pixels, but the photo is {w}x{h}",
            )
            return None
        return np.asarray(shapes.labels, np.int32)
    canvas = StoneCanvas(h, w)
    groups: dict[object, int] = {}
    painted = 0
    for k, stone in enumerate(shapes.stones, start=1):
        if k % PROGRESS_STONES == 0:
            yield FormatProgress(k, len(shapes.stones), f"{name}: stone {k}")
        try:
            box, crop = canvas.stone_pixels(stone)
        except ValueError as exc:
            report.skip(stone.where, str(exc))
            continue
        clipped = bool(stone.parts) and outside_photo(stone.parts, h, w)
        if stone.bitmap is not None:
            clipped = crop.shape != stone.bitmap.shape
        if crop.size == 0 or not crop.any():
            where = "lies outside the photo" if clipped else "covers no pixel centre"
            report.skip(stone.where, f"{where}: no stone")
            continue
        if clipped:
            report.note(stone.where, "reaches outside the photo: clipped to it")
        given = groups.get(stone.group) if stone.group is not None else None
        label = canvas.paint(box, crop, given)
        painted += given is None
        if stone.group is not None:
            groups[stone.group] = label
    labels, n = canvas.compact()
    if canvas.taken_over:
        report.note(name, f"{canvas.taken_over} pixel(s) where stones overlap went to the later")
    if n < painted:
        report.note(name, f"{painted - n} stone(s) wholly covered by later ones: left out")
    return labels
