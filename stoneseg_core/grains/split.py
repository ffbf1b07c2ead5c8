"""Splitting a stone mask into single stones: watershed on the distance transform (or on the
model's boundary map), then merging the pieces of one stone back."""

from __future__ import annotations

import heapq
import math
from typing import Literal

import cv2
import numpy as np
from scipy import ndimage as ndi

from stoneseg_core.errors import MaskError, StonesegError


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

    @classmethod
    def of_pieces(cls, pieces: np.ndarray, landscape: np.ndarray, n: int) -> _Merger:
        """The ``n`` pieces of a watershed, each with its peak height in ``landscape``."""
        # each piece's maximum in its own box: ndi.maximum sorts the whole image (1.2 s on 6 MP)
        piece_peaks = np.zeros(n + 1)
        for i, box in enumerate(ndi.find_objects(pieces, max_label=n), 1):
            if box is not None:
                piece_peaks[i] = landscape[box][pieces[box] == i].max()
        areas = np.bincount(pieces.ravel(), minlength=n + 1)
        return cls(n, piece_peaks, areas, _pair_stats(pieces, landscape))

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


def _seed_every_component(
    markers: np.ndarray, components: np.ndarray, n_components: int
) -> np.ndarray:
    """``markers`` (changed in place and returned) with one more seed, at its first pixel, in
    each of the ``components`` that has none: a piece of the mask without a seed is one stone."""
    n_markers = int(markers.max())
    seeded = np.zeros(n_components + 1, bool)
    seeded[components[markers > 0]] = True
    unseeded = np.flatnonzero(~seeded[1:]) + 1
    if unseeded.size:
        ids, first = np.unique(components.ravel(), return_index=True)
        at = first[np.isin(ids, unseeded)]
        markers.ravel()[at] = n_markers + 1 + np.arange(at.size, dtype=np.int32)
    return markers


# a mask under this many pixels is flooded whole: per-component work does not pay there
_WHOLE_FLOOD_PX = 1_000_000


def _flood_components(
    height: np.ndarray, markers: np.ndarray, components: np.ndarray, n_components: int
) -> np.ndarray:
    """Watershed of ``height`` from ``markers`` (every component seeded) inside the
    8-connected ``components``, as one ``watershed(height, markers, mask=components > 0,
    connectivity=2)``: a seed never floods past its own component, so on a big mask each
    component is flooded in its own box (a component with one seed is that stone, with no
    flooding), the large ones on two threads (scikit-image's flood releases the GIL). 24 MP
    with 2,000 stones: 12.7 s whole, this way 4-7 s; pixels equidistant from two seeds
    may go to the other one (276 of 18 million on that photo), as any watershed may."""
    # scikit-image's modules take ~0.3 s to import: loaded at the first split, not at import
    from skimage.segmentation import watershed

    fg = components > 0
    if int(np.count_nonzero(fg)) < _WHOLE_FLOOD_PX:
        return watershed(height, markers, mask=fg, connectivity=2).astype(np.int32)
    seeded = markers > 0
    seeds_in = np.bincount(components[seeded], minlength=n_components + 1)
    only_seed = np.zeros(n_components + 1, np.int32)  # a component's seed where it has one
    only_seed[components[seeded]] = markers[seeded]
    only_seed[seeds_in != 1] = 0
    out = only_seed[components]  # a component with one seed is that stone, unflooded
    boxes = ndi.find_objects(components)
    many = [i for i in np.flatnonzero(seeds_in > 1) if boxes[i - 1] is not None]

    def flood(i: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        box = boxes[i - 1]
        inside = components[box] == i
        seeds = np.where(inside, markers[box], 0)
        return box, inside, watershed(height[box], seeds, mask=inside, connectivity=2)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        for box, inside, pieces in pool.map(flood, many):
            out[box][inside] = pieces[inside]
    return out


def _check_split_settings(min_separation_px: int, neck_ratio: float) -> None:
    """A clear error for a separation under 1 pixel or a neck ratio outside (0, 1]."""
    if min_separation_px < 1:
        raise StonesegError(
            f"The minimum separation between stones must be at least 1 pixel, got {min_separation_px}."
        )
    if not 0 < neck_ratio <= 1:
        raise StonesegError(f"The neck ratio must be in (0, 1], got {neck_ratio}.")


def _split_landscape(
    fg: np.ndarray, probability: np.ndarray | None, boundary: np.ndarray | None
) -> np.ndarray:
    """The landscape the split floods: the distance transform, times the model's maps.

    The distance transform peaks once in the middle of every stone and dips where two
    stones touch, so watershed from its peaks cuts at the necks. When the model's
    ``probability`` is given, the distance is multiplied by it (lightly smoothed): the
    model is less sure on the seam between two stones, which deepens the dip there. A
    model whose probability is blotchy inside stones over-splits them this way; pass
    ``probability=None`` to split on the mask's shape alone. A ``boundary`` map
    (``boundary_split="seams"``) multiplies it by (1 - boundary) too.
    """
    landscape = _distance_to_ground(fg)
    weight = None
    if probability is not None:
        weight = _unit_map(probability, fg, "probability", nan=0.0)
    if boundary is not None:
        inside = 1.0 - _unit_map(boundary, fg, "boundary", nan=1.0)
        weight = inside if weight is None else weight * inside
    if weight is not None:
        # smoothed over ~1 pixel: a seam is a line a few pixels wide, speckle is not
        landscape *= ndi.gaussian_filter(weight, 1.0)
    return landscape


def _watershed_from_peaks(
    fg: np.ndarray, landscape: np.ndarray, min_separation_px: int
) -> np.ndarray:
    """The mask cut into pieces (int32 1..n) by watershed from the landscape's peaks.

    Seeds are ``peak_local_max`` with ``min_distance = min_separation_px``: two stone
    centres closer than that are taken as one stone. Raise it when stones are over-split,
    lower it when small touching stones are merged.
    """
    # scikit-image's modules take ~0.3 s to import: loaded at the first split, not at import
    from skimage.feature import peak_local_max

    components, n_components = ndi.label(fg, structure=np.ones((3, 3), bool))
    peaks = peak_local_max(
        landscape, min_distance=int(min_separation_px), labels=components, exclude_border=False
    )
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    # a component without a seed (all its pixels had probability 0) is one stone
    markers = _seed_every_component(markers, components, n_components)
    # 8-connected like the components, so a diagonal-only neighbour is never left unlabelled
    return _flood_components(-landscape, markers, components, n_components)


def _merge_pieces(
    pieces: np.ndarray, landscape: np.ndarray, n: int, neck_ratio: float, min_fragment_px: int
) -> np.ndarray:
    """The ``n`` watershed pieces, those of one stone merged into one, in reading order.

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
    merger = _Merger.of_pieces(pieces, landscape, n)
    merger.merge_shallow_necks(neck_ratio)
    merger.absorb_fragments(min_fragment_px)
    return _reading_order(merger.lookup()[pieces])


def split_stones(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    min_separation_px: int = 5,
    neck_ratio: float = 0.9,
    min_fragment_px: int | None = None,
    boundary: np.ndarray | None = None,
    boundary_threshold: float = 0.5,
    boundary_split: Literal["seams", "cores"] = "seams",
    min_stone_px: float = 0.0,
) -> np.ndarray:
    """Split a stone mask into single stones; returns int32 labels 1..N, 0 = background.

    ``min_stone_px``: the speck floor, an area in pixels. A stone smaller than that after the
    split (a speck the network cannot resolve at its working scale) is no stone: it is left
    out of the labels (``speck_floor`` gives a model's floor for a photo). 0 keeps everything.

    ``boundary``: the stone-boundary probability of a model trained with the
    "mask+boundary" target. With ``boundary_split="seams"`` (the default) the split below
    runs on the distance transform x probability x (1 - boundary): the model's boundaries
    cut where the mask's shape has no neck (overlapping stones), and the shape still cuts
    where the model missed a boundary. ``"cores"`` splits on the boundary map alone (see
    ``_split_on_boundary``; ``boundary_threshold`` applies to it only). On synthetic piles
    "seams" was as good as "cores" when the seams were visible and far better when they
    were faint (tests/benchmarks/bench_boundary.py).

    The steps, each function with the why of its settings:

    - ``_split_landscape``: the distance transform, its dips between stones deepened by
      ``probability`` (None: the mask's shape alone) and by ``boundary``;
    - ``_watershed_from_peaks``: watershed from its peaks, seeds ``min_separation_px`` apart
      (raise it when stones are over-split, lower it when small touching stones are merged);
    - ``_merge_pieces``: the pieces of one stone merged back across necks at least
      ``neck_ratio`` of their width, and pieces under ``min_fragment_px`` (default: a disc
      of diameter ``min_separation_px``) given to a neighbour. No foreground pixel is
      dropped but the specks under ``min_stone_px``.
    """
    fg = _as_foreground(mask)
    _check_split_settings(min_separation_px, neck_ratio)
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
            return drop_specks(
                _split_on_boundary(fg, boundary, boundary_threshold, int(min_fragment_px)),
                min_stone_px,
            )
    landscape = _split_landscape(fg, probability, boundary)
    pieces = _watershed_from_peaks(fg, landscape, min_separation_px)
    n = int(pieces.max())
    if n <= 1:
        return drop_specks(pieces, min_stone_px)
    merged = _merge_pieces(pieces, landscape, n, neck_ratio, int(min_fragment_px))
    return drop_specks(merged, min_stone_px)


def drop_specks(labels: np.ndarray, min_stone_px: float) -> np.ndarray:
    """Labels without the stones under ``min_stone_px`` pixels, renumbered 1..N in reading order."""
    if min_stone_px <= 0 or not labels.any():
        return labels
    areas = np.bincount(labels.ravel())
    small = np.flatnonzero(areas < min_stone_px)
    small = small[small > 0]
    if small.size == 0:
        return labels
    keep = np.ones(areas.size, bool)
    keep[small] = False
    lut = np.where(keep, np.arange(areas.size), 0).astype(np.int32)
    return _reading_order(lut[labels])


def _reading_order(merged: np.ndarray) -> np.ndarray:
    """Number the stones 1..N in reading order (by their first pixel), so a table row is easy to find.

    A stone's first pixel lies on the top row of its box, so only that row is searched
    (``np.unique(return_index=True)`` sorted all 24 million pixels of a big photo: 1.4 s)."""
    boxes = ndi.find_objects(merged)
    ids, first = [], []
    for i, box in enumerate(boxes, 1):
        if box is not None:
            rows, cols = box
            ids.append(i)
            first.append((rows.start, cols.start + int(np.argmax(merged[rows.start, cols] == i))))
    relabel = np.zeros(len(boxes) + 1, np.int32)
    relabel[[i for _, i in sorted(zip(first, ids, strict=True))]] = np.arange(
        1, len(ids) + 1, dtype=np.int32
    )
    return relabel[merged]


def _distance_to_ground(fg: np.ndarray) -> np.ndarray:
    """The Euclidean distance of each stone pixel to the nearest ground pixel (float32).

    OpenCV's exact transform (``DIST_MASK_PRECISE``) is 9x faster than scipy's (0.2 s on
    24 MP) but rounds its square roots in float32, a last bit that depends on where the pixel
    lies, so one stone could split differently whole and in windows: its squared distances
    (whole numbers) are recovered and rooted again, giving scipy's values bit for bit. Past
    1,000 px (squares no longer exact) and on a mask with no ground at all (OpenCV leaves it
    at its maximum) scipy answers."""
    if fg.all():
        return ndi.distance_transform_edt(fg).astype(np.float32)
    d = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    if float(d.max()) > 1000.0:
        return ndi.distance_transform_edt(fg).astype(np.float32)
    d64 = d.astype(np.float64)
    return np.sqrt(np.rint(d64 * d64)).astype(np.float32)


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
    # a piece of the mask without a core (all boundary, or only speckle) is one stone
    components, n_components = ndi.label(fg, structure=eight)
    markers = _seed_every_component(cores.astype(np.int32), components, n_components)
    pieces = _flood_components(b, markers, components, n_components)
    n = int(pieces.max())
    if n <= 1:
        return pieces
    landscape = _distance_to_ground(fg)
    merger = _Merger.of_pieces(pieces, landscape, n)
    merger.absorb_fragments(int(min_fragment_px))
    return _reading_order(merger.lookup()[pieces])
