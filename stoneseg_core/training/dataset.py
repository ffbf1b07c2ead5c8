"""From labelled photos to training tensors: working scale, caching, augmentation.

Decoded photos are resized to the model's working scale once and kept in memory, so an
epoch never touches the disk again (the notebook decoded every full-size JPEG at every step).

A training pair is ``(image, mask)`` or ``(image, mask, instances)``: ``instances`` is an
optional label image of the same size (a 16-bit PNG, 0 = ground, one id per stone; see
``imageio.read_instance_labels``). It is only used by the "mask+boundary" target, whose
second channel is the band of each stone within ``boundary_px`` of another stone or of the
ground (``boundary_band``); without instances the stones are the mask's connected pieces.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stoneseg_core.errors import DataError, MaskError, StonesegError
from stoneseg_core.io.images import (
    instances_disagreement,
    read_image,
    read_instance_labels,
    read_mask,
)
from stoneseg_core.model.scale import (  # noqa: F401  (the names tests and benchmarks import from here)
    ScalePolicy,
    instances_by,
    instances_to_work_scale,
    mask_by,
    mask_to_work_scale,
    normalize,
    resize_by,
    scale_factor,
    to_work_scale,
    typical_stone_px,
)


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_band(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels of a stone (label > 0) within ``width`` px (Euclidean) of a pixel with another label.

    "Another label" is the ground (0) or another stone; the photo's edge is neither, so a
    stone cut by the edge of the photo (or of a training crop) has no band there. With
    ``width`` 1 the band is the stone pixels with a 4-neighbour of another label. Bool (H, W).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise MaskError(f"Instance labels must be a 2-D image, got shape {labels.shape}.")
    if width < 1:
        raise MaskError(f"The boundary width must be at least 1 pixel, got {width}.")
    # float32 holds every id up to 2**24 exactly; cv2's min/max filters are fast on it
    lab = labels.astype(np.float32)
    kernel = _disk(int(width))
    hi = cv2.dilate(lab, kernel, borderType=cv2.BORDER_REPLICATE)
    lo = cv2.erode(lab, kernel, borderType=cv2.BORDER_REPLICATE)
    return (labels > 0) & ((hi != lab) | (lo != lab))


def mask_components(mask: np.ndarray) -> np.ndarray:
    """The 8-connected pieces of a binary mask as labels, for when no instance labels exist."""
    n, labels = cv2.connectedComponents((np.asarray(mask) > 0).view(np.uint8), connectivity=8)
    return labels


def small_stone_weights(labels: np.ndarray, most: float) -> np.ndarray:
    """Per-pixel BCE weights (float32 (H, W)) that lift small stones: each stone whose area
    is under the median area of the crop's whole stones weighs sqrt(median / area), at most
    ``most``; every other pixel (ground, larger stones, and stones cut by the crop's edge,
    whose visible part says nothing of their size) weighs 1. With fewer than 3 whole
    stones the median means nothing and every pixel weighs 1."""
    labels = np.asarray(labels)
    weights = np.ones(labels.shape, np.float32)
    if most <= 1.0:
        return weights
    # every id of the crop with its pixel count (ids may be any size: no lookup table)
    ids, inverse, areas = np.unique(labels, return_inverse=True, return_counts=True)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    whole = (ids > 0) & ~np.isin(ids, edge)
    if whole.sum() < 3:
        return weights
    median = float(np.median(areas[whole]))
    w = np.clip(np.sqrt(median / areas), 1.0, most).astype(np.float32)
    w[~whole] = 1.0
    if not (w > 1.0).any():
        return weights
    return w[inverse.reshape(labels.shape)]


def stone_and_boundary(
    mask: np.ndarray, instances: np.ndarray | None, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The two training targets (bool): stone = the mask; boundary = band of the instances, inside the mask."""
    stone = np.asarray(mask) > 127
    labels = mask_components(stone) if instances is None else instances
    return stone, boundary_band(labels, width) & stone


def stone_distance(labels: np.ndarray) -> np.ndarray:
    """The "mask+distance" target's second plane (float32 (H, W) in [0, 1]): each stone
    pixel's distance to the nearest pixel of another label (the ground or another stone),
    divided by its stone's largest, so every stone peaks at 1 at its centre whatever its
    size and falls towards its edge; 0 on the ground. A stone 1-2 px across is 1 throughout.
    The photo's edge is not an edge (as for ``boundary_band``)."""
    labels = np.asarray(labels)
    stones = labels > 0
    if not stones.any():
        return np.zeros(labels.shape, np.float32)
    inner = stones & ~boundary_band(labels, 1)
    # OpenCV counts the pixels beyond the image as far, so a crop's edge is not an edge
    dist = cv2.distanceTransform(inner.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist += 1.0
    dist[~stones] = 0.0
    ids, inverse = np.unique(labels, return_inverse=True)
    peak = np.zeros(len(ids), np.float32)
    np.maximum.at(peak, inverse.ravel(), dist.ravel())
    peak[peak == 0] = 1.0
    return (dist / peak[inverse.reshape(labels.shape)]).astype(np.float32)


@dataclass
class Sample:
    """One labelled photo at working scale, plus its full-size mask for honest metrics."""

    stem: str
    image: np.ndarray  # working scale, uint8 RGB
    mask: np.ndarray  # working scale, uint8 0/255
    full_mask: np.ndarray | None  # original size, uint8 0/255 (validation only)
    instances: np.ndarray | None = None  # working scale, uint16 (or int32) ids, 0 = ground
    factor: float = 1.0  # working pixels per photo pixel
    # the photo at its own size (validation with a stone-size policy only: its scale is
    # estimated by the network, as for a photo nobody labelled, not read off its mask)
    full_image: np.ndarray | None = None


def with_stone_px(policy: ScalePolicy, sizes: list[float | None]) -> ScalePolicy:
    """``policy`` with ``stone_px`` the median of ``sizes`` (typical stones at the long-side
    scale; None: a photo without stones), clipped to 16-256 px."""
    known = [d for d in sizes if d is not None]
    stone_px = float(np.median(known)) if known else policy.work_size / 6
    return dataclasses.replace(policy, stone_px=float(np.clip(stone_px, 16.0, 256.0)))


def resolve_stone_px(pairs: list[tuple[Path, ...]], policy: ScalePolicy) -> ScalePolicy:
    """A stone-size policy with ``stone_px`` 0 gets the median typical stone of ``pairs``'
    masks at the long-side scale (the size the network would see them at): read before the
    photos are scaled, since their scale depends on it. (A long-side model records the same
    figure from its samples' masks, already at that scale: ``with_stone_px``.)"""
    if policy.policy != "stone-size" or policy.stone_px > 0:
        return policy
    sizes = []
    for pair in pairs:
        try:
            mask = read_mask(pair[1])
        except StonesegError:
            continue  # named by load_samples, which reads every file again
        d = typical_stone_px(mask)
        sizes.append(None if d is None else d * policy.long_side(*mask.shape[:2]))
    return with_stone_px(policy, sizes)


def load_samples(
    pairs: list[tuple[Path, ...]],
    scale: int | ScalePolicy,
    keep_full_mask: bool | Collection[str],
    with_instances: bool = True,
    keep_full_image: Collection[str] = (),
) -> list[Sample]:
    """Decode pairs ``(image, mask)`` or ``(image, mask, instances or None)`` at working scale.

    ``scale``: the long-side working size, or a ScalePolicy (a stone-size policy scales each
    photo by its mask's typical stone; ``stone_px`` must be resolved, see resolve_stone_px).
    ``keep_full_mask``: True/False for every pair, or the stems whose full-size mask to keep
    (the validation photos, scored at their own size); ``keep_full_image``: the stems whose
    photo to keep at its own size too. Instance labels are read only when
    ``with_instances`` (the boundary target needs them); they must have the photo's size,
    ids that have not saturated (``read_instance_labels(strict=True)``) and stones where
    the mask has them (``instances_disagreement``). Every unusable file is named in one
    DataError.
    """
    policy = scale if isinstance(scale, ScalePolicy) else ScalePolicy("long-side", int(scale))
    if isinstance(keep_full_mask, bool):
        keep = lambda _stem, k=keep_full_mask: k  # noqa: E731
    else:
        keep = set(keep_full_mask).__contains__
    keep_image = set(keep_full_image)
    samples = []
    problems: list[str] = []
    for pair in pairs:
        img_path, mask_path = pair[0], pair[1]
        inst_path = pair[2] if len(pair) > 2 else None
        try:
            image = read_image(img_path)
            mask = read_mask(mask_path, expected_size=image.shape[:2])
            labels = None
            if with_instances and inst_path is not None:
                labels = read_instance_labels(inst_path, image.shape[:2], strict=True)
                why = instances_disagreement(labels, mask)
                if why is not None:
                    inst = Path(inst_path)
                    raise MaskError(
                        f"Instance labels {inst.parent.name}/{inst.name} do not fit the mask "
                        f"{Path(mask_path).name}: {why}. Was the mask edited after them? Fix "
                        "them, or move them out of the instances folder."
                    )
        except StonesegError as exc:
            # go on: the user should hear of every bad file at once, not one per attempt
            problems.append(str(exc))
            continue
        # from the mask alone, as at inference (where only a predicted mask exists)
        factor = policy.for_training(mask)
        samples.append(
            Sample(
                stem=img_path.stem,
                image=resize_by(image, factor),
                mask=mask_by(mask, factor),
                full_mask=mask if keep(img_path.stem) else None,
                instances=None if labels is None else instances_by(labels, factor),
                factor=factor,
                full_image=image if img_path.stem in keep_image else None,
            )
        )
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise DataError(
            f"{len(problems)} of {len(pairs)} labelled photos cannot be used; fix or remove "
            f"them and train again:\n{listed}"
        )
    return samples


# instance labels travel through every geometric transform as a second mask (nearest
# interpolation, the same crop, flip, turn and affine as the image and the mask)
ADDITIONAL_TARGETS = {"instances": "mask"}


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
        additional_targets=ADDITIONAL_TARGETS,
        seed=seed,
    )


# stone-size training: every crop is first zoomed by a log-uniform factor within this many
# octaves either way (see CropDataset)
STONE_SIZE_ZOOM_OCTAVES = 0.75


class CropDataset(Dataset):
    """``samples_per_image`` random augmented crops of every training photo per epoch.

    ``zoom_octaves`` > 0 (stone-size training): each crop is cut from a window of the photo
    zoomed by a log-uniform factor within that many octaves either way. The stone-size
    policy brings every photo's typical stone to one size, so without it the network would
    see stones of one size only (the long-side policy shows it a range, since photos differ),
    would paint stones of that size whatever it is shown, and could neither segment a photo
    whose scale is estimated a little off nor tell, at the estimate, that it is off.

    An item is ``(image (3, H, W), target (C, H, W))``: C = 1 (stone) by default; with
    ``boundary_px`` > 0, C = 2 (stone, boundary band ``boundary_px`` wide, computed on the
    augmented crop so its width is the same at every scale jitter; with ``distance``, the
    stones' distance to their edges instead of the band, ``stone_distance``).
    """

    def __init__(
        self,
        samples: list[Sample],
        crop: int,
        samples_per_image: int,
        mean,
        std,
        augment: bool = True,
        seed: int | None = None,
        boundary_px: int = 0,
        zoom_octaves: float = 0.0,
        small_stone_weight: float = 1.0,
        distance: bool = False,
    ):
        if not samples:
            raise MaskError("No training images.")
        self.samples = samples
        self.crop = crop
        self.per_image = samples_per_image
        self.mean, self.std = mean, std
        self.boundary_px = int(boundary_px)
        self.zoom_octaves = float(zoom_octaves)
        self.small_stone_weight = float(small_stone_weight)
        self.distance = bool(distance)
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
                additional_targets=ADDITIONAL_TARGETS,
                seed=seed,
            )
        )

    def __len__(self) -> int:
        return len(self.samples) * self.per_image

    def _zoomed(self, s: Sample) -> Sample:
        """A window of ``s`` that, zoomed by a random factor, is about one crop across."""
        zoom = 2.0 ** random.uniform(-self.zoom_octaves, self.zoom_octaves)
        h, w = s.mask.shape[:2]
        side = max(1, round(self.crop / zoom))
        y0, x0 = random.randint(0, max(0, h - side)), random.randint(0, max(0, w - side))
        win = (slice(y0, y0 + side), slice(x0, x0 + side))
        return dataclasses.replace(
            s,
            image=resize_by(s.image[win], zoom),
            mask=mask_by(s.mask[win], zoom),
            instances=None if s.instances is None else instances_by(s.instances[win], zoom),
        )

    def __getitem__(self, index: int):
        s = self.samples[index % len(self.samples)]
        if self.zoom_octaves > 0:
            s = self._zoomed(s)
        if self.boundary_px <= 0:
            out = self.transform(image=s.image, mask=s.mask)
            image = torch.from_numpy(normalize(out["image"], self.mean, self.std))
            mask = torch.from_numpy((out["mask"] > 127).astype(np.float32))[None]
            return image, mask
        if s.instances is not None:
            out = self.transform(image=s.image, mask=s.mask, instances=s.instances)
        else:
            out = self.transform(image=s.image, mask=s.mask)
        labels = out.get("instances")
        if labels is None:  # the mask's pieces, found once for the band and the weights
            labels = mask_components(out["mask"] > 127)
        if self.distance:  # of the stones as the stone channel sees them
            stone = out["mask"] > 127
            second = stone_distance(np.where(stone, labels, 0))
        else:
            stone, second = stone_and_boundary(out["mask"], labels, self.boundary_px)
        image = torch.from_numpy(normalize(out["image"], self.mean, self.std))
        planes = [stone, second]
        if self.small_stone_weight > 1.0:
            stones = np.where(stone, labels, 0)  # the stones as the stone channel sees them
            planes.append(small_stone_weights(stones, self.small_stone_weight))
        target = torch.from_numpy(np.stack(planes).astype(np.float32))
        return image, target


def seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
