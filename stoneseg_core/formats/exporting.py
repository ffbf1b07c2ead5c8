"""Exporting a project's masks and stones for another tool: ``iter_export``, a generator the
CLI (``stoneseg export``) and the window run alike.

Every photo with a mask (reviewed ones; predicted ones too with ``include_predicted``) is
exported with its stones (``photos.photo_stones``): COCO, one JSON file for the project;
labelme, a JSON file per photo in a folder; GeoJSON, a file per photo in a folder; a
GeoPackage, one file with the stones of every photo in one layer. Each comes back pixel for
pixel through ``iter_import`` (``tests/test_formats.py``, ``bench_formats.py``). Nothing is
overwritten unless ``overwrite``: the files in the way are named before any is written, and
each file is written whole beside its place and then moved there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from pathlib import Path

from stoneseg_core.errors import StonesegError
from stoneseg_core.formats.coco import coco_file, coco_image, coco_stone_annotations
from stoneseg_core.formats.labelme import labelme_document
from stoneseg_core.formats.photos import PhotoIndex, PhotoStones, photo_scale, photo_stones
from stoneseg_core.formats.report import FormatProgress, FormatReport
from stoneseg_core.formats.vector_out import GeoPackageWriter, geojson_document
from stoneseg_core.grains.io import write_text
from stoneseg_core.io.images import image_size, make_output_dir
from stoneseg_core.io.project import Project

EXPORT_FORMATS = ("coco", "labelme", "geojson", "gpkg")
ONE_FILE = {"coco": ".json", "gpkg": ".gpkg"}  # the others: a file per photo in a folder
PER_PHOTO = {"labelme": ".json", "geojson": ".geojson"}


def export_photos(project: Project, include_predicted: bool = False) -> list[Path]:
    return [img for img, _ in project.labelled_pairs(include_predicted=include_predicted)]


def output_file(fmt: str, project: Project, out: Path) -> Path:
    """Where a one-file export goes: ``out``, or a file named after the project in it when
    ``out`` is a folder."""
    if out.is_dir():
        return out / f"{project.root.name or 'stoneseg'}{ONE_FILE[fmt]}"
    return out


def export_targets(fmt: str, project: Project, out: str | Path, photos: list[Path]) -> list[Path]:
    """The files an export writes."""
    out = Path(out)
    if fmt in ONE_FILE:
        return [output_file(fmt, project, out)]
    return [out / f"{p.stem}{PER_PHOTO[fmt]}" for p in photos]


def iter_export(
    fmt: str,
    project_dir: str | Path,
    out: str | Path,
    overwrite: bool = False,
    include_predicted: bool = False,
    split: str = "grains",
    data_dir: str | Path | None = None,
) -> Generator[FormatProgress, None, FormatReport]:
    """Export the project at ``project_dir`` as ``fmt`` (one of ``EXPORT_FORMATS``) to ``out``
    (a file for coco and gpkg, a folder for labelme and geojson); yields progress, returns
    the report. ``split``: how a mask without per-stone labels is split (``photos.SPLITS``);
    ``data_dir``: where the masks are when the project folder is read-only (as for
    ``iter_import``)."""
    if fmt not in EXPORT_FORMATS:
        raise StonesegError(f"Unknown format {fmt!r}: one of {', '.join(EXPORT_FORMATS)}.")
    start = time.perf_counter()
    project = Project.open(project_dir, fallback_data_dir=data_dir)
    photos = export_photos(project, include_predicted)
    if not photos:
        raise StonesegError(f"No masks to export in {project.root}.")
    out = Path(out)
    targets = export_targets(fmt, project, out, photos)
    in_way = [t for t in targets if t.exists()]
    if in_way and not overwrite:
        shown = ", ".join(str(t) for t in in_way[:5]) + (" ..." if len(in_way) > 5 else "")
        raise StonesegError(f"{len(in_way)} file(s) in the way: {shown} (--overwrite replaces)")
    make_output_dir(targets[0].parent)
    report = FormatReport(
        "export", fmt, str(project.root), str(out if fmt not in ONE_FILE else targets[0])
    )
    sink = Sink(fmt, project, targets[0])
    try:
        for i, photo in enumerate(photos, start=1):
            stones = stones_of(project, photo, split, report)
            if stones is not None:
                sink.add(stones, out)
                report.done(
                    photo.name, stones.count, f"{stones.count} stone(s) from {stones.source}"
                )
            yield FormatProgress(i, len(photos), photo.name)
        sink.finish()
    finally:
        sink.discard()
    report.seconds = time.perf_counter() - start
    return report


def stones_of(
    project: Project, photo: Path, split: str, report: FormatReport
) -> PhotoStones | None:
    """A photo's stones, or None with the reason in the report (its notes there too)."""
    try:
        stones = photo_stones(project, photo, split)
        w, h = image_size(photo)
    except StonesegError as exc:
        report.skip(photo.name, str(exc))
        return None
    if stones.labels.shape != (h, w):
        lh, lw = stones.labels.shape
        report.skip(photo.name, f"its mask is {lw}x{lh} pixels but the photo is {w}x{h}")
        return None
    for note in stones.notes:
        report.note(photo.name, note)
    return stones


class Sink:
    """Where the photos' stones go, format by format."""

    def __init__(self, fmt: str, project: Project, target: Path) -> None:
        self.fmt, self.project, self.target = fmt, project, target
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.index = PhotoIndex(project)
        self.gpkg = GeoPackageWriter(target) if fmt == "gpkg" else None

    def add(self, stones: PhotoStones, out: Path) -> None:
        photo, labels = stones.photo, stones.labels
        if self.fmt == "coco":
            image_id = len(self.images) + 1
            self.images.append(coco_image(image_id, photo.name, labels.shape))
            self.annotations += coco_stone_annotations(labels, image_id, len(self.annotations) + 1)
            return
        if self.fmt == "labelme":
            path = out / f"{photo.stem}.json"
            write_text(path, json.dumps(labelme_document(labels, photo, path), indent=1))
            return
        georef = self.index.georef(photo)
        mm, source = photo_scale(self.project, photo, georef)
        if self.fmt == "geojson":
            doc = geojson_document(photo.name, labels, georef, mm, source)
            write_text(out / f"{photo.stem}.geojson", json.dumps(doc, allow_nan=False))
        elif self.gpkg is not None:
            self.gpkg.add_photo(photo.name, labels, georef, mm)

    def finish(self) -> None:
        if self.fmt == "coco":
            doc = coco_file(
                self.images, self.annotations, f"StoneSeg export of {self.project.root.name}"
            )
            write_text(self.target, json.dumps(doc, separators=(",", ":")))
        elif self.gpkg is not None:
            self.gpkg.commit()

    def discard(self) -> None:
        if self.gpkg is not None:
            self.gpkg.discard()
