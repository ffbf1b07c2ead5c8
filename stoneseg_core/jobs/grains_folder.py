"""The folder jobs, as generators: ``iter_grains_folder`` segments, splits and measures every
photo of a folder with a model; ``iter_grains_masks`` splits and measures a project's saved masks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stoneseg_core.errors import DataError, ImageReadError, OutOfMemoryError, StonesegError
from stoneseg_core.grains import tiled
from stoneseg_core.grains.analyse import GrainOptions, ImageGrains, analyse_mask
from stoneseg_core.grains.edit import replay_edits
from stoneseg_core.grains.io import (
    percentiles_report,
    stones_csv,
    stones_geojson,
    write_instance_labels,
    write_json,
    write_text,
)
from stoneseg_core.grains.measure import check_mm_per_px, measure_stones
from stoneseg_core.inference import large
from stoneseg_core.io.geo import Georeference, georeference_or_none, is_tiff
from stoneseg_core.io.images import (
    IMAGE_EXTENSIONS,
    list_images,
    make_output_dir,
    read_image,
    read_mask,
)
from stoneseg_core.jobs.shard import Shard, shard_suffix, take_shard

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # predict imports torch; only the caller of iter_grains_folder needs it
    from stoneseg_core.inference.segmenter import Segmenter


@dataclass(frozen=True)
class GrainEvent:
    """One photo handled by ``iter_grains_folder``."""

    index: int  # 1-based
    total: int
    image: Path
    status: str  # "measured" or "failed"
    stones: int = 0
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class GrainSummary:
    results: tuple[ImageGrains, ...]
    failed: tuple[tuple[Path, str], ...]
    report: dict[str, Any]
    cancelled: bool = False


def _unique_stems(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    seen: dict[str, Path] = {}
    todo, clash = [], []
    for p in paths:
        if p.stem in seen:
            clash.append(
                (
                    p,
                    f"{p.name} has the same name as {seen[p.stem].name}; its outputs would overwrite them.",
                )
            )
        else:
            seen[p.stem] = p
            todo.append(p)
    return todo, clash


def iter_grains_folder(
    segmenter: Segmenter,
    input_dir: str | Path,
    output_dir: str | Path,
    options: GrainOptions | None = None,
    mm_per_px: float | None = None,
    scales: dict[str, float] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shard: Shard | None = None,
) -> Generator[GrainEvent, None, GrainSummary]:
    """Segment, split and measure every photo of ``input_dir``; write the instance masks and tables.

    Writes ``<stem>_instances.png`` (16-bit labels; ``<stem>_instances.tif``, 32-bit, past
    65535 stones; a mask over 50 MP is split window by window by ``tiled.py``, its labels a
    tiled ``<stem>_instances.tif``), ``<stem>_stones.csv``, ``<stem>_stones.geojson`` (each
    stone's outline with its CSV row), ``stones_pooled.csv`` and ``percentiles.json`` in ``output_dir``. The
    scale is ``mm_per_px`` for all photos, or per photo from ``scales`` (a photo missing
    from it fails, named); without either, each georeferenced GeoTIFF's own (projected CRS
    in metres, see ``geo.Georeference.mm_per_px``) -- every photo's or none's, since
    millimetres and pixels do not pool; else sizes are in pixels. Bad photos are reported
    and skipped; the pooled files cover the others.

    ``shard=(K, N)`` handles only shard K of N of the photos (see ``shard.py``); its pooled
    files are ``stones_pooled.shard-K-of-N.csv`` and ``percentiles.shard-K-of-N.json``, so
    array jobs writing to one folder never overwrite each other's.
    """
    plan = plan_grains_folder(input_dir, output_dir, options, mm_per_px, scales, shard)
    options, output_dir, total = plan.options, Path(output_dir), len(plan.paths)
    failed: list[tuple[Path, str]] = []
    results: list[ImageGrains] = []
    index = 0
    for p, message in plan.clash:
        index += 1
        failed.append((p, message))
        yield GrainEvent(index, total, p, "failed", message=message)
    cancelled = False
    for p in plan.todo:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        index += 1
        start = time.perf_counter()
        try:
            scale, source = plan.scale_of(p)
            result = grains_photo(
                segmenter, p, output_dir, options, scale, source, plan.georefs.get(p), should_stop
            )
            if result is None:  # stopped inside a window-by-window split
                cancelled = True
                break
        except (ImageReadError, StonesegError) as exc:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            failed.append((p, str(exc)))
            yield GrainEvent(
                index, total, p, "failed", message=str(exc), seconds=time.perf_counter() - start
            )
            if isinstance(exc, OutOfMemoryError):
                raise
            continue
        results.append(result)
        yield GrainEvent(
            index, total, p, "measured", len(result.stones), seconds=time.perf_counter() - start
        )
    report = write_pooled(output_dir, results, failed, options, shard)
    return GrainSummary(tuple(results), tuple(failed), report, cancelled)


@dataclass(frozen=True)
class GrainPlan:
    """A grains folder job, checked and decided before any photo is segmented."""

    options: GrainOptions
    paths: list[Path]  # this run's photos (its shard's), in the folder's sorted order
    todo: list[Path]
    clash: list[tuple[Path, str]]  # photos refused: their outputs would overwrite another's
    georefs: dict[Path, Georeference | None]  # the TIFFs' georeferences
    geo_scales: dict[Path, float]  # scales from georeferences (none given)
    mm_per_px: float | None
    scales: dict[str, float] | None

    def scale_of(self, p: Path) -> tuple[float | None, str | None]:
        """(mm per pixel or None, where it came from) of photo ``p``; DataError without one."""
        scale, source = self.mm_per_px, "given" if self.mm_per_px is not None else None
        if p in self.geo_scales:
            scale, source = self.geo_scales[p], "georeference"
        if self.scales is not None:
            source = "scale CSV"
            scale = self.scales.get(p.stem)
            if scale is None:
                raise DataError(
                    f"{p.name} has no row in the scale CSV; add 'image,mm_per_px' for it."
                )
        return scale, source


def plan_grains_folder(
    input_dir: str | Path,
    output_dir: str | Path,
    options: GrainOptions | None = None,
    mm_per_px: float | None = None,
    scales: dict[str, float] | None = None,
    shard: Shard | None = None,
) -> GrainPlan:
    """Check the scales and options, create ``output_dir``, and sort the photos (see
    ``iter_grains_folder``); a StonesegError for a run that cannot be pooled."""
    options = options or GrainOptions()
    if mm_per_px is not None and scales is not None:
        raise StonesegError("Give either one scale for every photo or a scale table, not both.")
    check_mm_per_px(mm_per_px)
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths = list_images(input_dir)
    if not paths:
        raise DataError(f"No photos in {input_dir} (looked for {', '.join(IMAGE_EXTENSIONS)}).")
    georefs = {p: georeference_or_none(p) for p in paths if is_tiff(p)}
    geo_scales = {} if mm_per_px is not None or scales is not None else _georef_scales(georefs)
    if geo_scales and len(geo_scales) < len(paths):
        missing = [p.name for p in paths if p not in geo_scales]
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        raise StonesegError(
            f"{len(geo_scales)} photos take their scale from their georeference but {shown} "
            "have none, and photos with and without a scale cannot be pooled: give the scale "
            "of every photo (a scale CSV), or measure them apart."
        )
    if options.min_size_mm is not None and mm_per_px is None and scales is None and not geo_scales:
        raise StonesegError(
            "A minimum size in mm needs a scale: give the millimetres per pixel or a scale CSV."
        )
    make_output_dir(output_dir)
    # stem clashes are judged on the whole folder (a clash across two shards would overwrite
    # outputs too); then each shard keeps its own photos of both lists
    todo, clash = _unique_stems(paths)
    if shard is not None:
        paths = take_shard(paths, shard)
        mine = set(paths)
        todo, clash = [p for p in todo if p in mine], [c for c in clash if c[0] in mine]
    return GrainPlan(options, paths, todo, clash, georefs, geo_scales, mm_per_px, scales)


def grains_photo(
    segmenter: Segmenter,
    p: Path,
    output_dir: Path,
    options: GrainOptions,
    scale: float | None,
    source: str | None,
    georef: Georeference | None,
    should_stop: Callable[[], bool] | None = None,
) -> ImageGrains | None:
    """One photo of a grains folder job: segment, split, measure, and write its
    ``<stem>_instances.png`` (a tiled ``.tif`` for a mask over 50 MP, split window by window),
    ``<stem>_stones.csv`` and ``<stem>_stones.geojson``. None: ``should_stop`` stopped a
    window-by-window split midway.

    A photo too large to segment whole (over 50 MP, ``large.needs_windows``) is segmented
    window by window into ``<stem>_mask.tif`` (a tiled 0/255 GeoTIFF, kept) and its stones
    split from that mask window by window (on the mask's shape alone: the probability of
    such a photo is never held whole)."""
    if large.needs_windows(p):
        mask_path = output_dir / f"{p.stem}_mask.tif"
        scales: list[float] = []
        status, message = large.segment_large_photo(
            segmenter, p, mask_path, should_stop, on_scale=scales.append
        )
        if status == "cancelled":
            return None
        if status != "written":
            raise StonesegError(message)
        big = tiled.grains_tiled(
            mask_path,
            output_dir,
            p.stem,
            mm_per_px=scale,
            options=options,
            georef=georef,
            scale_source=source,
            name=p.name,
            should_stop=should_stop,
            # the mask keeps its specks (made window by window); its stones do not
            min_stone_px=segmenter.speck_floor(scales[0]) if scales else 0.0,
        )
        return None if big.cancelled else big.grains
    image = read_image(p)
    pred = segmenter.predict(image, should_stop, mm_per_px=scale)
    del image
    if tiled.is_big(pred.mask.shape):  # split, measured and written window by window
        big = tiled.grains_tiled(
            pred.mask,
            output_dir,
            p.stem,
            probability=pred.probability,
            boundary=getattr(pred, "boundary", None),
            mm_per_px=scale,
            options=options,
            georef=georef,
            scale_source=source,
            name=p.name,
            window_px=tiled.DEFAULT_WINDOW_PX,
            should_stop=should_stop,
            min_stone_px=getattr(pred, "min_stone_px", 0.0),
        )
        return None if big.cancelled else big.grains
    labels, result = analyse_mask(
        pred.mask,
        pred.probability,
        scale,
        options,
        p.name,
        boundary=getattr(pred, "boundary", None),  # None: a 1-channel model
        min_stone_px=getattr(pred, "min_stone_px", 0.0),
    )
    write_instance_labels(output_dir / f"{p.stem}_instances.png", labels, georef)
    write_text(output_dir / f"{p.stem}_stones.csv", stones_csv([result], options))
    write_json(
        output_dir / f"{p.stem}_stones.geojson",
        stones_geojson(result, labels, options, georef, source),
    )
    return result


def write_pooled(
    output_dir: Path,
    results: Sequence[ImageGrains],
    failed: Sequence[tuple[Path, str]],
    options: GrainOptions,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """The pooled table and the percentiles report of a run (its shard's names with ``shard``)."""
    report = percentiles_report(list(results), options)
    report["failed"] = [{"image": p.name, "error": m} for p, m in failed]
    suffix = shard_suffix(shard)
    write_text(output_dir / f"stones_pooled{suffix}.csv", stones_csv(list(results), options))
    write_json(output_dir / f"percentiles{suffix}.json", report)
    return report


def _georef_scales(georefs: dict[Path, Georeference | None]) -> dict[Path, float]:
    """{photo: mm per pixel} of the georeferenced photos whose georeference gives one."""
    out = {}
    for p, georef in georefs.items():
        if georef is None:
            continue
        mm, note = georef.mm_per_px()
        log.info("%s: %s", p.name, note)
        if mm is not None:
            out[p] = mm
    return out


def iter_grains_masks(
    pairs: Sequence[tuple[Path, Path]],
    scales: dict[str, float | None] | None = None,
    options: GrainOptions | None = None,
    labels: dict[str, np.ndarray] | None = None,
    edits: dict[str, Sequence[dict]] | None = None,
) -> Generator[GrainEvent, None, GrainSummary]:
    """Split and measure the saved masks of a project's photos, and pool the percentiles.

    ``pairs`` are (photo, mask) paths; ``scales`` maps a photo's stem to its mm per pixel
    (every photo, or none: millimetres and pixels do not pool); ``labels`` gives stones
    already split (and perhaps cut or merged by hand) for some stems, which are then only
    measured. ``edits`` gives the hand cuts and merges of some stems (see ``replay_edits``),
    replayed on their automatic split. Nothing is written: the caller exports what it
    wants. A mask that cannot be read is reported and skipped.
    """
    options = options or GrainOptions()
    scales = scales or {}
    labels = labels or {}
    pairs = list(pairs)
    missing = [img.name for img, _ in pairs if scales.get(img.stem) is None]
    if missing and len(missing) < len(pairs):
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        raise StonesegError(
            f"Photos with and without a scale cannot be pooled; set the scale of: {shown}."
        )
    if missing and options.min_size_mm is not None:
        raise StonesegError(
            "A minimum size in millimetres needs a scale: set the scale of the photos, or give the minimum in pixels."
        )
    results: list[ImageGrains] = []
    failed: list[tuple[Path, str]] = []
    for index, (image, mask_path) in enumerate(pairs, start=1):
        start = time.perf_counter()
        scale = scales.get(image.stem)
        try:
            given = labels.get(image.stem)
            if given is None and edits and edits.get(image.stem):
                given, _ = analyse_mask(read_mask(mask_path), None, scale, options, image.name)
                replay_edits(given, edits[image.stem])
            if given is None:
                _, result = analyse_mask(read_mask(mask_path), None, scale, options, image.name)
            else:
                stones = measure_stones(
                    given, scale, options.exclude_edge, options.min_size_px, options.min_size_mm
                )
                result = ImageGrains(image.name, scale, tuple(stones))
        except StonesegError as exc:
            failed.append((image, str(exc)))
            yield GrainEvent(
                index,
                len(pairs),
                image,
                "failed",
                message=str(exc),
                seconds=time.perf_counter() - start,
            )
            continue
        results.append(result)
        yield GrainEvent(
            index,
            len(pairs),
            image,
            "measured",
            len(result.stones),
            seconds=time.perf_counter() - start,
        )
    report = percentiles_report(results, options)
    report["failed"] = [{"image": p.name, "error": m} for p, m in failed]
    return GrainSummary(tuple(results), tuple(failed), report)
