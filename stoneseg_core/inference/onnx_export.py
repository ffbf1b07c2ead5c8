"""Running a U-Net on the CPU through ONNX Runtime.

On the CPU a float32 U-Net is faster in ONNX Runtime than in eager PyTorch: the runtime
folds every BatchNorm into its convolution, runs activations and residual adds inside the
convolutions and lays the weights out once (docs/benchmarks.md, "CPU inference in ONNX Runtime"). The model is
exported once per set of weights with PyTorch's TorchScript-based ONNX exporter (it needs
the ``onnx`` package; the newer torch.export-based exporter took minutes for the
EfficientNet-Lite encoders), with the batch, height and width left free, and cached:

* in ``STONESEG_CACHE_DIR`` when that is set, else in the user's cache folder
  (onnx_cache.py, the half of this that needs no torch);
* named by a hash of the weights, their names and shapes (so the architecture and the number
  of output channels too), the torch version and this file's export format: new weights
  mean a new file, and a file never serves another model;
* at most ``MAX_CACHED`` of them, the least recently used removed after each export;
* beside a ``.sha256`` file holding the checksum of the ONNX file: a damaged file is refused,
  with a logged message naming it, and built again.

A freshly exported network is checked against PyTorch on a small probe input; when they
disagree, or anything fails (onnxruntime or onnx not installed, an exporter that cannot
handle a layer), ``onnx_network`` logs why and returns None, and the caller runs PyTorch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

# the half that needs no torch: the cache, its checksums, the session, the folder notes
from stoneseg_core.inference.onnx_cache import (
    EXPORT_FORMAT,
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    OnnxNetwork,
    cache_dir,
    digest_path,
    folder_key,
    is_intact,
    onnx_network_for_folder,
    remember_folder,
)
from stoneseg_core.io.cache import CACHE_DIR_ENV
from stoneseg_core.io.images import atomic_write_bytes

__all__ = [
    "CACHE_DIR_ENV",
    "MAX_CACHED",
    "PROBE_TOLERANCE",
    "OnnxNetwork",
    "cache_dir",
    "folder_key",
    "onnx_network",
    "onnx_network_for_folder",
    "remember_folder",
    "weights_key",
]

log = logging.getLogger(__name__)
# exported networks kept (~21 MB each for lite0); the least recently used go first
MAX_CACHED = 16
# largest |ORT - PyTorch| logit difference accepted on the probe, relative to 1 + max |logit|
PROBE_TOLERANCE = 1e-3


def weights_key(model: nn.Module) -> str:
    """A hash of everything that decides what ``model`` computes at inference.

    Every parameter and buffer (values, names, shapes, dtypes), the model's class, the torch
    version and the export format.
    """
    h = hashlib.sha256()
    h.update(
        f"{EXPORT_FORMAT}|opset{OPSET}|torch{torch.__version__}|{type(model).__name__}".encode()
    )
    with torch.no_grad():
        for name, t in model.state_dict().items():
            t = t.detach().cpu()
            h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _export(model: nn.Module, path: Path) -> None:
    """Export ``model`` (eval mode, on the CPU) to ``path`` atomically, with its checksum beside."""
    buffer = io.BytesIO()  # ~21 MB for lite0: exported in memory, then written in one move
    probe = torch.zeros(1, 3, 64, 64)
    # the exporter's tracer and deprecation warnings are about its own internals
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (probe,),
            buffer,
            dynamo=False,  # the TorchScript exporter: seconds, where torch.export took minutes
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamic_axes={
                INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            },
            do_constant_folding=True,
        )
    data = buffer.getbuffer()
    atomic_write_bytes(path, data)
    atomic_write_bytes(digest_path(path), f"{hashlib.sha256(data).hexdigest()}\n".encode())


def _prune(folder: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used networks in ``folder``, each with the
    files named after it (checksum, int8 version, optimised graphs)."""
    try:
        # the exports themselves: <32 hex digits>.onnx
        files = [p for p in folder.glob("*.onnx") if "." not in p.stem]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in files[keep:]:
        for p in [old, *folder.glob(f"{old.stem}.*")]:
            try:
                p.unlink(missing_ok=True)
            except OSError as exc:  # another process may hold it open (Windows): next time
                log.debug("cannot remove %s: %s", p, exc)


def _agrees(model: nn.Module, net: OnnxNetwork) -> tuple[bool, float]:
    """Run a probe through both; (agrees, max difference)."""
    probe = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(probe).float()
    out = net(probe)
    if out.shape != ref.shape:
        return False, float("inf")
    err = float((ref - out).abs().max())
    return err <= PROBE_TOLERANCE * (1.0 + float(ref.abs().max())), err


def onnx_network(model: nn.Module, threads: int | None = None) -> OnnxNetwork | None:
    """``model`` as an ONNX Runtime network, from the cache or exported now; None if unavailable.

    ``model`` must be on the CPU. Every failure is logged (a warning for a damaged cache file
    or a disagreeing export, info for a runtime that is not installed) and gives None, so the
    caller runs the model in PyTorch.
    """
    try:
        import onnxruntime  # noqa: F401 - only to know that it is there
    except ImportError as exc:
        log.info("ONNX Runtime is not installed (%s); inference runs in PyTorch.", exc)
        return None
    was_training = model.training
    model.eval()
    try:
        path = cache_dir() / f"{weights_key(model)}.onnx"
        if path.exists():
            if is_intact(path):
                try:
                    net = OnnxNetwork(path, threads)
                    try:
                        os.utime(path)  # used now: the last to be pruned
                    except OSError:
                        pass
                    return net
                except Exception as exc:
                    log.warning(
                        "Cached ONNX network %s cannot be loaded (%s: %s); building it again.",
                        path,
                        type(exc).__name__,
                        exc,
                    )
            else:
                log.warning(
                    "Cached ONNX network %s is damaged (its checksum does not match); building it again.",
                    path,
                )
        _export(model, path)
        net = OnnxNetwork(path, threads)
        ok, err = _agrees(model, net)
        if not ok:
            log.warning(
                "The ONNX network disagrees with the model (max logit difference %.3g); "
                "inference runs in PyTorch.",
                err,
            )
            for p in [path, *path.parent.glob(f"{path.stem}.*")]:
                p.unlink(missing_ok=True)
            return None
        log.info("Exported the model for ONNX Runtime: %s (probe difference %.2g).", path, err)
        _prune(path.parent, MAX_CACHED)
        return net
    except Exception as exc:
        log.warning(
            "ONNX Runtime not used (%s: %s); inference runs in PyTorch.", type(exc).__name__, exc
        )
        return None
    finally:
        model.train(was_training)
