"""``stoneseg segment`` over a folder: plan the outputs, read photos ahead, segment each
(window by window above 50 MP, ``inference.large``), write masks (PNG, or GeoTIFF with the
photo's georeference) and report each photo as an event.

The Segmenter (``inference.segmenter``) does one photo; this module is the loop around it,
shared with the Ray engine (``jobs.ray_segment`` runs ``segment_photo`` on its rows).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stoneseg_core.errors import ImageReadError, OutOfMemoryError, StonesegError
from stoneseg_core.inference import large
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.inference.uncertainty import UncertaintyScore
from stoneseg_core.io.geo import Georeference, georeference_or_none, is_tiff, write_geotiff_mask
from stoneseg_core.io.images import (
    image_size,
    jpeg_reduction,
    list_images,
    make_output_dir,
    read_image,
    write_mask,
)
from stoneseg_core.io.raster_sources import photo_shape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentEvent:
    """One photo handled by ``iter_segment_folder``."""

    index: int  # 1-based
    total: int
    image: Path
    status: str  # "written", "skipped" or "failed"
    output: Path | None = None
    message: str = ""
    seconds: float = 0.0
    # a written photo's uncertainty, when the Segmenter measures it (measure_uncertainty;
    # not for a photo segmented window by window)
    uncertainty: UncertaintyScore | None = None


@dataclass(frozen=True)
class SegmentSummary:
    written: int
    skipped: int
    failed: list[tuple[Path, str]]
    cancelled: bool = False


def _read_for_scale(path: Path, long_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """(photo, its full (H, W)): a JPEG decoded as small as ``long_side`` allows (see
    ``jpeg_reduction``), anything else, or with ``long_side`` None, at full size; (None,
    (H, W)) for a photo segmented window by window (``large.needs_windows``)."""
    if large.needs_windows(path):
        return None, photo_shape(path)
    k = jpeg_reduction(path, long_side) if long_side else 1
    if k > 1:
        w, h = image_size(path)
        image = read_image(path, reduce=k)
        if image.shape[:2] == (-(-h // k), -(-w // k)):
            return image, (h, w)
        log.debug("%s: reduced decode gave %s, not 1/%d of %dx%d", path.name, image.shape, k, w, h)
    image = read_image(path)
    return image, image.shape[:2]


def _read_photo(path: Path, long_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """``_read_for_scale``, any failure raised as a StonesegError naming the photo."""
    try:
        return _read_for_scale(path, long_side)
    except StonesegError:
        raise
    except Exception as exc:
        raise ImageReadError(f"Cannot read image {path.name}: {exc}") from exc


def decode_long_side(segmenter: Segmenter) -> int | None:
    """The longer side JPEGs may be decoded down to for ``segmenter`` (None: full size)."""
    # reduced decode knows its size beforehand only under the long-side policy
    if segmenter.config.reduced_decode and segmenter.scale_policy.policy == "long-side":
        return segmenter.info.work_size
    return None


def photo_mask(
    segmenter: Segmenter,
    image: np.ndarray,
    size: tuple[int, int],
    georef: Georeference | None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """A folder job's mask of a decoded photo (full size ``size``), at the scale its
    georeference gives, if any."""
    mm_per_px = georef.mm_per_px()[0] if georef is not None else None
    return segmenter.predict_mask(image, should_stop, size, mm_per_px)


def write_segment_output(out: Path, mask: np.ndarray, georef: Georeference | None) -> None:
    """A folder job's mask, atomically: a PNG, or a GeoTIFF on ``georef``'s grid."""
    if georef is None:
        write_mask(out, mask)
    else:
        write_geotiff_mask(out, mask, georef)


def segment_photo(
    segmenter: Segmenter,
    path: Path,
    out: Path,
    georef: Georeference | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """One photo of a folder job, start to end: read, segment, write ``out`` atomically.

    The same steps as ``iter_segment_images`` runs (there pipelined: the next photo decoded
    and the last mask written on threads), so every engine writes the same masks. Raises a
    StonesegError naming the photo (OutOfMemoryError when even one tile does not fit).
    """
    image, size = _read_photo(path, decode_long_side(segmenter))
    if image is None:  # too large to hold whole: window by window (large.py)
        status, message = large.segment_large_photo(segmenter, path, out, should_stop)
        if status == "failed":
            raise StonesegError(message)
        return
    mask = photo_mask(segmenter, image, size, georef, should_stop)
    del image
    write_segment_output(out, mask, georef)


@dataclass(frozen=True)
class SegmentPlan:
    """What a folder job will do with each photo, decided before any is segmented."""

    outputs: dict[Path, Path]  # photo -> its mask's path
    georefs: dict[Path, Georeference | None]  # TIFFs (with ``geotiff_masks``) -> georeference
    todo: list[Path]
    skipped: list[Path]  # the output exists and is kept
    itself: list[Path]  # the output would replace the photo itself


def plan_segment_outputs(
    paths: Sequence[Path], output_dir: Path, overwrite: bool, geotiff_masks: bool
) -> SegmentPlan:
    """Create ``output_dir``; name each photo's mask, and sort the photos into to do, kept
    (an existing output, unless ``overwrite``) and refused (the mask would be the photo)."""
    make_output_dir(output_dir)
    # a georeferenced GeoTIFF's mask is a GeoTIFF on the same grid; any other photo's a PNG
    georefs = {p: georeference_or_none(p) for p in paths if geotiff_masks and is_tiff(p)}
    outputs = {
        p: output_dir / f"{p.stem}{'.png' if georefs.get(p) is None else '.tif'}" for p in paths
    }
    todo, skipped, itself = [], [], []
    for p in paths:
        if outputs[p].resolve() == p.resolve():
            itself.append(p)  # a GeoTIFF segmented into its own folder
        else:
            (skipped if outputs[p].exists() and not overwrite else todo).append(p)
    return SegmentPlan(outputs, georefs, todo, skipped, itself)


def iter_plan_events(
    plan: SegmentPlan, total: int, failed: list[tuple[Path, str]]
) -> Iterator[SegmentEvent]:
    """The events of the photos the plan does not segment (kept, refused: added to ``failed``)."""
    index = 0
    for p in plan.skipped:
        index += 1
        yield SegmentEvent(index, total, p, "skipped", plan.outputs[p], "output exists")
    for p in plan.itself:
        index += 1
        message = (
            f"its mask {plan.outputs[p].name} would replace the photo; choose another output folder"
        )
        failed.append((p, message))
        yield SegmentEvent(index, total, p, "failed", None, message)


def _prefetch(
    paths: list[Path], depth: int = 2, long_side: int | None = None
) -> Iterator[tuple[Path, tuple[np.ndarray, tuple[int, int]] | Exception]]:
    """Decode the next photos on a background thread while the model runs.

    ``long_side``: decode JPEGs at reduced size down to this longer side (the working scale).
    Yields (path, (photo, full (H, W))) or (path, the error).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader():
        for p in paths:
            if stop.is_set():
                return
            try:
                item = (p, _read_photo(p, long_side))
            except StonesegError as exc:
                item = (p, exc)
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue

    t = threading.Thread(target=reader, name="stoneseg-prefetch", daemon=True)
    t.start()
    try:
        for _ in paths:
            yield q.get()
    finally:
        stop.set()


def iter_segment_folder(
    segmenter: Segmenter,
    input_dir: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[SegmentEvent, None, SegmentSummary]:
    """Segment every photo in ``input_dir`` into ``output_dir/<stem>.png`` (0/255), or
    ``<stem>.tif`` with the georeference of a georeferenced GeoTIFF.

    Bad files are reported and skipped; existing outputs are kept unless ``overwrite``.
    """
    paths = list_images(Path(input_dir))
    return (
        yield from iter_segment_images(
            segmenter, paths, output_dir, overwrite, should_stop, geotiff_masks=True
        )
    )


def iter_segment_images(
    segmenter: Segmenter,
    images: Sequence[str | Path],
    output_dir: str | Path,
    overwrite: bool = True,
    should_stop: Callable[[], bool] | None = None,
    geotiff_masks: bool = False,
) -> Generator[SegmentEvent, None, SegmentSummary]:
    """Segment each photo of ``images`` into ``output_dir/<stem>.png`` (0/255); with
    ``geotiff_masks`` a georeferenced GeoTIFF into ``<stem>.tif``, a GeoTIFF with the
    photo's georeference (not for a project's ``masks/``, which are PNGs).

    The folder job's loop, for photos the caller picks (the window's "Predict all" segments
    the photos without a mask). An existing output is replaced only with ``overwrite``. A
    photo that cannot be read or segmented is reported (status "failed") and skipped; running
    out of memory ends the run after it is reported. ``should_stop`` is asked before each
    photo and between the tiles of one; when it says stop the run ends with
    ``cancelled=True``. Closing the generator stops it too.
    """
    paths = [Path(p) for p in images]
    plan = plan_segment_outputs(paths, Path(output_dir), overwrite, geotiff_masks)
    tally = _Tally(total=len(paths))
    yield from iter_plan_events(plan, tally.total, tally.failed)
    writes = _MaskWrites(tally)
    try:
        cancelled = yield from _iter_todo(segmenter, plan, tally, writes, should_stop)
        yield from writes.finish()
    finally:
        writes.shutdown()
    return SegmentSummary(
        written=tally.written, skipped=len(plan.skipped), failed=tally.failed, cancelled=cancelled
    )


@dataclass
class _Tally:
    """A folder job's count so far: its photos, the masks written and the failures."""

    total: int
    written: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def fail(self, index: int, path: Path, message: str, seconds: float = 0.0) -> SegmentEvent:
        """A photo's failure, counted: its event."""
        self.failed.append((path, message))
        return SegmentEvent(index, self.total, path, "failed", None, message, seconds)


class _MaskWrites:
    """The mask of one photo (a PNG, or a GeoTIFF) is encoded and written on a thread of its
    own while the network runs on the next; its event comes once the file is in place (or the
    write failed)."""

    def __init__(self, tally: _Tally):
        self.tally = tally
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stoneseg-writer")
        self.pending: tuple[int, Path, Path, Future, float, UncertaintyScore | None] | None = None

    def start(
        self,
        index: int,
        path: Path,
        out: Path,
        mask: np.ndarray,
        georef,
        start: float,
        uncertainty: UncertaintyScore | None = None,
    ) -> None:
        """Write ``mask`` to ``out`` on the thread; the write before it is finished already."""
        job = self.writer.submit(write_segment_output, out, mask, georef)
        self.pending = (index, path, out, job, start, uncertainty)

    def finish(self) -> Iterator[SegmentEvent]:
        """The event of the write in flight, once it is done; none when there is none."""
        if self.pending is None:
            return
        i, p, out, fut, start, uncertainty = self.pending
        try:
            fut.result()
        except StonesegError as exc:
            yield self.tally.fail(i, p, str(exc), time.perf_counter() - start)
        else:
            self.tally.written += 1
            seconds = time.perf_counter() - start
            yield SegmentEvent(i, self.tally.total, p, "written", out, "", seconds, uncertainty)
        self.pending = None

    def shutdown(self) -> None:
        """Wait for the write in flight, if any, and end the thread."""
        self.writer.shutdown(wait=True)


def _iter_todo(
    segmenter: Segmenter,
    plan: SegmentPlan,
    tally: _Tally,
    writes: _MaskWrites,
    should_stop: Callable[[], bool] | None,
) -> Generator[SegmentEvent, None, bool]:
    """Segment the plan's photos to do in turn, each decoded ahead on a thread (``_prefetch``),
    its mask written on ``writes``'s; True when ``should_stop`` stopped the run."""
    stopping = (lambda: False) if should_stop is None else should_stop
    index = len(plan.skipped) + len(plan.itself)
    long_side = decode_long_side(segmenter)
    for p, item in _prefetch(plan.todo, long_side=long_side):
        if stopping():
            return True
        index += 1
        out = plan.outputs[p]
        start = time.perf_counter()
        if isinstance(item, Exception):
            yield from writes.finish()
            yield tally.fail(index, p, str(item))
            continue
        if item[0] is None:  # too large to hold whole: window by window (large.py)
            yield from writes.finish()
            event = _segment_large(segmenter, p, out, index, tally, start, should_stop)
            if event is None:
                return True
            yield event
            continue
        try:
            image, size = item
            segmenter.last_uncertainty = None
            mask = photo_mask(segmenter, image, size, plan.georefs.get(p), should_stop)
            measured = segmenter.last_uncertainty
            del image, item
        except StonesegError as exc:
            if stopping():
                return True
            yield from writes.finish()
            yield tally.fail(index, p, str(exc), time.perf_counter() - start)
            if isinstance(exc, OutOfMemoryError):
                raise
            continue
        if writes.pending is not None:
            yield from writes.finish()
            if stopping():  # asked to stop on seeing that event: this mask is not written
                return True
        score = measured.score if measured is not None else None
        writes.start(index, p, out, mask, plan.georefs.get(p), start, score)
        del mask
    return False


def _segment_large(
    segmenter: Segmenter,
    path: Path,
    out: Path,
    index: int,
    tally: _Tally,
    start: float,
    should_stop: Callable[[], bool] | None,
) -> SegmentEvent | None:
    """A photo too large to hold whole, segmented window by window (``large.py``) and
    counted: its event, or None when ``should_stop`` stopped it."""
    status, message = large.segment_large_photo(segmenter, path, out, should_stop)
    if status == "cancelled":
        return None
    if status == "written":
        tally.written += 1
    else:
        tally.failed.append((path, message))
    done = out if status == "written" else None
    return SegmentEvent(
        index, tally.total, path, status, done, message, time.perf_counter() - start
    )
