"""Running a U-Net on the CPU through ONNX Runtime.

On the CPU a float32 U-Net is faster in ONNX Runtime than in eager PyTorch: the runtime
folds every BatchNorm into its convolution, runs activations and residual adds inside the
convolutions and lays the weights out once (README, "Inference speed"). The model is
exported once per set of weights with PyTorch's TorchScript-based ONNX exporter (it needs
the ``onnx`` package; the newer torch.export-based exporter took minutes for the
EfficientNet-Lite encoders), with the batch, height and width left free, and cached:

* in ``STONESEG_CACHE_DIR`` when that is set, else in the user's cache folder
  (``$XDG_CACHE_HOME/stoneseg/onnx`` or ``~/.cache/stoneseg/onnx`` on Linux,
  ``~/Library/Caches/StoneSeg/onnx`` on macOS, ``%LOCALAPPDATA%\\StoneSeg\\Cache\\onnx`` on
  Windows);
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
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from .imageio import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "STONESEG_CACHE_DIR"
EXPORT_FORMAT = "stoneseg-onnx-1"  # change when the export itself changes: old files go unused
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# exported networks kept (~21 MB each for lite0); the least recently used go first
MAX_CACHED = 16
# largest |ORT - PyTorch| logit difference accepted on the probe, relative to 1 + max |logit|
PROBE_TOLERANCE = 1e-3


def cache_dir() -> Path:
    """Where exported networks are kept (``STONESEG_CACHE_DIR`` wins)."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser() / "onnx"
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / "StoneSeg" / "Cache" / "onnx"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "StoneSeg" / "onnx"
    base = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return base / "stoneseg" / "onnx"


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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    atomic_write_bytes(_digest_path(path), f"{hashlib.sha256(data).hexdigest()}\n".encode())


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _prune(folder: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used networks in ``folder``."""
    try:
        files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in files[keep:]:
        for p in (old, _digest_path(old)):
            try:
                p.unlink(missing_ok=True)
            except OSError as exc:  # another process may hold it open (Windows): next time
                log.debug("cannot remove %s: %s", p, exc)


def _intact(path: Path) -> bool:
    """True when ``path`` still has the checksum written beside it when it was exported."""
    try:
        expected = _digest_path(path).read_text().strip()
    except OSError:
        return False
    return bool(expected) and _file_digest(path) == expected


class OnnxNetwork:
    """An exported U-Net in an ONNX Runtime session, called like the model.

    ``net(x)``: (N, 3, H, W) float32 CPU tensor (any memory format) -> (N, C, H, W) logits,
    H and W multiples of 32 as for the model.
    """

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # the same cores PyTorch is given (the window leaves one to itself, see device.py)
        opts.intra_op_num_threads = max(1, threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # waiting threads sleep rather than spin, as OMP_WAIT_POLICY=PASSIVE does for torch
        # (stoneseg_core/__init__.py): photo decoding and PNG writing share the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: arr})
        return torch.from_numpy(out)


# ------------------------------------------------------------- model folders, without PyTorch
#
# Building the PyTorch U-Net costs an import of segmentation_models_pytorch, timm and
# torchvision (~2.5 s of a `stoneseg segment` run on the 2-core EPYC). For a model folder
# whose network is already exported, a small ".folder" file, named by a hash of the folder's
# two files, names the export, so the network runs without the PyTorch model being built.


def folder_key(folder: Path) -> str:
    """A hash of a model folder's weights and config files, torch version and export format."""
    from .model import CONFIG_FILE, WEIGHTS_FILE

    h = hashlib.sha256(f"{EXPORT_FORMAT}|opset{OPSET}|torch{torch.__version__}".encode())
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        h.update(f"|{name}|".encode())
        h.update(_file_digest(Path(folder) / name).encode())
    return h.hexdigest()[:32]


def onnx_network_for_folder(folder: Path, threads: int | None = None) -> OnnxNetwork | None:
    """The exported network of the model in ``folder`` when one is cached and intact, else None."""
    try:
        import onnxruntime  # noqa: F401

        alias = cache_dir() / f"{folder_key(folder)}.folder"
        if not alias.is_file():
            return None
        path = cache_dir() / f"{alias.read_text().strip()}.onnx"
        if not _intact(path):
            return None
        net = OnnxNetwork(path, threads)
        os.utime(path)
        return net
    except Exception as exc:
        log.debug("no cached ONNX network for %s: %s: %s", folder, type(exc).__name__, exc)
        return None


def remember_folder(folder: Path, net: OnnxNetwork) -> None:
    """Note that ``net`` is the export of the model in ``folder`` (see onnx_network_for_folder)."""
    try:
        atomic_write_bytes(cache_dir() / f"{folder_key(folder)}.folder", net.path.stem.encode())
    except OSError as exc:
        log.debug("cannot note the ONNX network of %s: %s", folder, exc)


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
            if _intact(path):
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
            for p in (path, _digest_path(path)):
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
