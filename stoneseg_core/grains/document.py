"""One photo's grain analysis, editable: the split the user may cut and merge, and its stones.

The worker job ``analyse_with_edits`` splits a mask and replays the user's stored cuts and
merges; ``GrainAnalysis`` holds the labels and their ``Stone`` measurements and takes new
edits with undo; ``describe_options`` says in words what a distribution was measured with.
No Qt here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.analyse import GrainOptions, ImageGrains, analyse_mask
from stoneseg_core.grains.edit import (
    cut_label,
    label_on_line,
    merge_labels,
    replay_edits,
    stone_point,
)
from stoneseg_core.grains.measure import Stone, measure_stones, with_scale_and_exclusions

UNDO_STEPS = 100  # cuts and merges one analysis can take back

Point = tuple[float, float]


def label_at(labels: np.ndarray, x: float, y: float) -> int:
    """The stone label under image point (x, y); 0 off the photo or on background."""
    col, row = math.floor(x), math.floor(y)
    h, w = labels.shape
    if not (0 <= row < h and 0 <= col < w):
        return 0
    return int(labels[row, col])


def mask_digest(mask: np.ndarray) -> str:
    """Names the mask an analysis split, so a replay can tell when it has changed."""
    return hashlib.sha1(np.ascontiguousarray(mask).tobytes()).hexdigest()


def analyse_with_edits(
    mask, probability, mm_per_px, options, name, boundary=None, edits=(), min_stone_px=0.0
):
    """Worker job: the automatic split, then the user's edits replayed and measured."""
    labels, grains = analyse_mask(
        mask, probability, mm_per_px, options, name, boundary=boundary, min_stone_px=min_stone_px
    )
    applied, failed = replay_edits(labels, edits) if edits else ([], [])
    if edits:
        stones = measure_stones(
            labels, mm_per_px, options.exclude_edge, options.min_size_px, options.min_size_mm
        )
        grains = ImageGrains(grains.name, grains.mm_per_px, tuple(stones))
    return labels, grains, applied, failed, mask_digest(mask)


@dataclass
class GrainAnalysis:
    """The stones of one photo: labels the user may cut and merge, and their measurements.

    No Qt. Edits change ``labels`` in place and measure again only the stones they touch.
    ``state_id`` is the mask state that was split (None when a prediction was), so the
    window can tell when the mask has been edited since.
    """

    image: Path
    labels: np.ndarray
    stones: list[Stone]
    mm_per_px: float | None
    options: GrainOptions
    source: str  # what was split, in words
    state_id: int | None = None
    edits: list[dict] = field(default_factory=list)  # the user's cuts and merges, in order
    digest: str = ""  # mask_digest of the mask that was split
    replay_note: str = ""  # what became of the stored edits when this analysis replayed them

    def __post_init__(self) -> None:
        self._index = {s.label: s for s in self.stones}
        # each step: (box, the labels there before, the stones before); bounded
        self._undo: list[tuple[tuple[int, int, int, int], np.ndarray, list[Stone]]] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) and bool(self.edits)

    def _remember(self, box: tuple[int, int, int, int] | None) -> None:
        if box is None:
            box = (0, 0, *self.labels.shape[:2])
        r0, c0, r1, c1 = (int(v) for v in box)
        r0, c0 = max(0, r0 - 2), max(0, c0 - 2)
        r1, c1 = min(self.labels.shape[0], r1 + 2), min(self.labels.shape[1], c1 + 2)
        self._undo.append(((r0, c0, r1, c1), self.labels[r0:r1, c0:c1].copy(), list(self.stones)))
        del self._undo[:-UNDO_STEPS]

    def undo(self) -> list[int]:
        """Take back the last cut or merge; returns the labels to redraw."""
        if not self.can_undo:
            raise StonesegError("No cut or merge to undo.")
        (r0, c0, r1, c1), before, stones = self._undo.pop()
        touched = set(np.unique(self.labels[r0:r1, c0:c1]).tolist()) | set(
            np.unique(before).tolist()
        )
        self.labels[r0:r1, c0:c1] = before
        self._set_stones(stones)
        self.edits.pop()
        return sorted(int(t) for t in touched if t)

    def stone(self, label: int) -> Stone | None:
        return self._index.get(label)

    def label_at(self, x: float, y: float) -> int:
        return label_at(self.labels, x, y)

    def result(self) -> ImageGrains:
        return ImageGrains(self.image.name, self.mm_per_px, tuple(self.stones))

    def restate(self, mm_per_px: float | None, options: GrainOptions) -> None:
        """New scale, exclusions or weighting: the pixels and the split stay as they are."""
        stones = with_scale_and_exclusions(
            self.stones, mm_per_px, options.exclude_edge, options.min_size_px, options.min_size_mm
        )
        self.mm_per_px = mm_per_px
        self.options = options.replace(
            min_separation_px=self.options.min_separation_px,
            neck_ratio=self.options.neck_ratio,
            use_probability=self.options.use_probability,
        )
        self._set_stones(stones)

    def split(self, p0: Point, p1: Point) -> list[int]:
        """Cut the stone the segment crosses; returns the labels of the pieces."""
        label = label_on_line(self.labels, p0, p1)
        if label == 0:
            raise StonesegError("The line crosses no stone: draw it across the stone to cut.")
        box = self._index[label].bbox if label in self._index else None
        self._remember(box)
        try:
            pieces = cut_label(self.labels, label, p0, p1)
        except StonesegError:
            self._undo.pop()
            raise
        self._remeasure(pieces, gone=(), box=box)  # the pieces lie in the stone's box
        self.edits.append({"op": "split", "p0": list(map(float, p0)), "p1": list(map(float, p1))})
        return pieces

    def merge(self, first: int, second: int) -> int:
        """Merge two touching stones; the lower number is kept. Returns it."""
        keep, gone = sorted((int(first), int(second)))
        boxes = [self._index[k].bbox for k in (keep, gone) if k in self._index]
        box = None
        if len(boxes) == 2:
            box = tuple(f(a, b) for f, a, b in zip((min, min, max, max), *boxes, strict=True))
        points = [list(stone_point(self.labels, keep)), list(stone_point(self.labels, gone))]
        self._remember(box)
        try:
            merge_labels(self.labels, keep, gone)
        except StonesegError:
            self._undo.pop()
            raise
        self._remeasure([keep], gone=[gone], box=box)
        self.edits.append({"op": "merge", "a": points[0], "b": points[1]})
        return keep

    def _remeasure(self, labels: list[int], gone, box=None) -> None:
        o = self.options
        fresh = measure_stones(
            self.labels,
            self.mm_per_px,
            o.exclude_edge,
            o.min_size_px,
            o.min_size_mm,
            only=labels,
            box=box,
        )
        dropped = set(labels) | set(gone)
        stones = [s for s in self.stones if s.label not in dropped] + fresh
        self._set_stones(sorted(stones, key=lambda s: s.label))

    def _set_stones(self, stones: list[Stone]) -> None:
        self.stones = stones
        self._index = {s.label: s for s in stones}


def describe_options(options: GrainOptions, scale: float | None | str) -> str:
    """The options behind a distribution, in words, for the plot and its PNG."""
    parts = ["size = b-axis"]
    if isinstance(scale, str):
        parts.append(scale)
    elif scale is None:
        parts.append("no scale (pixels)")
    else:
        parts.append(f"{scale:.6g} mm/px")
    parts.append("edge stones left out" if options.exclude_edge else "edge stones counted")
    if options.min_size_mm:
        parts.append(f"min. b-axis {options.min_size_mm:g} mm")
    elif options.min_size_px:
        parts.append(f"min. b-axis {options.min_size_px:g} px")
    else:
        parts.append("no minimum size")
    parts.append(f"separation {options.min_separation_px} px")
    return " · ".join(parts)
