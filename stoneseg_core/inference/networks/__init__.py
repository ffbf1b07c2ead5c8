"""What runs the U-Net on a batch of tiles, and the one function that picks it.

A ``Network`` takes a normalised batch (N, 3, H, W) float32 and gives the probability of
each output channel (N, C, H, W) float32, in numpy; a batch that runs out of memory is run
again one tile at a time. Three of them, picked by ``pick_network`` from the
InferenceConfig and the device, as segmentation_models_pytorch picks an encoder by name:

* ``TorchNetwork`` (pytorch.py): the model in PyTorch, on a GPU or the CPU;
* ``OnnxRuntimeNetwork`` (onnx_runtime.py): float32 on the CPU in ONNX Runtime, the
  default there (faster than eager PyTorch; without torch once the export is cached);
* ``Int8Network`` (int8.py): runtime "onnx-int8", its int8 version once calibrated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from stoneseg_core.inference.networks.int8 import Int8Network
from stoneseg_core.inference.networks.onnx_runtime import OnnxRuntimeNetwork
from stoneseg_core.inference.networks.pytorch import TorchNetwork, cuda_available
from stoneseg_core.inference.onnx_cache import OnnxNetwork, onnx_network_for_folder
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.hardware import autocast_dtype_name, resolve_device_name
from stoneseg_core.model.info import ModelInfo, read_model_info

__all__ = [
    "Int8Network",
    "Network",
    "OnnxRuntimeNetwork",
    "TorchNetwork",
    "load_network",
    "pick_network",
    "runs_in_onnx_runtime",
]

log = logging.getLogger(__name__)


@runtime_checkable
class Network(Protocol):
    """Runs the U-Net on normalised batches of tiles."""

    # the model in PyTorch on its device (built when first asked for): what an export is
    # made from, what runs when there is none, and what runs the tiles on a GPU
    pytorch: TorchNetwork

    @property
    def name(self) -> str:
        """What ran (or will run) the last pass: "torch", "onnxruntime" or "onnxruntime-int8"."""
        ...

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32 -> (N, C, H, W) probabilities, float32 in [0, 1]."""
        ...


def runs_in_onnx_runtime(config: InferenceConfig, device_name: str) -> bool:
    """Float32 on the CPU runs in ONNX Runtime unless the runtime asked for is "torch"."""
    device_type = device_name.split(":")[0]
    cpu_fp32 = device_type == "cpu" and autocast_dtype_name(device_type, config.amp) is None
    return config.runtime != "torch" and cpu_fp32


def pick_network(
    config: InferenceConfig, pytorch: TorchNetwork, cached: OnnxNetwork | None = None
) -> Network:
    """The Network that runs ``pytorch``'s model under ``config`` (``cached``: the ONNX export
    of its model folder, when one was found): ONNX Runtime for float32 on the CPU (int8 for
    runtime "onnx-int8"), PyTorch everywhere else."""
    if not runs_in_onnx_runtime(config, pytorch.device_name):
        if config.runtime.startswith("onnx"):
            log.info("ONNX Runtime runs float32 on the CPU only; this model runs in PyTorch.")
        return pytorch
    float32 = OnnxRuntimeNetwork(pytorch, config.tta, cached)
    return Int8Network(float32) if config.runtime == "onnx-int8" else float32


def load_network(folder: Path, config: InferenceConfig) -> tuple[Network, ModelInfo]:
    """The Network of the model in ``folder``, and the model's info. On the CPU with its ONNX
    export cached, the PyTorch model is not built until something needs it (it saves ~2.5 s
    of imports)."""
    device_name = resolve_device_name(config.device, cuda_available)
    cached = None
    if device_name == "cpu" and runs_in_onnx_runtime(config, device_name):
        cached = onnx_network_for_folder(folder)
    info = read_model_info(folder)
    pytorch = TorchNetwork.from_folder(folder, device_name, config, build=cached is None)
    return pick_network(config, pytorch, cached), info
