"""Choosing the device and the mixed-precision mode.

Measured on an AVX2-only AMD EPYC (no native bf16): bf16 autocast made a U-Net training
step 15x slower and inference over 100x slower than fp32, because the CPU emulates bf16.
So on the CPU, bf16 is used only for training and only where the processor has native
bf16 instructions. On a CUDA GPU "auto" means float32 too (see autocast_dtype).
"""

from __future__ import annotations

import functools
import os
from contextlib import nullcontext
from pathlib import Path

import torch

from .errors import StonesegError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StonesegError(
            "CUDA was requested but no CUDA GPU is available; use --device cpu or auto."
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise StonesegError(f"Unknown device {name!r}: use auto, cpu or cuda.")
    return torch.device(name)


def describe_devices() -> str:
    """One line for the user: what hardware StoneSeg found."""
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"CUDA: {names}"
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads()
    bf16 = ", native bf16" if cpu_has_native_bf16() else ""
    return (
        f"no GPU; CPU with {cores} core{'s' if cores != 1 else ''}{bf16}, training on "
        f"{threads} thread{'s' if threads != 1 else ''}"
        + (" (one core is left to the window)" if threads < cores else "")
    )


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def autocast_dtype(device: torch.device, amp: str, training: bool = False) -> torch.dtype | None:
    """The autocast dtype to use, or None for plain fp32.

    On a CPU with native bf16 (AVX512-BF16 or AMX), "auto" trains in bf16 (1.6x faster per
    step on a 2-core Zen 4 EPYC with avx512_bf16, tu-tf_efficientnet_lite0, 256-px crops) but
    infers in fp32: bf16 inference was no faster there (94 ms against 87 ms eager fp32 per
    384-px tile) and would leave out ONNX Runtime (float32 only), which is faster than both.
    """
    if amp == "off":
        return None
    if device.type == "cuda":
        # "auto" is float32 (cuDNN uses TF32 tensor cores for it): on an H200 this small
        # U-Net is bound by kernel launches, not arithmetic, and bf16 autocast made a
        # training step 1.3x slower and inference 1.25x slower while changing the masks
        # (tests/benchmarks/bench_gpu.py). bf16 or fp16 are there for those who ask.
        if amp == "fp16":
            return torch.float16
        if amp == "bf16":
            return torch.bfloat16
        return None
    if amp == "bf16" or (amp == "auto" and training and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
