"""The U-Net in PyTorch, on the CPU or a GPU: the one network that imports torch.

torch is imported where the model or a tensor is first needed (``torch_module``, ~2 s
here), so that a caller who never runs PyTorch -- the CPU path with a cached ONNX export --
never imports it (tests/test_no_torch.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stoneseg_core.errors import OutOfMemoryError
from stoneseg_core.inference.tiled_pass import tile_batches, tile_corners
from stoneseg_core.inference.tiling import blend_window
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.hardware import (
    autocast_dtype_name,
    gpu_may_be_present,
    resolve_device_name,
)
from stoneseg_core.model.info import ModelInfo

if TYPE_CHECKING:
    import torch
    from torch import nn

# the test-time flips (InferenceConfig.tta), as axes of an (N, C, H, W) batch: none, left and
# right, up and down, both; a network's probabilities are averaged over them
FLIPS: list[tuple[int, ...]] = [(), (3,), (2,), (2, 3)]


def flips(tta: bool) -> list[tuple[int, ...]]:
    """The flips a pass averages over: all four with test-time augmentation, else none."""
    return FLIPS if tta else FLIPS[:1]


def torch_module():
    """torch, imported where the PyTorch model or a tensor is first needed (~2 s here)."""
    import torch

    return torch


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, asked only where a GPU may be present (hardware.py)."""
    if "torch" not in sys.modules and not gpu_may_be_present():
        return False
    return bool(torch_module().cuda.is_available())


def load_model(folder: Path, device) -> tuple[nn.Module, ModelInfo]:
    """``model.load_model``, imported when a model is first built (it brings torch and SMP)."""
    from stoneseg_core.model.network import load_model as load

    return load(folder, device)


def weights_version(model: nn.Module) -> int:
    """Grows whenever a weight or BatchNorm statistic is changed in place (training, loading)."""
    return sum(t._version for t in model.parameters()) + sum(t._version for t in model.buffers())


class TorchNetwork:
    """The PyTorch model on its device: autocast for reduced precision, channels_last where it
    pays, and a batch that runs out of memory run again one tile at a time.

    ``model`` may be None for a model ``folder`` whose ONNX export is cached: it is built
    from the folder the first time it is asked for (``model``).
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module | None,
        device_name: str,
        config: InferenceConfig,
        folder: Path | None = None,
    ):
        # "cpu", "cuda" or "cuda:N", chosen without torch (hardware.py); the torch.device
        # and dtype are made when first asked for (``device``, ``dtype``)
        self.device_name = device_name
        self.device_type = device_name.split(":")[0]
        self.dtype_name = autocast_dtype_name(self.device_type, config.amp)
        self.tta = config.tta
        # channels_last made fp32 CPU inference 1.2-1.7x faster here (oneDNN kernels); on a
        # GPU it pays only with reduced precision (tensor-core layouts)
        self.channels_last = self.device_type == "cpu" or self.dtype_name is not None
        self.folder = folder  # the model folder the model comes from, if any
        self._device = None
        self._model = self._prepare(model) if model is not None else None
        # the weights as loaded from the folder (ONNX Runtime notes its export of them)
        self.folder_version = -1
        if self._model is not None and folder is not None:
            self.folder_version = weights_version(self._model)

    @classmethod
    def for_model(cls, model: nn.Module, config: InferenceConfig, device=None) -> TorchNetwork:
        """``model`` on ``device`` (default: the config's; "auto" takes a GPU if there is one)."""
        if device is None:
            return cls(model, resolve_device_name(config.device, cuda_available), config)
        return cls(model, str(device), config)

    @classmethod
    def from_folder(
        cls, folder: Path, device_name: str, config: InferenceConfig, build: bool = True
    ) -> TorchNetwork:
        """The model in ``folder``: built now, or (``build`` False) when first asked for."""
        model = load_model(folder, device_name)[0] if build else None
        return cls(model, device_name, config, folder)

    @property
    def pytorch(self) -> TorchNetwork:
        """Itself: the PyTorch side of every Network (networks.Network)."""
        return self

    @property
    def device(self) -> torch.device:
        """The torch device (imports torch)."""
        if self._device is None:
            self._device = torch_module().device(self.device_name)
        return self._device

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for float32 (imports torch only for reduced precision)."""
        return None if self.dtype_name is None else getattr(torch_module(), self.dtype_name)

    @property
    def built(self) -> bool:
        """Whether the PyTorch model exists yet (it is built when first asked for)."""
        return self._model is not None

    @property
    def model(self) -> nn.Module:
        """The PyTorch model (built from the model folder the first time it is needed)."""
        if self._model is None:
            # never as inference tensors, even when first asked for inside a pass: the
            # weights must keep their version counters (weights_version)
            with torch_module().inference_mode(False):
                self._model = self._prepare(load_model(self.folder, self.device)[0])
        return self._model

    def _prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device).eval()
        if self.channels_last:
            return model.to(memory_format=torch_module().channels_last)
        return model

    def _autocast(self):
        from stoneseg_core.model.device import autocast

        return autocast(self.device, self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised float32 on the device -> (N, C, H, W) probabilities there."""
        torch = torch_module()
        model = self.model
        with torch.inference_mode():
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            views = flips(self.tta)
            total = None
            with self._autocast():
                for axes in views:
                    xi = torch.flip(x, axes) if axes else x
                    prob = torch.sigmoid(model(xi).float())
                    prob = torch.flip(prob, axes) if axes else prob
                    total = prob if total is None else total + prob
            return total / len(views)

    def forward_oom_safe(self, batch: torch.Tensor) -> torch.Tensor:
        """Forward a batch; out of memory, again one tile at a time; a tile alone: a message."""
        torch = torch_module()
        try:
            return self.forward(batch)
        except torch.OutOfMemoryError as exc:
            if self.device_type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                return torch.cat(
                    [self.forward_oom_safe(batch[i : i + 1]) for i in range(len(batch))]
                )
            raise OutOfMemoryError(
                f"The {self.device_type.upper()} ran out of memory on one tile; use a smaller tile or the CPU."
            ) from exc

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32 -> (N, C, H, W) probabilities, through the device."""
        x = torch_module().from_numpy(batch).to(self.device)
        return self.forward_oom_safe(x).cpu().numpy()

    def tiles_on_device(
        self,
        padded: np.ndarray,
        config: InferenceConfig,
        info: ModelInfo,
        should_stop: Callable[[], bool] | None,
    ) -> np.ndarray:
        """The tiled pass (tiled_pass.tiled) with the photo, the tiles and the blending kept
        on the device.

        The photo goes up once (uint8, from pinned memory) and the probability comes down
        once, instead of a normalised float copy of every tile going up and its result
        coming down (64 small copies from pageable memory for a 24 MP photo).
        Returns (C, H, W).
        """
        torch = torch_module()
        dev, tile = self.device, config.tile
        ph, pw = padded.shape[:2]
        with torch.inference_mode():
            x = self._normalised_on_device(padded, info)
            weight = torch.from_numpy(blend_window(tile, config.overlap)).to(dev)
            acc = torch.zeros((info.classes, ph, pw), dtype=torch.float32, device=dev)
            norm = torch.zeros((ph, pw), dtype=torch.float32, device=dev)
            for chunk in tile_batches(tile_corners(ph, pw, config), config, should_stop):
                batch = torch.stack([x[:, y : y + tile, x0 : x0 + tile] for y, x0 in chunk])
                probs = self.forward_oom_safe(batch)
                for (y, x0), p in zip(chunk, probs):
                    acc[:, y : y + tile, x0 : x0 + tile] += p * weight
                    norm[y : y + tile, x0 : x0 + tile] += weight
            out = (acc / norm.clamp_min(1e-6)).cpu().numpy()
        return out

    def _normalised_on_device(self, image: np.ndarray, info: ModelInfo) -> torch.Tensor:
        """``image`` (H, W, 3) uint8 uploaded once (pinned on a GPU), normalised there: (3, H, W)."""
        torch = torch_module()
        dev = self.device
        img = torch.from_numpy(image)
        if dev.type == "cuda":
            img = img.pin_memory()
        img = img.to(dev, non_blocking=True)
        mean = torch.tensor(info.mean, dtype=torch.float32, device=dev).view(3, 1, 1)
        std = torch.tensor(info.std, dtype=torch.float32, device=dev).view(3, 1, 1)
        return (img.permute(2, 0, 1).float() / 255.0 - mean) / std
