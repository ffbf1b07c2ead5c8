"""Runtime "onnx-int8": the float32 ONNX Runtime network's int8 version, once there is one.

The int8 version (onnx_cache: static QDQ quantisation, calibrated on a few photos at
working scale) is taken from the cache beside its float32 network, or made by ``calibrate``;
until then, and whenever quantising fails, the float32 network runs. An option, never the
default (onnx_cache says how close to float32 it comes).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from stoneseg_core.inference.networks.onnx_runtime import OnnxRuntimeNetwork
from stoneseg_core.inference.onnx_cache import OnnxNetwork, int8_network


class Int8Network:
    """``float32``'s int8 version where one is cached or calibrated, else ``float32``."""

    def __init__(self, float32: OnnxRuntimeNetwork):
        self.float32 = float32
        self.pytorch = float32.pytorch
        # the int8 version of ``_int8_of`` (a float32 session); None: none cached or made
        self._int8: OnnxNetwork | None = None
        self._int8_of: OnnxNetwork | None = None

    @property
    def name(self) -> str:
        """ "onnxruntime-int8" when the int8 version of the float32 session runs, else the
        float32 network's name."""
        int8 = self._int8 is not None and self._int8_of is self.float32.exported
        return "onnxruntime-int8" if int8 else self.float32.name

    def session(self) -> OnnxNetwork | None:
        """The int8 session once there is one, else the float32 one (None: PyTorch)."""
        net = self.float32.session()
        if net is None:
            return None
        if self._int8_of is not net:  # a new float32 network: its int8 version if cached
            self._int8, self._int8_of = int8_network(net), net
        return self._int8 if self._int8 is not None else net

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32 -> (N, C, H, W) probabilities."""
        return self.float32.run(self.session(), batch)

    def calibrate(self, inputs: Iterable[np.ndarray], limit: int) -> bool:
        """Quantise the float32 network on up to ``limit`` of ``inputs`` (normalised
        (1, 3, H, W) at working scale) unless its int8 version is there already (then
        ``inputs`` is not read). True when the int8 network runs from now on."""
        net = self.session()
        if net is None:
            return False
        if net is self._int8:
            return True
        calibration = []
        for x in inputs:
            calibration.append(x)
            if len(calibration) >= limit:
                break
        self._int8, self._int8_of = int8_network(net, calibration), net
        return self._int8 is not None
