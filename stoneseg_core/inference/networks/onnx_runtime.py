"""The U-Net in ONNX Runtime: float32 on the CPU, numpy in and out, no torch once exported.

On the CPU a float32 U-Net is faster in ONNX Runtime than in eager PyTorch (onnx_export.py).
The network comes from the cache (``onnx_cache``) or is exported from the PyTorch model at
the first pass, and again whenever the model's weights have changed in place: training's
validation wraps a live model whose weights change between epochs. When no export can be
had (onnxruntime missing, an export that disagrees), the pass runs in PyTorch.
"""

from __future__ import annotations

import numpy as np

from stoneseg_core.errors import OutOfMemoryError
from stoneseg_core.inference.networks.pytorch import TorchNetwork, flips, weights_version
from stoneseg_core.inference.onnx_cache import OnnxNetwork, remember_folder


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), in place on ``logits`` (float32; exp overflows to inf: 0)."""
    with np.errstate(over="ignore"):
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
    logits += 1.0
    return np.reciprocal(logits, out=logits)


class OnnxRuntimeNetwork:
    """The exported network of ``pytorch``'s model in an ONNX Runtime session (``cached``:
    the export of its model folder, found before the model was built), PyTorch when none."""

    def __init__(self, pytorch: TorchNetwork, tta: bool, cached: OnnxNetwork | None = None):
        self.pytorch = pytorch
        self.tta = tta
        self.exported: OnnxNetwork | None = cached  # the session last used; None: PyTorch
        self._exported_version = -1  # the weights it was exported from

    @property
    def name(self) -> str:
        """ "onnxruntime", or "torch" while no export runs (none yet, or none to be had)."""
        return "torch" if self.exported is None else "onnxruntime"

    def session(self) -> OnnxNetwork | None:
        """The ONNX Runtime session for the model's weights now (exported when they changed),
        None when the pass must run in PyTorch."""
        if not self.pytorch.built and self.exported is not None:
            return self.exported  # the cached export of the folder's weights
        version = weights_version(self.pytorch.model)
        if version != self._exported_version:
            self.exported = self._export(version)
            self._exported_version = version
        return self.exported

    def _export(self, version: int) -> OnnxNetwork | None:
        """The model exported (or found in the cache), noted for its folder when its weights
        are still the folder's."""
        from stoneseg_core.inference.onnx_export import (
            onnx_network,  # exports with torch, which the model has loaded
        )

        pytorch = self.pytorch
        net = onnx_network(pytorch.model)
        if net is not None and pytorch.folder is not None and version == pytorch.folder_version:
            remember_folder(pytorch.folder, net)  # the weights as in the folder's files
        return net

    def forward(self, net: OnnxNetwork, x: np.ndarray) -> np.ndarray:
        """What ``TorchNetwork.forward`` computes, in numpy around ONNX Runtime: no torch."""
        views = flips(self.tta)
        total = None
        for axes in views:
            xi = np.ascontiguousarray(np.flip(x, axes)) if axes else x
            prob = sigmoid(net(xi))
            prob = np.flip(prob, axes) if axes else prob
            total = prob if total is None else total + prob
        return total if len(views) == 1 else total / len(views)

    def forward_oom_safe(self, net: OnnxNetwork, batch: np.ndarray) -> np.ndarray:
        """``TorchNetwork.forward_oom_safe`` for ONNX Runtime: out of memory (numpy's
        MemoryError, or ORT failing to allocate), again one tile at a time; a tile alone: a
        message."""
        try:
            return self.forward(net, batch)
        except Exception as exc:
            if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
                raise
            if len(batch) > 1:
                return np.concatenate(
                    [self.forward_oom_safe(net, batch[i : i + 1]) for i in range(len(batch))]
                )
            raise OutOfMemoryError(
                "The CPU ran out of memory on one tile; use a smaller tile."
            ) from exc

    def run(self, net: OnnxNetwork | None, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32 -> (N, C, H, W) probabilities through ``net``, or
        through PyTorch when it is None."""
        if net is None:
            return self.pytorch.probabilities(batch)
        return self.forward_oom_safe(net, batch)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32 -> (N, C, H, W) probabilities."""
        return self.run(self.session(), batch)
