"""From labelled photos to training tensors: working scale, caching, augmentation.

Decoded photos are resized to the model's working scale once and kept in memory, so an
epoch never touches the disk again (the notebook decoded every full-size JPEG at every step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import MaskError
from .imageio import read_image, read_mask

log = logging.getLogger(__name__)


def scale_factor(height: int, width: int, work_size: int) -> float:
    """Factor that brings the longer side of a photo to ``work_size`` pixels."""
    return work_size / max(height, width)


def to_work_scale(image: np.ndarray, work_size: int) -> np.ndarray:
    h, w = image.shape[:2]
    f = scale_factor(h, w, work_size)
    if abs(f - 1.0) < 1e-6:
        return image
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def mask_to_work_scale(mask: np.ndarray, work_size: int) -> np.ndarray:
    """Resize a 0/255 mask by area averaging, then threshold at half: boundaries stay put."""
    scaled = to_work_scale(mask, work_size)
    return np.where(scaled >= 128, 255, 0).astype(np.uint8)


def normalize(image: np.ndarray, mean, std) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 CHW normalised."""
    x = image.astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass
class Sample:
    """One labelled photo at working scale, plus its full-size mask for honest metrics."""

    stem: str
    image: np.ndarray  # working scale, uint8 RGB
    mask: np.ndarray  # working scale, uint8 0/255
    full_mask: np.ndarray | None  # original size, uint8 0/255 (validation only)


def load_samples(
    pairs: list[tuple[Path, Path]], work_size: int, keep_full_mask: bool
) -> list[Sample]:
    samples = []
    for img_path, mask_path in pairs:
        image = read_image(img_path)
        mask = read_mask(mask_path, expected_size=image.shape[:2])
        samples.append(
            Sample(
                stem=img_path.stem,
                image=to_work_scale(image, work_size),
                mask=mask_to_work_scale(mask, work_size),
                full_mask=mask if keep_full_mask else None,
            )
        )
    return samples


def train_augmentation(crop: int, seed: int | None = None) -> A.Compose:
    """Random crop at working scale, then geometry and photometry a field photo can have.

    Flips and 90-degree turns are free (stones have no up); a mild scale jitter teaches the
    network that stones come in a range of sizes around the working scale; brightness,
    contrast, colour, blur, noise and JPEG artefacts cover camera and lighting.
    """
    reflect = cv2.BORDER_REFLECT_101
    return A.Compose(
        [
            A.PadIfNeeded(min_height=crop, min_width=crop, border_mode=reflect),
            A.RandomCrop(height=crop, width=crop),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=1.0),
            A.Affine(
                scale=(0.8, 1.25), rotate=(-20, 20), shear=(-5, 5), border_mode=reflect, p=0.5
            ),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.6),
            A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=25, val_shift_limit=10, p=0.4),
            A.RandomGamma(gamma_limit=(80, 125), p=0.3),
            A.OneOf(
                [
                    A.GaussianBlur(sigma_limit=(0.3, 1.2), p=1.0),
                    A.GaussNoise(std_range=(0.02, 0.06), p=1.0),
                    A.ImageCompression(quality_range=(50, 95), p=1.0),
                ],
                p=0.3,
            ),
        ],
        seed=seed,
    )


class CropDataset(Dataset):
    """``samples_per_image`` random augmented crops of every training photo per epoch."""

    def __init__(
        self,
        samples: list[Sample],
        crop: int,
        samples_per_image: int,
        mean,
        std,
        augment: bool = True,
        seed: int | None = None,
    ):
        if not samples:
            raise MaskError("No training images.")
        self.samples = samples
        self.crop = crop
        self.per_image = samples_per_image
        self.mean, self.std = mean, std
        self.transform = (
            train_augmentation(crop, seed)
            if augment
            else A.Compose(
                [
                    A.PadIfNeeded(
                        min_height=crop, min_width=crop, border_mode=cv2.BORDER_REFLECT_101
                    ),
                    A.RandomCrop(height=crop, width=crop),
                ],
                seed=seed,
            )
        )

    def __len__(self) -> int:
        return len(self.samples) * self.per_image

    def __getitem__(self, index: int):
        s = self.samples[index % len(self.samples)]
        out = self.transform(image=s.image, mask=s.mask)
        image = torch.from_numpy(normalize(out["image"], self.mean, self.std))
        mask = torch.from_numpy((out["mask"] > 127).astype(np.float32))[None]
        return image, mask


def seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)
