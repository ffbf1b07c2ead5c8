"""COCO run-length encoding (RLE) between stones and label images, a stone at a time.

An RLE holds the lengths of alternating runs of 0 and 1 over the photo's pixels in column-major
order (down the first column, then the next), starting with a run of 0; a file stores them as
a list ("uncompressed") or as COCO's compressed string. pycocotools turns masks into RLEs and
back, but always as whole photos: decoding one stone of a 12-megapixel photo writes 12 MB, and
10,000 stones took minutes. So here the runs of a stone are painted straight into the label
image, and a stone's runs are made from its bounding box only; pycocotools still writes and
checks the strings (``compress``, ``rle_area``), and the tests check every function here
against its ``encode`` and ``decode``.
"""

from __future__ import annotations

import numpy as np


def string_counts(text: str | bytes) -> np.ndarray:
    """The run lengths of COCO's compressed RLE string (ValueError when it is not one), the
    format pycocotools writes: each number in 5-bit groups, 48 added to each, a group's bit
    0x20 saying that another follows, and from the third number on, the difference to the
    number two before it."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    p, n = 0, len(data)
    while p < n:
        value, shift, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("its RLE string ends in the middle of a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"its RLE string holds {chr(data[p])!r}, not an RLE digit")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    out = np.asarray(counts, np.int64)
    if out.size and out.min() < 0:
        raise ValueError("its RLE string holds a negative run")
    return out


def rle_counts(segmentation: dict) -> tuple[np.ndarray, tuple[int, int]]:
    """(run lengths, (height, width)) of a COCO RLE dict ({"size": [h, w], "counts": a list
    or a string}); ValueError saying what is wrong with it."""
    stated = segmentation.get("size")
    if (
        not isinstance(stated, (list, tuple))
        or len(stated) != 2
        or not all(isinstance(v, int) and v > 0 for v in stated)
    ):
        raise ValueError(f"its RLE has no [height, width] size (got {stated!r})")
    counts = segmentation.get("counts")
    if isinstance(counts, (str, bytes)):
        runs = string_counts(counts)
    elif isinstance(counts, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in counts
    ):
        runs = np.asarray(counts, np.int64)
        if runs.size and runs.min() < 0:
            raise ValueError("its RLE holds a negative run")
    else:
        raise ValueError("its RLE counts are neither a list of numbers nor a string")
    h, w = int(stated[0]), int(stated[1])
    if int(runs.sum()) != h * w:
        raise ValueError(f"its RLE covers {int(runs.sum())} pixels, not the {w}x{h} it states")
    return runs, (h, w)


def run_spans(runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of 1 in column-major pixel order, end exclusive."""
    edges = np.concatenate([[0], np.cumsum(runs)])
    return edges[1:-1:2], edges[2::2]


def runs_to_crop(runs: np.ndarray, height: int) -> tuple[int, int, np.ndarray] | None:
    """An RLE as (row0, col0, bool crop of its bounding box); None when it has no pixel."""
    starts, ends = run_spans(runs)
    keep = ends > starts
    if not keep.any():
        return None
    starts, ends = starts[keep].tolist(), ends[keep].tolist()
    c0, c1 = starts[0] // height, (ends[-1] - 1) // height + 1
    flat = np.zeros((c1 - c0) * height, bool)  # the columns it touches, column after column
    base = c0 * height
    for s, e in zip(starts, ends):
        flat[s - base : e - base] = True
    crop = flat.reshape(c1 - c0, height).T
    rows = np.flatnonzero(crop.any(axis=1))
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    return r0, int(c0), np.ascontiguousarray(crop[r0:r1])


def crop_to_runs(crop: np.ndarray, row0: int, col0: int, size: tuple[int, int]) -> list[int]:
    """The uncompressed COCO counts of a stone given as a bool crop at (row0, col0) of a photo
    of (height, width) ``size``."""
    height, width = size
    cols, rows = np.nonzero(np.asarray(crop, bool).T)  # column-major order
    if cols.size == 0:
        return [height * width]
    index = (cols.astype(np.int64) + col0) * height + rows + row0
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = index[np.concatenate([[0], breaks])]
    ends = index[np.concatenate([breaks - 1, [index.size - 1]])] + 1
    edges = np.empty(2 * starts.size + 2, np.int64)
    edges[0], edges[-1] = 0, height * width
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    counts = np.diff(edges).tolist()
    if counts[-1] == 0:
        counts.pop()  # the stone reaches the last pixel: no run of 0 after it
    return counts


def compress(counts: list[int], size: tuple[int, int]) -> dict:
    """Uncompressed counts -> COCO's compressed RLE dict (pycocotools writes the string)."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.frPyObjects({"counts": counts, "size": list(size)}, *size)
    text = rle["counts"]
    return {"size": list(size), "counts": text.decode("ascii") if isinstance(text, bytes) else text}


def rle_area(rle: dict) -> int:
    """The pixels of a compressed RLE dict, as pycocotools counts them."""
    from pycocotools import mask as coco_mask

    counts = rle["counts"]
    return int(
        coco_mask.area(
            {"size": rle["size"], "counts": counts.encode("ascii")}
            if isinstance(counts, str)
            else rle
        )
    )
