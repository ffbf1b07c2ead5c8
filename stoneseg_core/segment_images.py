"""Segment a chosen list of photos: ``iter_segment_folder``'s loop for photos the caller picks.

The window's "Predict all unlabelled" segments the photos of a project that have no mask
yet, not a whole folder; it runs this generator. Events and summary are those of
``iter_segment_folder`` (``SegmentEvent``, ``SegmentSummary``). No Qt here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

from .errors import OutOfMemoryError, StonesegError
from .imageio import read_image, write_mask
from .predict import Segmenter, SegmentEvent, SegmentSummary


def iter_segment_images(
    segmenter: Segmenter,
    images: Sequence[str | Path],
    output_dir: str | Path,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[SegmentEvent, None, SegmentSummary]:
    """Segment each photo of ``images`` into ``output_dir/<stem>.png`` (0/255), replacing it.

    A photo that cannot be read or segmented is reported (status "failed") and skipped;
    running out of memory ends the run after it is reported. ``should_stop`` is asked
    before each photo and between the tiles of one; when it says stop the run ends with
    ``cancelled=True``. Closing the generator stops it too.
    """
    paths = [Path(p) for p in images]
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(
            f"Cannot create output folder {output_dir}: {exc.strerror or exc}"
        ) from exc
    total = len(paths)
    written, failed = 0, []
    cancelled = False
    for index, path in enumerate(paths, start=1):
        if should_stop is not None and should_stop():
            cancelled = True
            break
        out = output_dir / f"{path.stem}.png"
        start = time.perf_counter()
        try:
            mask = segmenter.predict(read_image(path), should_stop).mask
            write_mask(out, mask)
        except StonesegError as exc:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            failed.append((path, str(exc)))
            yield SegmentEvent(
                index, total, path, "failed", None, str(exc), time.perf_counter() - start
            )
            if isinstance(exc, OutOfMemoryError):
                raise
            continue
        written += 1
        yield SegmentEvent(index, total, path, "written", out, "", time.perf_counter() - start)
    return SegmentSummary(written=written, skipped=0, failed=failed, cancelled=cancelled)
