"""What the machine offers, found without importing PyTorch.

Importing torch costs ~2 s on the 2-core EPYC (a third of a 14-photo ``stoneseg segment``
run). On the CPU with a cached ONNX export nothing needs it, so the device is chosen here
first, by a cheap look for a GPU driver, and torch is asked only where one may be present:

* ``gpu_may_be_present``: Linux/Windows: the CUDA driver library (``libcuda.so.1`` /
  ``nvcuda.dll``) loads and reports at least one device (``cuInit`` + ``cuDeviceGetCount``,
  what ``torch.cuda.is_available()`` does, so ``CUDA_VISIBLE_DEVICES`` counts the same); or
  an AMD ROCm device (``/dev/kfd``), which PyTorch's ROCm builds also call "cuda". macOS:
  False -- StoneSeg's "auto" never picks Apple's MPS, and no CUDA runs there.
* ``resolve_device_name``: the device setting's rules, given torch's ``cuda_available``.
  ``inference.networks.pytorch.cuda_available`` asks torch only when ``gpu_may_be_present`` (or torch is imported anyway:
  training, the window), so "auto" on a machine without a GPU driver is "cpu" without
  torch, and otherwise torch decides (``torch.cuda.is_available()``) as before;
  ``device.py`` (torch devices for training) asks torch directly.

This module never imports torch (an import-linter contract).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from stoneseg_core.errors import StonesegError


@functools.lru_cache(maxsize=1)
def _cuda_driver_devices() -> int:
    """Devices the CUDA driver reports (0 without a driver or a device); no torch."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:  # e.g. 100, no CUDA-capable device
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except (AttributeError, OSError):
            return 0
    return 0


def gpu_may_be_present() -> bool:
    """True when a GPU PyTorch could use may be there (then torch decides); no torch import."""
    if sys.platform == "darwin":
        return False
    if _cuda_driver_devices() > 0:
        return True
    return sys.platform.startswith("linux") and Path("/dev/kfd").exists()  # ROCm


def resolve_device_name(name: str, cuda_available: Callable[[], bool]) -> str:
    """ "cpu", "cuda" or "cuda:N" for a device setting (auto, cpu, cuda, cuda:N).

    ``cuda_available``: torch's answer, asked only when it matters (the caller imports torch
    for it: ``device.resolve_device`` always, the inference networks only where
    ``gpu_may_be_present``).
    """
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name.startswith("cuda") and not cuda_available():
        raise StonesegError(
            "CUDA was requested but no CUDA GPU is available; use --device cpu or auto."
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise StonesegError(f"Unknown device {name!r}: use auto, cpu or cuda.")
    return name


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def autocast_dtype_name(
    device_type: str,
    amp: str,
    training: bool = False,
    native_bf16: Callable[[], bool] = cpu_has_native_bf16,
) -> str | None:
    """The autocast dtype's name ("bfloat16", "float16") or None for float32.

    The rules, and the measurements behind them, are ``device.autocast_dtype``'s.
    """
    if amp == "off":
        return None
    if device_type == "cuda":
        return {"fp16": "float16", "bf16": "bfloat16"}.get(amp)
    if amp == "bf16" or (amp == "auto" and training and native_bf16()):
        return "bfloat16"
    return None


@functools.lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add(
                (topo / "physical_package_id").read_text().strip()
                + ":"
                + (topo / "core_id").read_text().strip()
            )
        except OSError:
            cores.add(f"cpu{cpu}")
    return max(1, len(cores))


def intra_op_threads() -> int:
    """Threads for one network pass on the CPU: what PyTorch is set to use once it is
    imported (the window leaves a core to itself, app.py), else ``OMP_NUM_THREADS`` when
    set, else the physical cores (PyTorch's own default)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return max(1, int(torch.get_num_threads()))
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return physical_cores()
