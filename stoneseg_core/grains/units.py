"""The unit of grain size: psi = log2(size in mm), used by every step of the chain."""

from __future__ import annotations

import math

import numpy as np

from stoneseg_core.errors import StonesegError


def psi(mm: float | np.ndarray) -> float | np.ndarray:
    """psi = log2(size in mm): 1 mm -> 0, 64 mm -> 6. Krumbein's phi is its negative."""
    if np.isscalar(mm):
        if not mm > 0:
            raise StonesegError(f"psi needs a positive size in mm, got {mm}.")
        return math.log2(mm)
    arr = np.asarray(mm, dtype=np.float64)
    if np.any(arr <= 0):
        raise StonesegError("psi needs positive sizes in mm.")
    return np.log2(arr)
