"""Editing labels by hand: cut a stone along a line, merge two touching stones, and replay
a user's cuts and merges on a fresh split."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi

from stoneseg_core.errors import StonesegError


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
    from skimage.draw import line  # scikit-image: loaded when first used (see split.py)

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
