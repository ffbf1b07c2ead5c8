"""Synthetic stone scenes written as real image and mask files (shared by the tests)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_scene(
    rng: np.random.Generator, height: int, width: int, n_stones: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like scene: textured bright ellipses (stones) on a darker noisy ground."""
    ground = rng.normal(70, 12, (height, width, 3)).clip(0, 255)
    ground[..., 2] += 15  # slightly blue-grey sand
    image = ground.astype(np.float32)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(n_stones):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        ax = int(rng.integers(max(3, width // 14), max(4, width // 6)))
        ay = int(rng.integers(max(3, height // 14), max(4, height // 6)))
        angle = float(rng.uniform(0, 180))
        stone = np.zeros((height, width), np.uint8)
        cv2.ellipse(stone, (cx, cy), (ax, ay), angle, 0, 360, 255, -1)
        tone = rng.uniform(150, 210, 3)
        texture = rng.normal(0, 10, (height, width, 1))
        sel = stone > 0
        image[sel] = (tone + texture[sel]).clip(0, 255)
        mask[sel] = 255
    return image.clip(0, 255).astype(np.uint8), mask


def write_rgb(path: Path, rgb: np.ndarray, params: list[int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params or [])
    return path


def make_dataset(
    root: Path, n: int = 4, size: tuple[int, int] = (96, 128), seed: int = 0, ext: str = ".png"
) -> Path:
    """``root/images`` + ``root/masks`` with ``n`` synthetic labelled photos."""
    rng = np.random.default_rng(seed)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = make_scene(rng, *size)
        write_rgb(root / "images" / f"img{i}{ext}", img)
        cv2.imwrite(str(root / "masks" / f"img{i}.png"), mask)
    return root


def separated_stones(
    rng: np.random.Generator,
    height: int,
    width: int,
    cell: int = 48,
    min_radius: float = 3.0,
) -> np.ndarray:
    """Int32 labels of known discs and ellipses, one per ``cell`` x ``cell`` square of a grid
    (randomly placed and rotated in it, at least 2 px from its sides, so no two touch); the
    grid starts half a cell outside the scene, so stones are cut by its edges too."""
    from skimage.draw import ellipse

    labels = np.zeros((height, width), np.int32)
    n = 0
    for top in range(-cell // 2, height, cell):
        for left in range(-cell // 2, width, cell):
            a = rng.uniform(min_radius, cell / 2 - 2)
            b = a if rng.random() < 0.4 else rng.uniform(min_radius, a)  # a disc, or an ellipse
            room = cell / 2 - 2 - a
            cy = top + cell / 2 + rng.uniform(-room, room)
            cx = left + cell / 2 + rng.uniform(-room, room)
            rr, cc = ellipse(cy, cx, b, a, shape=labels.shape, rotation=rng.uniform(0, np.pi))
            if rr.size:
                n += 1
                labels[rr, cc] = n
    return labels
