"""Grain analysis: split a stone mask into single stones, measure them, and summarise sizes.

The way the data travels: a 0/255 mask (and, when there is one, the model's probability)
-> ``split_stones`` (watershed on the distance transform) -> an int32 label image, 0 =
background -> ``measure_stones`` (scikit-image ``regionprops``) -> one frozen ``Stone`` per
label -> ``grain_size_distribution`` / ``percentiles`` (D10 ... D90, in mm and psi) ->
CSV and JSON exports. ``iter_grains_folder`` runs the whole chain over a folder as a
generator, for the ``stoneseg grains`` command and for the desktop app.

Conventions, stated once:

- The grain size of a stone is its **b-axis**: the minor axis (full length, not the
  semi-axis) of the ellipse with the same second moments as the stone. It is the
  geologist's standard intermediate axis as seen from above.
- psi = log2(size in mm) (Krumbein's phi is -psi). A psi *difference* does not depend on
  the scale, so errors in psi can be computed in pixels.
- D_p (``percentiles``): the cumulative curve passes through the points (size_k, fraction of
  all stones -- or of the total area -- whose size is <= size_k); D_p is read off that curve
  by linear interpolation, and is the smallest size when p lies below the first point.
  So for 100 stones of sizes 1, 2, ..., 100 by count, D_p = p exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import io
import json
import logging
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from scipy import ndimage as ndi

from .errors import DataError, ImageReadError, MaskError, OutOfMemoryError, StonesegError
from .imageio import (
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    describe_os_error,
    list_images,
    read_image,
    write_png,
)

if TYPE_CHECKING:  # predict imports torch; the measuring half of this module must not need it
    from .predict import Segmenter

log = logging.getLogger(__name__)

Weighting = Literal["count", "area"]
WEIGHTINGS: tuple[str, ...] = ("count", "area")
DEFAULT_PERCENTILES: tuple[float, ...] = (10, 16, 50, 84, 90)
MAX_INSTANCES_PNG = 65535  # a 16-bit PNG holds labels 1..65535

# A pixel is a unit square, so its own second moment (1/12 along each axis) is added to the
# moments of the pixel centres (as MATLAB's regionprops does). Without it a stone one pixel
# wide would have a b-axis of 0 and a psi of minus infinity.
_PIXEL_MOMENT = 1.0 / 12.0


# ------------------------------------------------------------------------------ splitting


def _as_foreground(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2:
        raise MaskError(f"A mask must be a 2-D image, got an array of shape {mask.shape}.")
    return mask > 0


def _pair_stats(
    pieces: np.ndarray, landscape: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Touching pairs (a < b) of pieces, the height of the pass between them, and the border length.

    The pass (saddle) is the highest point of the landscape along the shared border, taken
    as the lower of the two pixels on either side: it is the half-width of the neck.
    """
    los, his, vals = [], [], []
    for first, second in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        la, lb = pieces[first], pieces[second]
        sel = (la != lb) & (la > 0) & (lb > 0)
        a, b = la[sel], lb[sel]
        los.append(np.minimum(a, b))
        his.append(np.maximum(a, b))
        vals.append(np.minimum(landscape[first][sel], landscape[second][sel]))
    lo, hi, val = np.concatenate(los), np.concatenate(his), np.concatenate(vals)
    if lo.size == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float64), empty
    key = lo.astype(np.int64) * (int(pieces.max()) + 1) + hi
    order = np.argsort(key, kind="stable")
    key, val = key[order], val[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    saddle = np.maximum.reduceat(val, starts).astype(np.float64)
    length = np.diff(np.r_[starts, key.size])
    return lo[order][starts].astype(np.int64), hi[order][starts].astype(np.int64), saddle, length


class _Merger:
    """Union of watershed pieces, keeping for each the peak, the area and its neighbours."""

    def __init__(self, n: int, peaks: np.ndarray, areas: np.ndarray, pairs) -> None:
        self.parent = np.arange(n + 1)
        self.peak = peaks.astype(np.float64)
        self.area = areas.astype(np.int64)
        self.version = np.zeros(n + 1, np.int64)
        # adj[i][j] is the same two-item list [saddle, border length] as adj[j][i]
        self.adj: list[dict[int, list[float]]] = [{} for _ in range(n + 1)]
        for a, b, s, length in zip(*pairs, strict=True):
            entry = [float(s), float(length)]
            self.adj[int(a)][int(b)] = entry
            self.adj[int(b)][int(a)] = entry

    def ratio(self, i: int, j: int) -> float:
        low = min(self.peak[i], self.peak[j])
        return math.inf if low <= 0 else self.adj[i][j][0] / low

    def merge(self, keep: int, gone: int) -> None:
        self.parent[gone] = keep
        self.peak[keep] = max(self.peak[keep], self.peak[gone])
        self.area[keep] += self.area[gone]
        self.version[keep] += 1
        self.version[gone] += 1
        del self.adj[keep][gone]
        for k, (s, length) in self.adj[gone].items():
            if k == keep:
                continue
            del self.adj[k][gone]
            entry = self.adj[keep].get(k)
            if entry is None:
                entry = [s, length]
                self.adj[keep][k] = entry
                self.adj[k][keep] = entry
            else:
                entry[0] = max(entry[0], s)
                entry[1] += length
        self.adj[gone] = {}

    def merge_shallow_necks(self, neck_ratio: float) -> None:
        """Merge neighbours whose neck is at least ``neck_ratio`` of the narrower one's width, widest necks first."""
        heap = [
            (-self.ratio(i, j), i, j, 0, 0)
            for i in range(len(self.adj))
            for j in self.adj[i]
            if i < j
        ]
        heapq.heapify(heap)
        while heap:
            neg, i, j, vi, vj = heapq.heappop(heap)
            if -neg < neck_ratio:
                break
            if self.version[i] != vi or self.version[j] != vj:
                continue  # stale: one of the two has grown since
            keep, gone = (i, j) if self.area[i] >= self.area[j] else (j, i)
            self.merge(keep, gone)
            for k in self.adj[keep]:
                a, b = min(keep, k), max(keep, k)
                heapq.heappush(
                    heap, (-self.ratio(a, b), a, b, int(self.version[a]), int(self.version[b]))
                )

    def absorb_fragments(self, min_area: int) -> None:
        """Give each piece smaller than ``min_area`` to the neighbour it shares the longest border with."""
        if min_area <= 0:
            return
        heap = [(int(a), i) for i, a in enumerate(self.area) if i and a < min_area]
        heapq.heapify(heap)
        while heap:
            area, i = heapq.heappop(heap)
            if self.parent[i] != i or not self.adj[i]:
                continue  # already merged, or a lone speck: a stone of its own
            if area != self.area[i]:
                if self.area[i] < min_area:
                    heapq.heappush(heap, (int(self.area[i]), i))  # grew meanwhile: look again later
                continue
            j = max(self.adj[i], key=lambda k: (self.adj[i][k][1], self.area[k]))
            self.merge(j, i)
            if self.area[j] < min_area:
                heapq.heappush(heap, (int(self.area[j]), j))

    def lookup(self) -> np.ndarray:
        lut = self.parent.copy()
        for i in range(len(lut)):
            root = i
            while lut[root] != root:
                root = lut[root]
            lut[i] = root
        return lut


def _unit_map(values, fg: np.ndarray, what: str, nan: float) -> np.ndarray:
    """A per-pixel map in [0, 1] of the mask's size (NaN read as ``nan``), or a clear error."""
    a = np.asarray(values, dtype=np.float32)
    if a.shape != fg.shape:
        size = f"{a.shape[1]}x{a.shape[0]}" if a.ndim > 1 else f"{a.size}"
        raise StonesegError(
            f"The {what} map is {size} pixels but the mask is "
            f"{fg.shape[1]}x{fg.shape[0]}: they must come from the same photo."
        )
    return np.clip(np.nan_to_num(a, nan=nan), 0.0, 1.0)


def split_stones(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    min_separation_px: int = 5,
    neck_ratio: float = 0.9,
    min_fragment_px: int | None = None,
    boundary: np.ndarray | None = None,
    boundary_threshold: float = 0.5,
    boundary_split: Literal["seams", "cores"] = "seams",
) -> np.ndarray:
    """Split a stone mask into single stones; returns int32 labels 1..N, 0 = background.

    ``boundary``: the stone-boundary probability of a model trained with the
    "mask+boundary" target. With ``boundary_split="seams"`` (the default) the split below
    runs on the distance transform x probability x (1 - boundary): the model's boundaries
    cut where the mask's shape has no neck (overlapping stones), and the shape still cuts
    where the model missed a boundary. ``"cores"`` splits on the boundary map alone (see
    ``_split_on_boundary``; ``boundary_threshold`` applies to it only). On synthetic piles
    "seams" was as good as "cores" when the seams were visible and far better when they
    were faint (tests/benchmarks/bench_boundary.py). Without ``boundary``, as follows.

    Why each step:

    - The distance transform peaks once in the middle of every stone and dips where two
      stones touch, so watershed from its peaks cuts at the necks. When the model's
      ``probability`` is given, the distance is multiplied by it (lightly smoothed): the
      model is less sure on the seam between two stones, which deepens the dip there. A
      model whose probability is blotchy inside stones over-splits them this way; pass
      ``probability=None`` to split on the mask's shape alone.
    - Seeds are ``peak_local_max`` with ``min_distance = min_separation_px``: two stone
      centres closer than that are taken as one stone. Raise it when stones are over-split,
      lower it when small touching stones are merged.
    - A digitised elongated stone has a long flat ridge with several tiny peaks on it; two
      neighbouring pieces are merged back when the neck between them is at least
      ``neck_ratio`` of the narrower piece's width (1.0 merges only pieces of one flat
      ridge; 0.8 also merges a peanut whose waist is 80 % of its lobes' width). Without
      this step 18 % of lone ellipses of aspect 1-3 were cut in two; with 0.9, none (see
      tests/benchmarks/bench_grains.py for how the default was chosen).
    - Pieces smaller than ``min_fragment_px`` (default: a disc of diameter
      ``min_separation_px``) that touch another piece join the one they share the longest
      border with. No foreground pixel is ever dropped: ``labels > 0`` equals the mask, so
      the user's exclusion rules (edge, minimum size) stay the only filter, stated in
      every export.
    """
    fg = _as_foreground(mask)
    if min_separation_px < 1:
        raise StonesegError(
            f"The minimum separation between stones must be at least 1 pixel, got {min_separation_px}."
        )
    if not 0 < neck_ratio <= 1:
        raise StonesegError(f"The neck ratio must be in (0, 1], got {neck_ratio}.")
    labels = np.zeros(fg.shape, np.int32)
    if not fg.any():
        return labels
    if min_fragment_px is None:
        min_fragment_px = int(round(math.pi * (min_separation_px / 2.0) ** 2))
    if boundary is not None:
        if boundary_split not in ("seams", "cores"):
            raise StonesegError(
                f"The boundary split must be 'seams' or 'cores', got {boundary_split!r}."
            )
        if boundary_split == "cores":
            return _split_on_boundary(fg, boundary, boundary_threshold, int(min_fragment_px))
    landscape = ndi.distance_transform_edt(fg).astype(np.float32)
    weight = None
    if probability is not None:
        weight = _unit_map(probability, fg, "probability", nan=0.0)
    if boundary is not None:
        inside = 1.0 - _unit_map(boundary, fg, "boundary", nan=1.0)
        weight = inside if weight is None else weight * inside
    if weight is not None:
        # smoothed over ~1 pixel: a seam is a line a few pixels wide, speckle is not
        landscape *= ndi.gaussian_filter(weight, 1.0)

    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    components, n_components = ndi.label(fg, structure=np.ones((3, 3), bool))
    peaks = peak_local_max(
        landscape, min_distance=int(min_separation_px), labels=components, exclude_border=False
    )
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    # a component without a seed (all its pixels had probability 0) is one stone
    seeded = np.zeros(n_components + 1, bool)
    seeded[components[tuple(peaks.T)]] = True
    unseeded = np.flatnonzero(~seeded[1:]) + 1
    if unseeded.size:
        ids, first = np.unique(components.ravel(), return_index=True)
        at = first[np.isin(ids, unseeded)]
        markers.ravel()[at] = len(peaks) + 1 + np.arange(at.size, dtype=np.int32)
    # 8-connected like the components, so a diagonal-only neighbour is never left unlabelled
    pieces = watershed(-landscape, markers, mask=fg, connectivity=2).astype(np.int32)
    n = int(pieces.max())
    if n <= 1:
        return pieces

    index = np.arange(1, n + 1)
    piece_peaks = np.r_[0.0, ndi.maximum(landscape, pieces, index)]
    areas = np.bincount(pieces.ravel(), minlength=n + 1)
    merger = _Merger(n, piece_peaks, areas, _pair_stats(pieces, landscape))
    merger.merge_shallow_necks(neck_ratio)
    merger.absorb_fragments(int(min_fragment_px))
    return _reading_order(merger.lookup()[pieces], n)


def _reading_order(merged: np.ndarray, n: int) -> np.ndarray:
    """Number the stones 1..N in reading order (by their first pixel), so a table row is easy to find."""
    ids, first = np.unique(merged, return_index=True)
    ids, first = ids[ids > 0], first[ids > 0]
    relabel = np.zeros(n + 1, np.int32)
    relabel[ids[np.argsort(first)]] = np.arange(1, ids.size + 1, dtype=np.int32)
    return relabel[merged]


def _split_on_boundary(
    fg: np.ndarray, boundary: np.ndarray, threshold: float, min_fragment_px: int
) -> np.ndarray:
    """Split with the model's boundary probability alone (``boundary_split="cores"``).

    - Cores: the stone pixels the model does not call boundary (``boundary < threshold``);
      each 8-connected core is one stone's seed. Where two stones overlap or press
      together there is no neck in the mask's shape, but there is a boundary band between
      them, so their cores are apart. Cores smaller than a quarter of ``min_fragment_px``
      are speckle and seed nothing.
    - Watershed over the boundary probability, inside the mask, grows the cores out to
      the boundary ridges; a piece of the mask with no core is one stone.
    - Pieces smaller than ``min_fragment_px`` join the neighbour they share the longest
      border with, as in the distance-transform split. Neck merging is not used: a wide
      "neck" is exactly what two overlapping stones have. ``labels > 0`` equals the mask.
    """
    b = np.asarray(boundary, dtype=np.float32)
    if b.shape != fg.shape:
        raise StonesegError(
            f"The boundary map is {b.shape[1] if b.ndim > 1 else b.size}x{b.shape[0]} pixels "
            f"but the mask is {fg.shape[1]}x{fg.shape[0]}: they must come from the same photo."
        )
    if not 0 < threshold < 1:
        raise StonesegError(f"The boundary threshold must be in (0, 1), got {threshold}.")
    b = np.clip(np.nan_to_num(b, nan=1.0), 0.0, 1.0)
    eight = np.ones((3, 3), bool)
    cores, n_cores = ndi.label(fg & (b < threshold), structure=eight)
    if n_cores:
        core_area = np.bincount(cores.ravel(), minlength=n_cores + 1)
        keep = core_area >= max(1, min_fragment_px // 4)
        keep[0] = False
        lut = np.zeros(n_cores + 1, np.int32)
        lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        cores = lut[cores]
    markers = cores.astype(np.int32)
    n_markers = int(markers.max())
    # a piece of the mask without a core (all boundary, or only speckle) is one stone
    components, n_components = ndi.label(fg, structure=eight)
    seeded = np.zeros(n_components + 1, bool)
    seeded[components[markers > 0]] = True
    unseeded = np.flatnonzero(~seeded[1:]) + 1
    if unseeded.size:
        ids, first = np.unique(components.ravel(), return_index=True)
        at = first[np.isin(ids, unseeded)]
        markers.ravel()[at] = n_markers + 1 + np.arange(at.size, dtype=np.int32)
    from skimage.segmentation import watershed

    pieces = watershed(b, markers, mask=fg, connectivity=2).astype(np.int32)
    n = int(pieces.max())
    if n <= 1:
        return pieces
    landscape = ndi.distance_transform_edt(fg).astype(np.float32)
    index = np.arange(1, n + 1)
    piece_peaks = np.r_[0.0, ndi.maximum(landscape, pieces, index)]
    areas = np.bincount(pieces.ravel(), minlength=n + 1)
    merger = _Merger(n, piece_peaks, areas, _pair_stats(pieces, landscape))
    merger.absorb_fragments(int(min_fragment_px))
    return _reading_order(merger.lookup()[pieces], n)


# ------------------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class Stone:
    """One stone of a label image. Lengths in pixels; the ``_mm`` twins are None without a scale.

    ``a_axis``/``b_axis`` are the full major/minor axes of the ellipse with the stone's
    second moments; ``perimeter`` is the Crofton estimate (scikit-image's plain perimeter
    overstates a digitised circle by about 5 %, making a disc's circularity 0.91).
    ``centroid_x``/``centroid_y`` are column/row in pixels; ``bbox`` is (row0, col0, row1,
    col1), end exclusive.
    """

    label: int
    area_px: int
    equivalent_diameter_px: float
    a_axis_px: float
    b_axis_px: float
    perimeter_px: float
    circularity: float
    centroid_x: float
    centroid_y: float
    bbox: tuple[int, int, int, int]
    touches_edge: bool
    mm_per_px: float | None = None
    excluded: bool = False
    exclusion_reason: str = ""

    def _mm(self, px: float) -> float | None:
        return None if self.mm_per_px is None else px * self.mm_per_px

    @property
    def area_mm2(self) -> float | None:
        return None if self.mm_per_px is None else self.area_px * self.mm_per_px**2

    @property
    def equivalent_diameter_mm(self) -> float | None:
        return self._mm(self.equivalent_diameter_px)

    @property
    def a_axis_mm(self) -> float | None:
        return self._mm(self.a_axis_px)

    @property
    def b_axis_mm(self) -> float | None:
        return self._mm(self.b_axis_px)

    @property
    def perimeter_mm(self) -> float | None:
        return self._mm(self.perimeter_px)

    @property
    def b_axis_psi(self) -> float | None:
        mm = self.b_axis_mm
        return None if mm is None else psi(mm)

    @property
    def centroid(self) -> tuple[float, float]:
        """(x, y) in pixels: column, row."""
        return (self.centroid_x, self.centroid_y)

    def to_dict(self) -> dict[str, Any]:
        """Every field and every millimetre twin, for a table view or JSON."""
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        for name in (
            "area_mm2",
            "equivalent_diameter_mm",
            "a_axis_mm",
            "b_axis_mm",
            "perimeter_mm",
            "b_axis_psi",
        ):
            d[name] = getattr(self, name)
        return d

    @property
    def size(self) -> float:
        """The grain size used for distributions: b-axis in mm with a scale, else in pixels."""
        return self.b_axis_px if self.mm_per_px is None else self.b_axis_px * self.mm_per_px

    @property
    def area(self) -> float:
        """Area in the same unit family as ``size`` (mm² or px²): the weight for by='area'."""
        return float(self.area_px) if self.mm_per_px is None else self.area_px * self.mm_per_px**2


def _check_scale(mm_per_px: float | None) -> None:
    if mm_per_px is not None and not (math.isfinite(mm_per_px) and mm_per_px > 0):
        raise StonesegError(
            f"The scale must be a positive number of millimetres per pixel, got {mm_per_px}."
        )


def _exclusion_reasons(
    b_axis_px: float,
    touches_edge: bool,
    mm_per_px: float | None,
    exclude_edge: bool,
    min_size_px: float,
    min_size_mm: float | None,
) -> str:
    reasons = []
    if exclude_edge and touches_edge:
        reasons.append("cut by the image edge")
    if min_size_px > 0 and b_axis_px < min_size_px:
        reasons.append(f"b-axis below {min_size_px:g} px")
    if min_size_mm is not None and mm_per_px is not None and b_axis_px * mm_per_px < min_size_mm:
        reasons.append(f"b-axis below {min_size_mm:g} mm")
    return "; ".join(reasons)


def _check_min_size_scale(mm_per_px: float | None, min_size_mm: float | None) -> None:
    if min_size_mm is not None and mm_per_px is None:
        raise StonesegError(
            "A minimum size in millimetres needs a scale: give the millimetres per pixel, or set the minimum in pixels."
        )


def measure_stones(
    labels: np.ndarray,
    mm_per_px: float | None = None,
    exclude_edge: bool = False,
    min_size_px: float = 0.0,
    min_size_mm: float | None = None,
    only: Iterable[int] | None = None,
    box: tuple[int, int, int, int] | None = None,
) -> list[Stone]:
    """Measure every stone of a label image (0 = background), in label order.

    Excluded stones are kept in the list, flagged with the reason, so an export can show
    what was left out and why. ``min_size_px``/``min_size_mm`` apply to the b-axis, the
    same size the distribution is built from; a stone shorter than either is excluded.
    ``only`` measures just those labels (after an edit cuts or merges a few stones),
    looking at the smallest box around them instead of the whole photo; ``box`` (row0,
    col0, row1, col1, end exclusive), when the caller knows one that holds them all,
    spares even the search for that box.
    """
    from skimage.measure import regionprops

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise StonesegError(f"A label image must be 2-D, got shape {labels.shape}.")
    if labels.dtype.kind not in "iub":
        raise StonesegError(f"A label image must hold integers, got {labels.dtype}.")
    _check_scale(mm_per_px)
    _check_min_size_scale(mm_per_px, min_size_mm)
    h, w = labels.shape
    row0 = col0 = 0
    region = labels
    if only is not None:
        wanted = np.array(sorted({int(v) for v in only if int(v) > 0}), dtype=np.int64)
        r0, c0, r1, c1 = (0, 0, h, w) if box is None else box
        r0, c0, r1, c1 = max(0, r0), max(0, c0), min(h, r1), min(w, c1)
        window = labels[r0:r1, c0:c1]
        chosen = np.isin(window, wanted) if wanted.size else np.zeros(window.shape, bool)
        rows, cols = np.flatnonzero(chosen.any(axis=1)), np.flatnonzero(chosen.any(axis=0))
        if rows.size == 0:
            return []
        row0, col0 = r0 + int(rows[0]), c0 + int(cols[0])
        inner = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        region = np.where(chosen[inner], window[inner], 0)
    stones = []
    for p in regionprops(region.astype(np.int32, copy=False)):
        area = int(p.num_pixels)
        ev = p.inertia_tensor_eigvals
        a_axis = 4.0 * math.sqrt(max(ev[0], 0.0) + _PIXEL_MOMENT)
        b_axis = 4.0 * math.sqrt(max(ev[-1], 0.0) + _PIXEL_MOMENT)
        perimeter = float(p.perimeter_crofton)
        circularity = min(1.0, 4.0 * math.pi * area / perimeter**2) if perimeter > 0 else 1.0
        r0, c0, r1, c1 = (int(v) for v in p.bbox)
        r0, r1, c0, c1 = r0 + row0, r1 + row0, c0 + col0, c1 + col0
        touches = r0 == 0 or c0 == 0 or r1 == h or c1 == w
        reason = _exclusion_reasons(
            b_axis, touches, mm_per_px, exclude_edge, min_size_px, min_size_mm
        )
        cy, cx = p.centroid
        stones.append(
            Stone(
                label=int(p.label),
                area_px=area,
                equivalent_diameter_px=math.sqrt(4.0 * area / math.pi),
                a_axis_px=a_axis,
                b_axis_px=b_axis,
                perimeter_px=perimeter,
                circularity=circularity,
                centroid_x=float(cx) + col0,
                centroid_y=float(cy) + row0,
                bbox=(r0, c0, r1, c1),
                touches_edge=touches,
                mm_per_px=mm_per_px,
                excluded=bool(reason),
                exclusion_reason=reason,
            )
        )
    return stones


def with_scale_and_exclusions(
    stones: Iterable[Stone],
    mm_per_px: float | None,
    exclude_edge: bool = False,
    min_size_px: float = 0.0,
    min_size_mm: float | None = None,
) -> list[Stone]:
    """The same stones at another scale or under other exclusion rules, without measuring again.

    What a window calls when the user types a new scale or ticks "exclude edge": the pixel
    measurements do not change, only the millimetre twins and the exclusion flags.
    """
    _check_scale(mm_per_px)
    _check_min_size_scale(mm_per_px, min_size_mm)
    out = []
    for s in stones:
        reason = _exclusion_reasons(
            s.b_axis_px, s.touches_edge, mm_per_px, exclude_edge, min_size_px, min_size_mm
        )
        out.append(
            dataclasses.replace(
                s, mm_per_px=mm_per_px, excluded=bool(reason), exclusion_reason=reason
            )
        )
    return out


# ---------------------------------------------------------------------------- editing labels


def _pixel(point: tuple[float, float]) -> tuple[int, int]:
    """(x, y) in image coordinates -> (column, row) of the pixel it falls in."""
    x, y = point
    if not (math.isfinite(x) and math.isfinite(y)):
        raise StonesegError(f"A point must have finite coordinates, got {point}.")
    return int(math.floor(x)), int(math.floor(y))


def _label_box(labels: np.ndarray, label: int, pad: int = 0) -> tuple[slice, slice]:
    rows = np.flatnonzero((labels == label).any(axis=1))
    if rows.size == 0:
        raise StonesegError(f"There is no stone number {label}.")
    cols = np.flatnonzero((labels[rows[0] : rows[-1] + 1] == label).any(axis=0))
    h, w = labels.shape
    return (
        slice(max(0, int(rows[0]) - pad), min(h, int(rows[-1]) + 1 + pad)),
        slice(max(0, int(cols[0]) - pad), min(w, int(cols[-1]) + 1 + pad)),
    )


def label_on_line(labels: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> int:
    """The stone a segment (x, y points) runs over most; 0 when it crosses none."""
    from skimage.draw import line

    labels = np.asarray(labels)
    (c0, r0), (c1, r1) = _pixel(p0), _pixel(p1)
    rr, cc = line(r0, c0, r1, c1)
    h, w = labels.shape
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    values = labels[rr[inside], cc[inside]]
    values = values[values > 0]
    if values.size == 0:
        return 0
    ids, counts = np.unique(values, return_counts=True)
    return int(ids[np.argmax(counts)])


def cut_label(
    labels: np.ndarray,
    label: int,
    p0: tuple[float, float],
    p1: tuple[float, float],
    width: int = 1,
    min_piece_px: int = 4,
) -> list[int]:
    """Cut stone ``label`` along the segment p0-p1 (x, y in pixels), **in place**.

    Returns the labels of the pieces, largest first: it keeps ``label``, the others get
    new numbers above the largest label in use. The segment is drawn 4-connected, which is
    what separates 8-connected pieces; its pixels, and slivers smaller than
    ``min_piece_px`` that a cut grazing the outline chips off, then join the nearest
    piece, so ``labels > 0`` does not change (no stone pixel is dropped). Raises when the
    segment does not cut the stone in two: it must cross it from background to background.
    """
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise StonesegError("Stones can only be cut in a 2-D integer label image.")
    if width < 1:
        raise StonesegError(f"The width of a cut must be at least 1 pixel, got {width}.")
    box = _label_box(labels, label)
    sub = labels[box]
    stone = sub == label
    (c0, r0), (c1, r1) = _pixel(p0), _pixel(p1)
    line_mask = np.zeros(stone.shape, np.uint8)
    off_r, off_c = box[0].start, box[1].start
    cv2.line(
        line_mask, (c0 - off_c, r0 - off_r), (c1 - off_c, r1 - off_r), 1, int(width), cv2.LINE_4
    )
    pieces, n = ndi.label(stone & (line_mask == 0), structure=np.ones((3, 3), bool))
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    sizes[0] = 0
    kept = [int(i) for i in np.argsort(-sizes, kind="stable") if sizes[i] >= max(1, min_piece_px)]
    if len(kept) < 2:
        raise StonesegError(
            f"The line does not cut stone {label} in two: draw it right across the stone, "
            "from the background on one side to the background on the other."
        )
    top = int(labels.max())
    new_ids = [int(label)] + list(range(top + 1, top + len(kept)))
    out = np.zeros(stone.shape, np.int32)
    for piece, new_id in zip(kept, new_ids, strict=True):
        out[pieces == piece] = new_id
    loose = stone & (out == 0)
    if loose.any():
        _, (ri, ci) = ndi.distance_transform_edt(out == 0, return_indices=True)
        out[loose] = out[ri[loose], ci[loose]]
    sub[stone] = out[stone]
    return new_ids


def merge_labels(labels: np.ndarray, keep: int, other: int) -> None:
    """Make stone ``other`` part of stone ``keep``, **in place**; they must touch."""
    if keep == other:
        raise StonesegError("Choose two different stones to merge.")
    if keep <= 0 or other <= 0:
        raise StonesegError("Only stones can be merged, not the background.")
    box = _label_box(labels, other, pad=1)
    _label_box(labels, keep)  # raises when there is no such stone
    sub = labels[box]
    gone = sub == other
    near = ndi.binary_dilation(gone, structure=np.ones((3, 3), bool))
    if not np.any(sub[near] == keep):
        raise StonesegError(
            f"Stones {keep} and {other} do not touch; only neighbouring stones can be merged."
        )
    sub[gone] = keep


# ---------------------------------------------------------------------- size distribution


def psi(mm: float | np.ndarray) -> float | np.ndarray:
    """psi = log2(size in mm): 1 mm -> 0, 64 mm -> 6. Krumbein's phi is its negative."""
    if np.isscalar(mm):
        if not mm > 0:
            raise StonesegError(f"psi needs a positive size in mm, got {mm}.")
        return math.log2(mm)
    arr = np.asarray(mm, dtype=np.float64)
    if np.any(arr <= 0):
        raise StonesegError("psi needs positive sizes in mm.")
    return np.log2(arr)


@dataclass(frozen=True, eq=False)
class GrainSizeCurve:
    """Cumulative grain-size curve: ``fraction_finer[k]`` of the stones (or of their area) have size <= ``sizes[k]``.

    ``sizes`` are the distinct sizes, increasing; the curve is what a plot draws (x = size,
    y = 100 * fraction_finer) and what ``percentile`` interpolates.
    """

    sizes: np.ndarray
    fraction_finer: np.ndarray
    by: str
    n_stones: int
    unit: str = "mm"

    def percentile(self, p: float) -> float | None:
        """D_p: the size at which the curve reaches p %; None for an empty curve."""
        if not 0 <= p <= 100:
            raise StonesegError(f"A percentile must be between 0 and 100, got {p}.")
        if self.sizes.size == 0:
            return None
        return float(np.interp(p / 100.0, self.fraction_finer, self.sizes))

    def percentiles(self, ps: Sequence[float] = DEFAULT_PERCENTILES) -> dict[float, float | None]:
        return {p: self.percentile(p) for p in ps}


def _check_by(by: str) -> None:
    if by not in WEIGHTINGS:
        raise StonesegError(f"Weighting must be 'count' or 'area', got {by!r}.")


def grain_size_distribution(
    sizes: Sequence[float] | np.ndarray,
    by: Weighting = "count",
    areas: Sequence[float] | np.ndarray | None = None,
    unit: str = "mm",
) -> GrainSizeCurve:
    """Cumulative curve of ``sizes``, each stone weighing 1 (by='count') or its area (by='area').

    By area, a large stone counts as much as the many small ones covering the same
    ground, which is what a photo sieve (areal sampling) measures; by count matches a
    Wolman pebble count. The definition of the curve is in the module docstring.
    """
    _check_by(by)
    x = np.asarray(sizes, dtype=np.float64).ravel()
    if by == "count":
        wts = np.ones_like(x)
    else:
        if areas is None:
            raise StonesegError("An area-weighted distribution needs the area of every stone.")
        wts = np.asarray(areas, dtype=np.float64).ravel()
        if wts.shape != x.shape:
            raise StonesegError(f"Got {x.size} sizes but {wts.size} areas.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(wts))):
        raise StonesegError("Grain sizes and areas must be finite numbers.")
    if np.any(wts < 0):
        raise StonesegError("Stone areas cannot be negative.")
    keep = wts > 0
    x, wts = x[keep], wts[keep]
    if x.size == 0:
        return GrainSizeCurve(np.empty(0), np.empty(0), by, int(keep.size), unit)
    uniq, inverse = np.unique(x, return_inverse=True)
    per_size = np.bincount(inverse, weights=wts, minlength=uniq.size)
    cum = np.cumsum(per_size)
    return GrainSizeCurve(uniq, cum / cum[-1], by, int(keep.size), unit)


def percentiles(
    sizes: Sequence[float] | np.ndarray,
    by: Weighting = "count",
    areas: Sequence[float] | np.ndarray | None = None,
    ps: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[float, float | None]:
    """{p: D_p} for the given sizes; see the module docstring for the exact definition."""
    return grain_size_distribution(sizes, by, areas).percentiles(ps)


def included(stones: Iterable[Stone]) -> list[Stone]:
    return [s for s in stones if not s.excluded]


def distribution_of(
    stones: Iterable[Stone], by: Weighting = "count", unit: str | None = None
) -> GrainSizeCurve:
    """Curve of the stones that are not excluded, by their b-axis.

    The unit is mm when the stones have a scale, px when none has; ``unit`` sets it for a
    photo whose stones are all excluded (or that has none), so its table keys stay the same.
    """
    stones = list(stones)
    scaled = [s.mm_per_px is not None for s in stones]
    if any(scaled) and not all(scaled):
        raise StonesegError(
            "Cannot pool stones measured in millimetres with stones measured only in pixels: "
            "give every photo a scale, or none."
        )
    if unit is None:
        unit = "mm" if stones and all(scaled) else "px"
    elif stones and unit != ("mm" if all(scaled) else "px"):
        raise StonesegError(f"These stones are not measured in {unit}.")
    kept = included(stones)
    return grain_size_distribution([s.size for s in kept], by, [s.area for s in kept], unit)


def _percentile_block(curve: GrainSizeCurve, ps: Sequence[float]) -> dict[str, Any]:
    block: dict[str, Any] = {"n_stones": curve.n_stones, "unit": curve.unit}
    for p, v in curve.percentiles(ps).items():
        name = f"D{p:g}"
        block[f"{name}_{curve.unit}"] = v
        if curve.unit == "mm":
            block[f"{name}_psi"] = None if v is None else psi(v)
    return block


# ---------------------------------------------------------------------------------- scale


def line_length_px(x0: float, y0: float, x1: float, y1: float) -> float:
    return math.hypot(x1 - x0, y1 - y0)


def mm_per_px_from_line(length_px: float, known_mm: float) -> float:
    """Scale from a line drawn over a scale bar: ``known_mm`` millimetres span ``length_px`` pixels."""
    if not (math.isfinite(length_px) and length_px > 0):
        raise StonesegError("Draw a line along the scale bar first: its length is zero.")
    if not (math.isfinite(known_mm) and known_mm > 0):
        raise StonesegError(
            f"The scale bar's length must be a positive number of millimetres, got {known_mm}."
        )
    return known_mm / length_px


def _scale_key(name: str) -> str:
    """Stem of a file name, so 'IMG_1.jpg' and 'IMG_1' find the same photo."""
    p = Path(name.strip())
    return p.stem if p.suffix.lower() in IMAGE_EXTENSIONS else p.name


def _parse_number(text: str, decimal_comma: bool) -> float:
    text = text.strip()
    if decimal_comma:
        text = text.replace(",", ".")
    return float(text)


def read_scale_csv(path: str | Path) -> dict[str, float]:
    """Read ``image,mm_per_px`` rows into {photo stem: mm per pixel}.

    A header naming both columns is required (other columns are ignored). Comma,
    semicolon or tab separated; with a semicolon or tab, a decimal comma is accepted, as
    spreadsheets in many locales write it. Every problem names the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"Scale file not found: {path}") from None
    except UnicodeDecodeError:
        raise DataError(
            f"Scale file {path.name} is not a UTF-8 text file; save it as CSV (UTF-8)."
        ) from None
    except OSError as exc:
        raise DataError(f"Cannot read scale file {path.name}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if not first:
        raise DataError(
            f"Scale file {path.name} is empty; it needs a header 'image,mm_per_px' and one row per photo."
        )
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    scales: dict[str, float] = {}
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            missing = [c for c in ("image", "mm_per_px") if c not in header]
            if missing:
                raise DataError(
                    f"{path.name}, line {line}: the header must name the columns 'image' and 'mm_per_px' "
                    f"(missing: {', '.join(missing)}; found: {', '.join(header) or 'nothing'})."
                )
            col_image, col_scale = header.index("image"), header.index("mm_per_px")
            continue
        if len(row) <= max(col_image, col_scale):
            raise DataError(
                f"{path.name}, line {line}: expected {len(header)} columns, found {len(row)}."
            )
        name, value = row[col_image].strip(), row[col_scale]
        if not name:
            raise DataError(f"{path.name}, line {line}: the image name is empty.")
        try:
            scale = _parse_number(value, decimal_comma=delimiter != ",")
        except ValueError:
            raise DataError(
                f"{path.name}, line {line}: mm_per_px {value.strip()!r} is not a number."
            ) from None
        if not (math.isfinite(scale) and scale > 0):
            raise DataError(
                f"{path.name}, line {line}: mm_per_px must be a positive number, got {value.strip()}."
            )
        key = _scale_key(name)
        if key in scales and scales[key] != scale:
            raise DataError(
                f"{path.name}, line {line}: photo {name} is listed twice with different scales "
                f"({scales[key]:g} and {scale:g} mm per pixel)."
            )
        scales[key] = scale
    if header is None:
        raise DataError(f"Scale file {path.name} has no header 'image,mm_per_px'.")
    if not scales:
        raise DataError(f"Scale file {path.name} has a header but no photos.")
    return scales


# ------------------------------------------------------------------------ instance checks


@dataclass(frozen=True)
class InstanceScores:
    """Stone-level counts at one IoU threshold. Iterates as (tp, fp, fn, precision, recall, f1)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: InstanceScores) -> InstanceScores:
        return InstanceScores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    # Both empty: nothing missed and nothing invented, so 1 (as in metrics.Scores).
    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(self.fn == 0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float(self.fp == 0)

    @property
    def f1(self) -> float:
        den = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / den if den else 1.0

    def __iter__(self):
        return iter((self.tp, self.fp, self.fn, self.precision, self.recall, self.f1))

    def to_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def match_instances(
    pred_labels: np.ndarray, true_labels: np.ndarray, iou_threshold: float = 0.5
) -> InstanceScores:
    """Count stones found (tp), invented (fp) and missed (fn), one-to-one at IoU >= ``iou_threshold``.

    Pairs are assigned by the Hungarian method on IoU, so the count is right for any
    threshold (above 0.5 a stone can overlap only one other that much anyway).
    """
    from scipy.optimize import linear_sum_assignment

    pred = np.asarray(pred_labels)
    true = np.asarray(true_labels)
    if pred.shape != true.shape:
        raise StonesegError(
            f"Predicted labels {pred.shape[::-1]} and ground truth {true.shape[::-1]} differ in size (width, height)."
        )
    if not 0 < iou_threshold <= 1:
        raise StonesegError(f"The IoU threshold must be in (0, 1], got {iou_threshold}.")
    pred_ids, pred_inv = np.unique(pred.ravel(), return_inverse=True)
    true_ids, true_inv = np.unique(true.ravel(), return_inverse=True)
    n_pred = int(np.count_nonzero(pred_ids))
    n_true = int(np.count_nonzero(true_ids))
    if n_pred == 0 or n_true == 0:
        return InstanceScores(0, n_pred, n_true)
    pred_area = np.bincount(pred_inv, minlength=pred_ids.size)
    true_area = np.bincount(true_inv, minlength=true_ids.size)
    both = (pred.ravel() != 0) & (true.ravel() != 0)
    pair = pred_inv[both].astype(np.int64) * true_ids.size + true_inv[both]
    keys, inter = np.unique(pair, return_counts=True)
    pi, ti = keys // true_ids.size, keys % true_ids.size
    iou = inter / (pred_area[pi] + true_area[ti] - inter)
    ok = iou >= iou_threshold
    if not ok.any():
        return InstanceScores(0, n_pred, n_true)
    pi, ti, iou = pi[ok], ti[ok], iou[ok]
    rows, ri = np.unique(pi, return_inverse=True)
    cols, ci = np.unique(ti, return_inverse=True)
    cost = np.zeros((rows.size, cols.size))
    cost[ri, ci] = -iou
    r, c = linear_sum_assignment(cost)
    tp = int(np.count_nonzero(cost[r, c] < 0))
    return InstanceScores(tp, n_pred - tp, n_true - tp)


def d50_psi_error(
    pred_sizes: Sequence[float],
    true_sizes: Sequence[float],
    by: Weighting = "count",
    pred_areas: Sequence[float] | None = None,
    true_areas: Sequence[float] | None = None,
) -> float | None:
    """psi(D50 predicted) - psi(D50 true): +0.1 means the prediction is 7 % too coarse.

    Sizes may be in pixels: the scale cancels in a difference of logarithms. None when
    either side has no stones.
    """
    d_pred = grain_size_distribution(pred_sizes, by, pred_areas).percentile(50)
    d_true = grain_size_distribution(true_sizes, by, true_areas).percentile(50)
    if d_pred is None or d_true is None:
        return None
    return math.log2(d_pred) - math.log2(d_true)


@dataclass(frozen=True)
class InstanceEvaluation:
    """Stone-level comparison of one photo; sizes are b-axes in pixels, areas in pixels."""

    scores: InstanceScores
    pred_sizes_px: tuple[float, ...]
    pred_areas_px: tuple[float, ...]
    true_sizes_px: tuple[float, ...]
    true_areas_px: tuple[float, ...]
    mm_per_px: float | None = None
    iou_threshold: float = 0.5

    def to_dict(self, by: Weighting = "count") -> dict[str, Any]:
        scale = 1.0 if self.mm_per_px is None else self.mm_per_px
        unit = "px" if self.mm_per_px is None else "mm"
        d_pred = grain_size_distribution(self.pred_sizes_px, by, self.pred_areas_px).percentile(50)
        d_true = grain_size_distribution(self.true_sizes_px, by, self.true_areas_px).percentile(50)
        return {
            **self.scores.to_dict(),
            "iou_threshold": self.iou_threshold,
            "n_pred": len(self.pred_sizes_px),
            "n_true": len(self.true_sizes_px),
            "by": by,
            "unit": unit,
            f"d50_pred_{unit}": None if d_pred is None else d_pred * scale,
            f"d50_true_{unit}": None if d_true is None else d_true * scale,
            "d50_psi_error": d50_psi_error(
                self.pred_sizes_px, self.true_sizes_px, by, self.pred_areas_px, self.true_areas_px
            ),
        }


def evaluate_instances_detailed(
    pred_mask_or_prob: np.ndarray,
    true_instance_labels: np.ndarray,
    mm_per_px: float | None = None,
    iou_threshold: float = 0.5,
    min_separation_px: int = 5,
    neck_ratio: float = 0.9,
    threshold: float = 0.5,
    boundary: np.ndarray | None = None,
) -> InstanceEvaluation:
    """Split a prediction into stones and compare them with instance ground truth.

    A float array is taken as the model's probability (thresholded at ``threshold`` and
    used to split); anything else as a mask (> 0 is stone). ``boundary``: the model's
    stone-boundary probability, when it has one (then the split follows it).
    """
    _check_scale(mm_per_px)
    pred = np.asarray(pred_mask_or_prob)
    true = np.asarray(true_instance_labels)
    if pred.shape[:2] != true.shape[:2]:
        raise StonesegError(
            f"The prediction is {pred.shape[1]}x{pred.shape[0]} pixels but the instance ground truth is "
            f"{true.shape[1]}x{true.shape[0]}: they must come from the same photo."
        )
    if pred.dtype.kind == "f":
        labels = split_stones(
            pred >= threshold, pred, min_separation_px, neck_ratio, boundary=boundary
        )
    else:
        labels = split_stones(pred, None, min_separation_px, neck_ratio, boundary=boundary)
    scores = match_instances(labels, true, iou_threshold)
    ps, ts = measure_stones(labels), measure_stones(true)
    return InstanceEvaluation(
        scores=scores,
        pred_sizes_px=tuple(s.b_axis_px for s in ps),
        pred_areas_px=tuple(float(s.area_px) for s in ps),
        true_sizes_px=tuple(s.b_axis_px for s in ts),
        true_areas_px=tuple(float(s.area_px) for s in ts),
        mm_per_px=mm_per_px,
        iou_threshold=iou_threshold,
    )


def evaluate_instances(
    pred_mask_or_prob: np.ndarray,
    true_instance_labels: np.ndarray,
    mm_per_px: float | None = None,
    by: Weighting = "count",
    **split_options: Any,
) -> dict[str, Any]:
    """Stone-level precision, recall and F1 at IoU >= 0.5 and the D50 error in psi, as a dict.

    For ``stoneseg evaluate`` with instance masks; pool a folder with
    ``pool_instance_evaluations`` on ``evaluate_instances_detailed`` results.
    """
    return evaluate_instances_detailed(
        pred_mask_or_prob, true_instance_labels, mm_per_px, **split_options
    ).to_dict(by)


def pool_instance_evaluations(
    evaluations: Sequence[InstanceEvaluation], by: Weighting = "count"
) -> dict[str, Any]:
    """Pooled figures: counts summed over photos; D50 from all stones together (in mm when every photo has a scale)."""
    if not evaluations:
        return {**InstanceScores().to_dict(), "n_images": 0, "d50_psi_error": None}
    total = InstanceScores()
    for e in evaluations:
        total = total + e.scores
    scaled = all(e.mm_per_px is not None for e in evaluations)

    def gather(attr: str, is_area: bool) -> list[float]:
        out: list[float] = []
        for e in evaluations:
            k = (e.mm_per_px**2 if is_area else e.mm_per_px) if scaled else 1.0
            out.extend(v * k for v in getattr(e, attr))
        return out

    pooled = InstanceEvaluation(
        scores=total,
        pred_sizes_px=tuple(gather("pred_sizes_px", False)),
        pred_areas_px=tuple(gather("pred_areas_px", True)),
        true_sizes_px=tuple(gather("true_sizes_px", False)),
        true_areas_px=tuple(gather("true_areas_px", True)),
        mm_per_px=None,
        iou_threshold=evaluations[0].iou_threshold,
    )
    d = pooled.to_dict(by)
    if scaled:  # the gathered sizes are already millimetres
        d["unit"] = "mm"
        d["d50_pred_mm"] = d.pop("d50_pred_px")
        d["d50_true_mm"] = d.pop("d50_true_px")
    d["n_images"] = len(evaluations)
    return d


def read_instance_labels(
    path: str | Path, expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Read instance ground truth as int32 labels: a 16- or 8-bit label PNG, or one colour per stone.

    ``expected_size`` is the photo's (height, width).
    """
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise MaskError(f"Instance mask not found: {path}") from None
    except OSError as exc:
        raise MaskError(f"Cannot read instance mask {path.name}: {exc.strerror or exc}") from None
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if arr is None:
        raise MaskError(
            f"Cannot read instance mask {path.name}: the file is empty, damaged or not an image."
        )
    if arr.ndim == 3:
        colours = arr[:, :, :3].reshape(-1, 3).astype(np.int64)
        packed = (colours[:, 0] << 32) | (colours[:, 1] << 16) | colours[:, 2]
        uniq, inv = np.unique(packed, return_inverse=True)
        labels = inv.reshape(arr.shape[:2]).astype(np.int32)
        if uniq[0] != 0:  # black is background; without black every colour is a stone
            labels += 1
    else:
        labels = arr.astype(np.int32)
    if expected_size is not None and labels.shape != tuple(expected_size):
        h, w = expected_size
        raise MaskError(
            f"Instance mask {path.name} is {labels.shape[1]}x{labels.shape[0]} pixels but its image is {w}x{h}."
        )
    if labels.max() == 255 and np.isin(labels, (0, 255)).all():
        log.warning(
            "%s holds only 0 and 255: it reads as a single stone, not one label per stone.",
            path.name,
        )
    return labels


def write_instance_png(path: str | Path, labels: np.ndarray) -> None:
    """Write labels as a 16-bit PNG (0 = background), atomically."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if top > MAX_INSTANCES_PNG or (labels.size and labels.min() < 0):
        raise StonesegError(
            f"{Path(path).name}: {top} stones do not fit a 16-bit PNG (at most {MAX_INSTANCES_PNG}); "
            "raise the minimum separation or analyse smaller photos."
        )
    write_png(path, labels.astype(np.uint16))


# ----------------------------------------------------------------------------- exporting


@dataclass(frozen=True)
class GrainOptions:
    """How stones are split, which are kept, and how the distribution is weighted.

    Every export states these, so a number in a paper can be traced to its settings.
    ``min_size_px``/``min_size_mm`` are minimum b-axes; ``weighting`` is the curve shown
    and plotted (exports give percentiles both by count and by area);
    ``use_probability`` lets the model's outputs guide the split: its probability deepens
    the seams, and so does the boundary map of a model trained with the boundary target
    (when there is one).
    Change one with ``options.replace(exclude_edge=True)``.
    """

    min_separation_px: int = 5
    neck_ratio: float = 0.9
    use_probability: bool = True
    exclude_edge: bool = False
    min_size_px: float = 0.0
    min_size_mm: float | None = None
    weighting: Weighting = "count"
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES

    def __post_init__(self) -> None:
        if self.min_separation_px < 1:
            raise StonesegError(
                f"The minimum separation must be at least 1 pixel, got {self.min_separation_px}."
            )
        if not 0 < self.neck_ratio <= 1:
            raise StonesegError(f"The neck ratio must be in (0, 1], got {self.neck_ratio}.")
        if self.min_size_px < 0:
            raise StonesegError(f"The minimum size cannot be negative, got {self.min_size_px} px.")
        if self.min_size_mm is not None and not self.min_size_mm >= 0:
            raise StonesegError(f"The minimum size cannot be negative, got {self.min_size_mm} mm.")
        _check_by(self.weighting)
        if any(not 0 <= p <= 100 for p in self.percentiles):
            raise StonesegError("Percentiles must lie between 0 and 100.")
        object.__setattr__(self, "percentiles", tuple(self.percentiles))

    def replace(self, **changes: Any) -> GrainOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        d["size"] = "b-axis (minor axis of the ellipse with the same second moments)"
        return d


@dataclass(frozen=True)
class ImageGrains:
    """The stones of one photo, with the scale they were measured at."""

    name: str
    mm_per_px: float | None
    stones: tuple[Stone, ...] = field(default_factory=tuple)


def analyse_mask(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    mm_per_px: float | None = None,
    options: GrainOptions | None = None,
    name: str = "",
    boundary: np.ndarray | None = None,
) -> tuple[np.ndarray, ImageGrains]:
    """Split and measure one photo's mask: (labels, ImageGrains). What the GUI calls per photo.

    ``boundary``: the model's stone-boundary probability, if it has one (used only with
    ``options.use_probability``).
    """
    options = options or GrainOptions()
    _check_scale(mm_per_px)
    prob = probability if options.use_probability else None
    bnd = boundary if options.use_probability else None
    labels = split_stones(mask, prob, options.min_separation_px, options.neck_ratio, boundary=bnd)
    stones = measure_stones(
        labels, mm_per_px, options.exclude_edge, options.min_size_px, options.min_size_mm
    )
    return labels, ImageGrains(name, mm_per_px, tuple(stones))


# ------------------------------------------------------------------- hand edits, replayed
#
# A user's cuts and merges are kept as operations in image coordinates, not as a label
# image: replayed on the automatic split of the same mask they give the same stones, and
# replayed on a mask edited since, each still lands where it was drawn (or is reported as
# no longer fitting) instead of being silently lost.


def stone_point(labels: np.ndarray, label: int) -> tuple[float, float]:
    """A pixel centre (x, y) inside stone ``label``: its centroid if that lies inside it."""
    rr, cc = np.nonzero(np.asarray(labels) == label)
    if rr.size == 0:
        raise StonesegError(f"There is no stone {label}.")
    r, c = int(round(rr.mean())), int(round(cc.mean()))
    if labels[r, c] != label:
        i = int(np.argmin((rr - rr.mean()) ** 2 + (cc - cc.mean()) ** 2))
        r, c = int(rr[i]), int(cc[i])
    return float(c), float(r)


def _label_at_point(labels: np.ndarray, point) -> int:
    x, y = int(point[0]), int(point[1])
    h, w = labels.shape[:2]
    return int(labels[y, x]) if 0 <= y < h and 0 <= x < w else 0


def apply_edit(labels: np.ndarray, edit: dict) -> list[int]:
    """Apply one hand edit **in place**; returns the labels it touched. StonesegError when it
    no longer fits (the line crosses no stone, a point lies on the ground, ...)."""
    op = edit.get("op")
    if op == "split":
        p0, p1 = tuple(edit["p0"]), tuple(edit["p1"])
        label = label_on_line(labels, p0, p1)
        if label == 0:
            raise StonesegError("the cut crosses no stone any more")
        return cut_label(labels, label, p0, p1)
    if op == "merge":
        a, b = _label_at_point(labels, edit["a"]), _label_at_point(labels, edit["b"])
        if a == 0 or b == 0:
            raise StonesegError("a merged stone is no longer there")
        if a == b:
            return [a]  # already one stone
        keep, gone = sorted((a, b))
        merge_labels(labels, keep, gone)
        return [keep]
    raise StonesegError(f"unknown grain edit {op!r}")


def replay_edits(
    labels: np.ndarray, edits: Sequence[dict]
) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Apply ``edits`` in order, **in place**: (applied, [(edit, why it no longer fits)])."""
    applied: list[dict] = []
    failed: list[tuple[dict, str]] = []
    for edit in edits:
        try:
            apply_edit(labels, edit)
        except (StonesegError, KeyError, TypeError, ValueError) as exc:
            failed.append((edit, str(exc)))
        else:
            applied.append(edit)
    return applied, failed


CSV_COLUMNS = (
    "image",
    "label",
    "area_px",
    "area_mm2",
    "equivalent_diameter_px",
    "equivalent_diameter_mm",
    "a_axis_px",
    "a_axis_mm",
    "b_axis_px",
    "b_axis_mm",
    "b_axis_psi",
    "perimeter_px",
    "perimeter_mm",
    "circularity",
    "centroid_x_px",
    "centroid_y_px",
    "touches_edge",
    "excluded",
    "exclusion_reason",
    "mm_per_px",
    "exclude_edge",
    "min_size_px",
    "min_size_mm",
    "weighting",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def stones_csv(results: Iterable[ImageGrains], options: GrainOptions) -> str:
    """One row per stone (excluded ones too, with the reason); the options are columns on every row.

    Columns rather than comment lines, because spreadsheets and pandas read them without
    special settings and a pooled table keeps each row's own scale.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        for s in r.stones:
            row = (
                r.name,
                s.label,
                s.area_px,
                s.area_mm2,
                s.equivalent_diameter_px,
                s.equivalent_diameter_mm,
                s.a_axis_px,
                s.a_axis_mm,
                s.b_axis_px,
                s.b_axis_mm,
                s.b_axis_psi,
                s.perimeter_px,
                s.perimeter_mm,
                s.circularity,
                s.centroid_x,
                s.centroid_y,
                s.touches_edge,
                s.excluded,
                s.exclusion_reason,
                r.mm_per_px,
                options.exclude_edge,
                options.min_size_px,
                options.min_size_mm,
                options.weighting,
            )
            writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def percentiles_report(results: Sequence[ImageGrains], options: GrainOptions) -> dict[str, Any]:
    """Percentiles per photo and pooled, by count and by area, with the options that made them."""

    def block(stones: Iterable[Stone], unit: str) -> dict[str, Any]:
        stones = list(stones)
        out: dict[str, Any] = {
            "stones_found": len(stones),
            "stones_excluded": sum(s.excluded for s in stones),
        }
        for by in WEIGHTINGS:
            curve = distribution_of(stones, by, unit)
            out[f"by_{by}"] = _percentile_block(curve, options.percentiles)
        return out

    scaled = [r.mm_per_px is not None for r in results]
    if any(scaled) and not all(scaled):
        missing = ", ".join(r.name for r in results if r.mm_per_px is None)
        raise StonesegError(
            f"Cannot pool photos with and without a scale; no scale for: {missing}."
        )
    images = {}
    for r in results:
        unit = "px" if r.mm_per_px is None else "mm"
        images[r.name] = {"mm_per_px": r.mm_per_px, **block(r.stones, unit)}
    pooled = block(
        (s for r in results for s in r.stones), "mm" if results and all(scaled) else "px"
    )
    pooled["images"] = len(results)
    return {
        "options": options.to_dict(),
        "definition": (
            "D_p: size at which the cumulative curve reaches p %, the curve passing through (size_k, fraction of "
            "stones -- or of total area -- no larger than size_k), linearly interpolated; psi = log2(mm)."
        ),
        "pooled": pooled,
        "images": images,
    }


def write_text(path: str | Path, text: str) -> None:
    """Write a text export atomically, with a message the user can act on when it fails."""
    path = Path(path)
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, path)) from exc


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- folder job


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
) -> Generator[GrainEvent, None, GrainSummary]:
    """Segment, split and measure every photo of ``input_dir``; write the instance masks and tables.

    Writes ``<stem>_instances.png`` (16-bit labels), ``<stem>_stones.csv``,
    ``stones_pooled.csv`` and ``percentiles.json`` in ``output_dir``. The scale is
    ``mm_per_px`` for all photos, or per photo from ``scales`` (a photo missing from it
    fails, named); without either, sizes are in pixels. Bad photos are reported and
    skipped; the pooled files cover the others.
    """
    options = options or GrainOptions()
    if mm_per_px is not None and scales is not None:
        raise StonesegError("Give either one scale for every photo or a scale table, not both.")
    _check_scale(mm_per_px)
    if options.min_size_mm is not None and mm_per_px is None and scales is None:
        raise StonesegError(
            "A minimum size in mm needs a scale: give the millimetres per pixel or a scale CSV."
        )
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths = list_images(input_dir)
    if not paths:
        raise DataError(f"No photos in {input_dir} (looked for {', '.join(IMAGE_EXTENSIONS)}).")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(
            f"Cannot create output folder {output_dir}: {exc.strerror or exc}"
        ) from exc
    todo, clash = _unique_stems(paths)
    total = len(paths)
    failed: list[tuple[Path, str]] = []
    results: list[ImageGrains] = []
    index = 0
    for p, message in clash:
        index += 1
        failed.append((p, message))
        yield GrainEvent(index, total, p, "failed", message=message)
    cancelled = False
    for p in todo:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        index += 1
        start = time.perf_counter()
        try:
            scale = mm_per_px
            if scales is not None:
                scale = scales.get(p.stem)
                if scale is None:
                    raise DataError(
                        f"{p.name} has no row in the scale CSV; add 'image,mm_per_px' for it."
                    )
            image = read_image(p)
            pred = segmenter.predict(image, should_stop)
            labels, result = analyse_mask(
                pred.mask,
                pred.probability,
                scale,
                options,
                p.name,
                boundary=getattr(pred, "boundary", None),  # None: a 1-channel model
            )
            write_instance_png(output_dir / f"{p.stem}_instances.png", labels)
            write_text(output_dir / f"{p.stem}_stones.csv", stones_csv([result], options))
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
    report = percentiles_report(results, options)
    report["failed"] = [{"image": p.name, "error": m} for p, m in failed]
    write_text(output_dir / "stones_pooled.csv", stones_csv(results, options))
    write_json(output_dir / "percentiles.json", report)
    return GrainSummary(tuple(results), tuple(failed), report, cancelled)


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
    from .imageio import read_mask

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


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_PERCENTILES",
    "GrainEvent",
    "GrainOptions",
    "GrainSizeCurve",
    "GrainSummary",
    "ImageGrains",
    "InstanceEvaluation",
    "InstanceScores",
    "Stone",
    "WEIGHTINGS",
    "analyse_mask",
    "cut_label",
    "d50_psi_error",
    "distribution_of",
    "evaluate_instances",
    "evaluate_instances_detailed",
    "grain_size_distribution",
    "included",
    "iter_grains_folder",
    "iter_grains_masks",
    "label_on_line",
    "line_length_px",
    "match_instances",
    "measure_stones",
    "merge_labels",
    "mm_per_px_from_line",
    "percentiles",
    "percentiles_report",
    "pool_instance_evaluations",
    "psi",
    "read_instance_labels",
    "read_scale_csv",
    "split_stones",
    "stones_csv",
    "with_scale_and_exclusions",
    "write_instance_png",
    "write_json",
    "write_text",
]
