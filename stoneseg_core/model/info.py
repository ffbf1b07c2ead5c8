"""What a model folder is, read without PyTorch: ``config.json`` as a ``ModelInfo``.

``model.py`` builds, saves and loads the network (torch, SMP); this module only reads the
configuration, so the ONNX Runtime path (and the command line's start-up) never imports
torch. ``model.py`` re-exports everything here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stoneseg_core.errors import ModelFileError
from stoneseg_core.model.config import TARGETS, TrainConfig
from stoneseg_core.model.scale import ScalePolicy

log = logging.getLogger(__name__)

FORMAT = "stoneseg-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# ImageNet normalisation (the default of models written before it was stored)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelInfo:
    """Everything in config.json. ``train`` is the TrainConfig used."""

    encoder: str
    work_size: int
    threshold: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    train_images: list[str] = field(default_factory=list)
    val_images: list[str] = field(default_factory=list)
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    parent: str | None = None
    target: str = "mask"  # what the output channels mean: a key of config.TARGETS
    # where the encoder's starting weights came from: {"source": "package", "package": ...,
    # "version": ..., "file": ..., "sha256": ...}, {"source": "none"} for random init, ...
    encoder_weights: dict[str, Any] = field(default_factory=dict)
    # how ``threshold`` was set: {"method": "validation-iou", "images": [...], ...} or {}
    threshold_choice: dict[str, Any] = field(default_factory=dict)
    # photos the ancestors of a fine-tuned model trained on (its own are train_images)
    trained_before: list[str] = field(default_factory=list)
    # how photos are brought to the working scale: work_scale.ScalePolicy.to_json(); empty
    # for files written before scale policies existed (they are long-side at work_size)
    scale: dict[str, Any] = field(default_factory=dict)
    # where the model comes from when it was not trained in a project: the installed stone
    # model records its data sets, their licences and attribution, the photos held out
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def scale_policy(self) -> ScalePolicy:
        """The model's scale policy (long-side at ``work_size`` for older files)."""
        return ScalePolicy.from_json(self.scale, self.work_size)

    @property
    def lineage_train_images(self) -> list[str]:
        """Every photo this model or any ancestor trained on: never honest to validate on."""
        return list(dict.fromkeys([*self.trained_before, *self.train_images]))

    @property
    def classes(self) -> int:
        """Output channels: channel 0 is always the stone; channel 1 (if any) the boundary band
        ("mask+boundary") or each stone's distance to its edge ("mask+distance")."""
        return TARGETS[self.target]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": "Unet",
            "encoder": self.encoder,
            "in_channels": 3,
            "classes": self.classes,
            "target": self.target,
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "work_size": self.work_size,
            "scale": self.scale_policy.to_json(),
            "threshold": self.threshold,
            "threshold_choice": self.threshold_choice,
            "encoder_weights": self.encoder_weights,
            "train_config": self.train,
            "history": self.history,
            "metrics": self.metrics,
            "train_images": self.train_images,
            "trained_before": self.trained_before,
            "val_images": self.val_images,
            "created": self.created,
            "versions": self.versions,
            "parent": self.parent,
            **({"provenance": self.provenance} if self.provenance else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], where: Path) -> ModelInfo:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ModelFileError(
                f"{where} is not a StoneSeg model (config.json lacks format '{FORMAT}')."
            )
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelFileError(
                f"{where} was written by a newer StoneSeg; update StoneSeg to open it."
            )
        classes = d.get("classes")
        if (
            d.get("architecture") != "Unet"
            or d.get("in_channels") != 3
            or type(classes) is not int
            or classes not in TARGETS.values()
        ):
            raise ModelFileError(f"{where} holds an architecture StoneSeg cannot run.")
        # files written before the boundary target have no "target": they are 1-channel masks
        target = d.get("target", "mask")
        if target not in TARGETS or TARGETS[target] != classes:
            raise ModelFileError(
                f"{where} has {classes} output channel(s) but target {target!r}: "
                "StoneSeg cannot tell what its outputs mean."
            )
        try:
            norm = d["normalization"]
            info = cls(
                encoder=str(d["encoder"]),
                work_size=int(d["work_size"]),
                threshold=float(d.get("threshold", 0.5)),
                mean=tuple(float(x) for x in norm["mean"]),
                std=tuple(float(x) for x in norm["std"]),
                train=dict(d.get("train_config") or {}),
                history=list(d.get("history") or []),
                metrics=dict(d.get("metrics") or {}),
                train_images=list(d.get("train_images") or []),
                val_images=list(d.get("val_images") or []),
                created=str(d.get("created", "")),
                versions=dict(d.get("versions") or {}),
                parent=d.get("parent"),
                target=target,
                encoder_weights=dict(d.get("encoder_weights") or {}),
                threshold_choice=dict(d.get("threshold_choice") or {}),
                trained_before=_ancestors_train_images(d, where),
                scale=dict(d.get("scale") or {}),
                provenance=dict(d.get("provenance") or {}),
            )
            info.scale_policy  # noqa: B018  (refuses an unknown policy now, not at first use)
            return info
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}/config.json is damaged: {exc}") from exc

    @property
    def train_config(self) -> TrainConfig:
        # files written before the boundary target record none: they trained the mask alone
        return (
            TrainConfig.from_dict({"target": self.target, **self.train})
            if self.train
            else TrainConfig(encoder=self.encoder, target=self.target)
        )


def _ancestors_train_images(d: dict[str, Any], where: Path, depth: int = 0) -> list[str]:
    """``trained_before`` of a config; for files written before it existed, read from the
    parent folders still on disk (a model fine-tuned from a lost parent: its own record only)."""
    if "trained_before" in d:
        return [str(x) for x in d.get("trained_before") or []]
    parent = d.get("parent")
    if not parent or depth > 50:
        return []
    cfg = Path(parent) / CONFIG_FILE
    try:
        pd = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        log.warning(
            "%s: its parent %s cannot be read; its ancestors' photos are unknown", where, parent
        )
        return []
    earlier = _ancestors_train_images(pd, Path(parent), depth + 1)
    return list(dict.fromkeys([*earlier, *(str(x) for x in pd.get("train_images") or [])]))


def read_model_info(folder: str | Path) -> ModelInfo:
    folder = Path(folder)
    cfg = folder / CONFIG_FILE
    if not folder.is_dir():
        raise ModelFileError(f"Model folder not found: {folder}")
    if not cfg.is_file():
        raise ModelFileError(f"{folder} is not a StoneSeg model: it has no {CONFIG_FILE}.")
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{cfg} is damaged: {exc}") from exc
    return ModelInfo.from_json(data, folder)
