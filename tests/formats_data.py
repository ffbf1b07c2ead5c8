"""Synthetic projects for the label-format tests: photos with touching stones (a stone with a
hole and a stone inside it, a stone in two pieces that meet at a corner, stones cut by the
photo's edge, one-pixel stones), written as images/, masks/ and instances/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from synthetic import write_rgb

from stoneseg_core.grains.io import write_instance_png
from stoneseg_core.io import geo
from stoneseg_core.io.images import read_instance_labels, read_mask, write_mask

UTM33_5MM = (0.005, 0.0, 500000.0, 0.0, -0.005, 5500000.0)  # 5 mm pixels, north up


def touching_stones(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    """Labels 1..N: Voronoi cells (many touching), some dropped to ground, plus the awkward
    shapes listed in the module's docstring; renumbered in reading order of first pixels."""
    rng = np.random.default_rng(seed)
    n = max(4, height * width // 150)
    seeds = rng.uniform(0, 1, (n, 2)) * (height, width)
    rows, cols = np.mgrid[0:height, 0:width]
    d = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    labels = d.argmin(axis=2).astype(np.int32) + 1
    dropped = rng.choice(n, n // 3, replace=False) + 1
    labels[np.isin(labels, dropped)] = 0
    top = int(labels.max())
    r, c = height // 2, width // 2
    labels[r - 8 : r + 9, c - 8 : c + 9] = top + 1  # a ring ...
    labels[r - 4 : r + 5, c - 4 : c + 5] = 0  # ... with a hole
    labels[r - 2 : r + 3, c - 2 : c + 3] = top + 2  # ... and a stone in it
    labels[2:5, 2:5] = top + 3  # two pieces meeting at a corner
    labels[5:8, 5:8] = top + 3
    labels[0:3, 5:7] = 0
    labels[height - 1, width - 1] = top + 4  # a one-pixel stone in the corner
    labels[height - 1, width - 2] = 0
    labels[height - 2, width - 1] = 0
    labels[height - 2, width - 2] = 0
    return compact(labels)


def compact(labels: np.ndarray) -> np.ndarray:
    """Ids 1..N in the order their first pixel is met, reading row by row."""
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    order = [i for _, i in sorted(zip(first, ids)) if i != 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels]


def write_project(
    root: Path,
    photos: dict[str, np.ndarray | None],
    instances: bool = True,
    georef: geo.Georeference | None = None,
) -> Path:
    """images/<name> (a textured photo of the labels' size; a GeoTIFF with ``georef`` for a
    .tif name), masks/<stem>.png and instances/<stem>.png (None: a photo without labels)."""
    rng = np.random.default_rng(1)
    for name, labels in photos.items():
        shape = labels.shape if labels is not None else (40, 50)
        rgb = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
        image = root / "images" / name
        image.parent.mkdir(parents=True, exist_ok=True)
        if image.suffix == ".tif":
            geo.write_tiff(image, rgb, georef)
        else:
            write_rgb(image, rgb)
        if labels is None:
            continue
        stem = Path(name).stem
        write_mask(root / "masks" / f"{stem}.png", (labels > 0).astype(np.uint8) * 255)
        if instances:
            (root / "instances").mkdir(exist_ok=True)
            write_instance_png(root / "instances" / f"{stem}.png", labels)
    return root


def run(gen):
    """Drive an import or export generator to its end; its report."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def read_labels(root: Path, stem: str) -> np.ndarray:
    return read_instance_labels(root / "instances" / f"{stem}.png")


def read_stone_mask(root: Path, stem: str) -> np.ndarray:
    return read_mask(root / "masks" / f"{stem}.png")


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The same stones, pixel for pixel, whatever their ids."""
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    pairs = {(int(x), int(y)) for x, y in zip(a[a > 0], b[a > 0])}
    return len(pairs) == len(np.unique(a[a > 0])) == len(np.unique(b[b > 0]))
