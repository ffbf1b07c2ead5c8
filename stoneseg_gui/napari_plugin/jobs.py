"""The plugin's long work as generators for napari's thread workers: each yields its steps
(words for the status line) and returns its result, calling the core as the app does. No Qt.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import (
    GrainOptions,
    GrainSizeCurve,
    ImageGrains,
    analyse_mask,
    distribution_of,
    intervals_of,
    measure_stones,
)
from stoneseg_core.inference.segmenter import Prediction, Segmenter

log = logging.getLogger(__name__)

StopFlag = Callable[[], bool]
CANCELLED = "Cancelled."  # what the core's jobs raise when asked to stop


def keep_triton_out(maps: str | Path = "/proc/self/maps") -> bool:
    """Stop torch from loading Triton in a process that has loaded a system LLVM already.

    napari's canvas on Mesa's OpenGL (llvmpipe under Xvfb or in a VM; radeonsi) loads the
    system's libLLVM; PyTorch's wheels bring Triton, whose own LLVM then binds to that one's
    symbols as it loads and crashes the process (a segmentation fault in LLVM's static
    initialisers, seen when a model's first ONNX export imports ``torch._dynamo``). StoneSeg's
    inference never needs Triton (no ``torch.compile``), so where a libLLVM is mapped and
    Triton is not loaded yet, ``import triton`` is made to fail as if it were not installed.
    True when it did so."""
    if "triton" in sys.modules:
        return False
    try:
        loaded = "libLLVM" in Path(maps).read_text()
    except OSError:  # not Linux: no /proc
        return False
    if loaded:
        sys.modules["triton"] = None  # type: ignore[assignment]
        log.info("A system LLVM is loaded (OpenGL): Triton kept out of this process")
    return loaded


class SegmenterCache:
    """The last model loaded, kept for the next photo (loading one takes seconds)."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.segmenter: Segmenter | None = None

    def get(self, folder: Path) -> Segmenter:
        folder = Path(folder).resolve()
        if self.segmenter is None or self.folder != folder:
            self.segmenter, self.folder = Segmenter.load(folder), folder
        return self.segmenter


def segment_job(
    cache: SegmenterCache, model: Path, image: np.ndarray, should_stop: StopFlag
) -> Generator[str, None, Prediction]:
    """Load the model (or reuse it) and segment one photo: ``Segmenter.predict``."""
    yield f"Loading {Path(model).name}…"
    segmenter = cache.get(model)
    yield f"Segmenting {image.shape[1]}x{image.shape[0]} pixels…"
    return segmenter.predict(image, should_stop=should_stop)


@dataclass(frozen=True)
class StonesResult:
    labels: np.ndarray  # int32, 0 = ground, one id per stone
    grains: ImageGrains
    curve: GrainSizeCurve
    intervals: dict[float, tuple[float, float] | None]
    kept_ids: bool  # the labels are the layer's own (measured, not split)


def stones_job(
    mask: np.ndarray,
    prediction: Prediction | None,
    options: GrainOptions,
    mm_per_px: float | None,
    name: str,
    keep_ids: bool,
    should_stop: StopFlag,
) -> Generator[str, None, StonesResult]:
    """Split a mask into stones and measure them as the Grains panel does
    (``grains.analyse_mask``; with ``keep_ids`` the layer's own ids are the stones and are
    only measured), then the grain-size curve and its percentiles' bootstrap intervals."""
    if keep_ids:
        yield "Measuring the stones…"
        labels = mask.astype(np.int32, copy=False)
        stones = measure_stones(
            labels, mm_per_px, options.exclude_edge, options.min_size_px, options.min_size_mm
        )
        grains = ImageGrains(name, mm_per_px, tuple(stones))
    else:
        yield "Splitting into stones…"
        use = prediction is not None and prediction.mask.shape == mask.shape
        unedited = use and np.array_equal(prediction.mask > 0, mask > 0)
        labels, grains = analyse_mask(
            np.where(mask > 0, np.uint8(255), np.uint8(0)),
            prediction.probability if use else None,
            mm_per_px,
            options,
            name,
            boundary=prediction.boundary if use else None,
            # the speck floor is the model's: for its own mask, not one edited since
            min_stone_px=prediction.min_stone_px if unedited else 0.0,
        )
    if should_stop():
        raise StonesegError(CANCELLED)
    yield "Grain-size curve…"
    unit = "mm" if mm_per_px is not None else "px"
    curve = distribution_of(grains.stones, options.weighting, unit)
    intervals = intervals_of(grains.stones, options.weighting, options.percentiles)
    return StonesResult(labels, grains, curve, intervals, keep_ids)
