"""Shared fixtures: real image and mask files made in tmp_path, and one tiny trained model."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # tests never need a screen

import cv2
import numpy as np
import pytest


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


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A small real U-Net trained for a few epochs on synthetic scenes (shared by tests)."""
    from stoneseg_core.config import TrainConfig
    from stoneseg_core.project import Project
    from stoneseg_core.train import run_training

    # 128-px crops: with 64 px the 5-level encoder's bottleneck is 2x2 and mostly padding,
    # and such a model behaves unlike a real one on larger inputs.
    root = make_dataset(tmp_path_factory.mktemp("train") / "data", n=5, size=(128, 160), seed=1)
    cfg = TrainConfig(
        epochs=4, crop=128, work_size=160, batch_size=4, samples_per_image=4, lr=5e-3, seed=0
    )
    out = tmp_path_factory.mktemp("model") / "model"
    run_training(Project.open(root).labelled_pairs(), out, cfg)
    return out
