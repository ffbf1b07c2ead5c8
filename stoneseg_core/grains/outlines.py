"""The outline of a labelled stone as polygon rings along pixel edges.

Vertices are pixel *corners* (column, row): pixel (r, c) is the square from (c, r) to
(c + 1, r + 1), so a ring's area is exactly the stone's pixel count and the georeference's
affine transform (which maps corners) places it on the map. Diagonal neighbours that touch
only at a corner are separate rings (4-connectivity), so no ring crosses itself.
"""

from __future__ import annotations

import numpy as np

# directions: 0 east (+x), 1 south (+y), 2 west, 3 north; on screen (y down) every ring runs
# with the stone on its right: exterior rings clockwise, holes anticlockwise
_STEP = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])


def ring_area(ring: np.ndarray) -> float:
    """Signed shoelace area of a closed ring (first vertex repeated last): positive for a ring
    clockwise on screen in (column, row) coordinates, i.e. anticlockwise with y pointing up."""
    # about the first vertex: map coordinates (5e5, 5e6 m) would drown a stone's area in
    # rounding errors otherwise
    x, y = ring[:, 0] - ring[0, 0], ring[:, 1] - ring[0, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def pixel_rings(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[np.ndarray]:
    """Closed rings (k x 2 float arrays of column, row; first vertex repeated last) around the
    True pixels of ``mask``, only the corners where the outline turns. ``offset`` (row, col)
    is added, for a mask cut from a larger image. Exterior rings have a positive
    ``ring_area`` in (column, row) coordinates, holes a negative one.
    """
    m = np.pad(np.asarray(mask, bool), 1)
    r, c = np.nonzero(m[1:-1, 1:-1])
    r, c = r + 1, c + 1
    starts, dirs = [], []
    for d, (dr, dc, sx, sy) in enumerate(
        # neighbour to test, and where the edge starts relative to the pixel's top-left corner
        ((-1, 0, 0, 0), (0, 1, 1, 0), (1, 0, 1, 1), (0, -1, 0, 1))
    ):
        open_side = ~m[r + dr, c + dc]
        starts.append(np.stack([c[open_side] + sx, r[open_side] + sy], axis=1))
        dirs.append(np.full(int(open_side.sum()), d))
    if not starts or sum(len(s) for s in starts) == 0:
        return []
    start = np.concatenate(starts)
    direction = np.concatenate(dirs)
    end = start + _STEP[direction]
    width = m.shape[1] + 1
    key_start = start[:, 1] * width + start[:, 0]
    key_end = end[:, 1] * width + end[:, 0]
    order = np.argsort(key_start, kind="stable")
    sorted_keys = key_start[order]
    first = np.searchsorted(sorted_keys, key_end, side="left")
    count = np.searchsorted(sorted_keys, key_end, side="right") - first
    nxt = order[np.minimum(first, len(order) - 1)]
    # a corner shared by two diagonal pixels has two ways on: turn right, towards the stone
    # the edge came along, which keeps the two pixels' rings apart
    two = np.nonzero(count == 2)[0]
    if two.size:
        a, b = order[first[two]], order[first[two] + 1]
        right = (direction[two] + 1) % 4
        nxt[two] = np.where(direction[a] == right, a, b)
    return [ring for _, ring in _walk(range(len(start)), nxt, start, direction, offset)]


def _walk(order, nxt: np.ndarray, start: np.ndarray, direction: np.ndarray, offset):
    """(first edge, closed ring of corner points) for each ring of edges, the edges visited
    in ``order``: each ring followed along ``nxt`` from its first unseen edge."""
    seen = np.zeros(len(start), bool)
    nxt_list = nxt.tolist()
    for e0 in order:
        if seen[e0]:
            continue
        path = []
        e = e0
        while not seen[e]:
            seen[e] = True
            path.append(e)
            e = nxt_list[e]
        idx = np.array(path)
        turns = direction[idx] != direction[np.roll(idx, 1)]
        corners = start[idx[turns]] if turns.any() else start[idx[:1]]
        ring = np.vstack([corners, corners[:1]]).astype(np.float64)
        ring[:, 0] += offset[1] - 1
        ring[:, 1] += offset[0] - 1
        yield e0, ring


def _inside(point: np.ndarray, ring: np.ndarray) -> bool:
    """Even-odd test of a point against a closed ring."""
    x, y = point
    x0, y0, x1, y1 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(crosses & (x < xs)) % 2)


def stone_polygons(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[list[np.ndarray]]:
    """The polygons of ``mask``: [exterior ring, hole rings...] per connected part, in
    (column, row) pixel-corner coordinates (exterior positive ``ring_area``)."""
    return _group(pixel_rings(mask, offset))


def label_polygons(labels: np.ndarray, offset: tuple[int, int] = (0, 0)) -> dict:
    """``stone_polygons`` of every label of ``labels`` at once: {label: polygons}, the same
    rings in the same order as ``stone_polygons(labels == label)`` gives each, in one pass
    (one call per stone costs about half a millisecond of set-up: a minute for the hundred
    thousand stones of an orthomosaic). ``offset`` (row, col) is added to every vertex."""
    m = np.pad(np.asarray(labels), 1)
    r, c = np.nonzero(m)
    own = m[r, c]
    starts, dirs, labs = [], [], []
    for d, (dr, dc, sx, sy) in enumerate(
        ((-1, 0, 0, 0), (0, 1, 1, 0), (1, 0, 1, 1), (0, -1, 0, 1))
    ):
        open_side = m[r + dr, c + dc] != own
        starts.append(np.stack([c[open_side] + sx, r[open_side] + sy], axis=1))
        dirs.append(np.full(int(open_side.sum()), d))
        labs.append(own[open_side])
    start = np.concatenate(starts)
    if len(start) == 0:
        return {}
    direction = np.concatenate(dirs)
    lab = np.concatenate(labs).astype(np.int64)
    end = start + _STEP[direction]
    width = m.shape[1] + 1
    corners = (m.shape[0] + 1) * width
    key_start = lab * corners + start[:, 1] * width + start[:, 0]
    key_end = lab * corners + end[:, 1] * width + end[:, 0]
    order = np.argsort(key_start, kind="stable")
    sorted_keys = key_start[order]
    first = np.searchsorted(sorted_keys, key_end, side="left")
    count = np.searchsorted(sorted_keys, key_end, side="right") - first
    nxt = order[np.minimum(first, len(order) - 1)]
    two = np.nonzero(count == 2)[0]
    if two.size:  # as in pixel_rings: turn right at a corner two diagonal pixels share
        a, b = order[first[two]], order[first[two] + 1]
        right = (direction[two] + 1) % 4
        nxt[two] = np.where(direction[a] == right, a, b)
    # each label's edges in the order pixel_rings meets them on that label's own mask
    visit = np.lexsort((np.arange(len(start)), lab))
    rings: dict[int, list[np.ndarray]] = {}
    for e0, ring in _walk(visit.tolist(), nxt, start, direction, offset):
        rings.setdefault(int(lab[e0]), []).append(ring)
    return {label: _group(found) for label, found in rings.items()}


def _group(rings: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Rings of one stone -> [exterior, holes...] per part."""
    exteriors = [r for r in rings if ring_area(r) > 0]
    holes = [r for r in rings if ring_area(r) < 0]
    polygons = [[e] for e in exteriors]
    for h in holes:
        # a point just beside the middle of the hole's first edge is off every vertex and
        # inside the one exterior that holds the hole
        p0, p1 = h[0], h[1]
        step = (p1 - p0) / max(np.abs(p1 - p0).max(), 1e-9)
        probe = (p0 + p1) / 2 + 0.25 * np.array([step[1], -step[0]])
        holder = next((poly for poly in polygons if _inside(probe, poly[0])), None)
        (holder if holder is not None else polygons[0] if polygons else []).append(h)
    return polygons
