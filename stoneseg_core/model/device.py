"""Choosing the device and the mixed-precision mode.

Measured on an AVX2-only AMD EPYC (no native bf16): bf16 autocast made a U-Net training
step 15x slower and inference over 100x slower than fp32, because the CPU emulates bf16.
So on the CPU, bf16 is used only for training and only where the processor has native
bf16 instructions. On a CUDA GPU "auto" means float32 too (see autocast_dtype).

The choices themselves are made without torch in ``hardware.py`` (the ONNX Runtime path on
the CPU never imports it); this module turns them into torch devices and dtypes.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from stoneseg_core.model.hardware import (
    autocast_dtype_name,
    cpu_has_native_bf16,
    resolve_device_name,
)

__all__ = [
    "autocast",
    "cuda_available",
    "leave_cores",
    "autocast_dtype",
    "cpu_has_native_bf16",
    "describe_devices",
    "resolve_device",
]


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a setting (auto, cpu, cuda, cuda:N); see hardware.resolve_device_name."""
    return torch.device(resolve_device_name(name, torch.cuda.is_available))


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


def autocast_dtype(device: torch.device, amp: str, training: bool = False) -> torch.dtype | None:
    """The autocast dtype to use, or None for plain fp32.

    On a CPU with native bf16 (AVX512-BF16 or AMX), "auto" trains in bf16 (1.6x faster per
    step on a 2-core Zen 4 EPYC with avx512_bf16, tu-tf_efficientnet_lite0, 256-px crops) but
    infers in fp32: bf16 inference was no faster there (94 ms against 87 ms eager fp32 per
    384-px tile) and would leave out ONNX Runtime (float32 only), which is faster than both.
    """
    # On a CUDA GPU "auto" is float32 (cuDNN uses TF32 tensor cores for it): on an H200 this
    # small U-Net is bound by kernel launches, not arithmetic, and bf16 autocast made a
    # training step 1.3x slower and inference 1.25x slower while changing the masks
    # (tests/benchmarks/bench_gpu.py). bf16 or fp16 are there for those who ask.
    # (cpu_has_native_bf16 is looked up here, at the call, so tests can replace it)
    name = autocast_dtype_name(device.type, amp, training, native_bf16=cpu_has_native_bf16)
    return None if name is None else getattr(torch, name)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cuda_available() -> bool:
    """Whether PyTorch can use a CUDA GPU here."""
    return torch.cuda.is_available()


def leave_cores(n: int = 1) -> int:
    """Leave ``n`` cores to other work (a window's own thread): PyTorch may use the rest.
    Someone who sets OMP_NUM_THREADS keeps their choice. Returns the thread count."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(torch.get_num_threads(), (cores or 1) - n))
    torch.set_num_threads(threads)
    return threads
