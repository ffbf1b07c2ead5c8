"""Exported networks on disk and in ONNX Runtime, without PyTorch.

The half of the ONNX Runtime path that runs a network already exported (runtime.py exports
and checks it, with torch): where the cache is, the checksums beside its files, the
ONNX Runtime session (numpy in, numpy out) and the small ``.folder`` notes that name the
export of a model folder. With these, ``stoneseg segment`` on the CPU never imports torch
once a model's export is cached (README, "Inference speed").

Cache folder: ``STONESEG_CACHE_DIR`` when that is set, else the user's cache folder
(``$XDG_CACHE_HOME/stoneseg/onnx`` or ``~/.cache/stoneseg/onnx`` on Linux,
``~/Library/Caches/StoneSeg/onnx`` on macOS, ``%LOCALAPPDATA%\\StoneSeg\\Cache\\onnx`` on
Windows).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import sys
from pathlib import Path

import numpy as np

from .hardware import intra_op_threads
from .imageio import atomic_write_bytes
from .model_info import CONFIG_FILE, WEIGHTS_FILE

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "STONESEG_CACHE_DIR"
EXPORT_FORMAT = "stoneseg-onnx-1"  # change when the export itself changes: old files go unused
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _intact(path: Path) -> bool:
    """True when ``path`` still has the checksum written beside it when it was exported."""
    try:
        expected = _digest_path(path).read_text().strip()
    except OSError:
        return False
    return bool(expected) and _file_digest(path) == expected


class OnnxNetwork:
    """An exported U-Net in an ONNX Runtime session, called like the model.

    ``net(x)``: (N, 3, H, W) float32 -> (N, C, H, W) logits, H and W multiples of 32 as for
    the model. A numpy array gives a numpy array (no torch involved); a CPU torch tensor
    (any memory format) gives a tensor.
    """

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # the cores PyTorch is given (the window leaves one to itself, see hardware.py)
        opts.intra_op_num_threads = max(1, threads or intra_op_threads())
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

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 array -> (N, C, H, W) float32 logits."""
        arr = np.ascontiguousarray(x, dtype=np.float32)
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: arr})
        return out

    def __call__(self, x):
        if isinstance(x, np.ndarray):
            return self.run(x)
        # a torch tensor: torch is loaded already (this module never imports it)
        out = self.run(x.detach().cpu().float().contiguous().numpy())
        return sys.modules["torch"].from_numpy(out)


# ------------------------------------------------------------- model folders, without PyTorch
#
# Building the PyTorch U-Net costs an import of segmentation_models_pytorch, timm and
# torchvision (~2.5 s of a `stoneseg segment` run on the 2-core EPYC). For a model folder
# whose network is already exported, a small ".folder" file, named by a hash of the folder's
# two files, names the export, so the network runs without the PyTorch model being built.


def _torch_version() -> str:
    """The installed torch's version, read from its package metadata (no import)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def folder_key(folder: Path) -> str:
    """A hash of a model folder's weights and config files, torch version and export format."""
    h = hashlib.sha256(f"{EXPORT_FORMAT}|opset{OPSET}|torch-{_torch_version()}".encode())
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
