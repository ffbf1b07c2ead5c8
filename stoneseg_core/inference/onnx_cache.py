"""Exported networks on disk and in ONNX Runtime, without PyTorch.

The half of the ONNX Runtime path that runs a network already exported (onnx_export.py exports
and checks it, with torch): where the cache is, the checksums beside its files, the
ONNX Runtime session (numpy in, numpy out) and the small ``.folder`` notes that name the
export of a model folder. With these, ``stoneseg segment`` on the CPU never imports torch
once a model's export is cached (docs/benchmarks.md, "CPU inference in ONNX Runtime").

Cache folder: ``STONESEG_CACHE_DIR`` when that is set, else the user's cache folder
(``$XDG_CACHE_HOME/stoneseg/onnx`` or ``~/.cache/stoneseg/onnx`` on Linux,
``~/Library/Caches/StoneSeg/onnx`` on macOS, ``%LOCALAPPDATA%\\StoneSeg\\Cache\\onnx`` on
Windows).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np

from stoneseg_core.io.cache import user_cache_root
from stoneseg_core.io.images import atomic_write_bytes, file_sha256
from stoneseg_core.model.hardware import intra_op_threads
from stoneseg_core.model.info import CONFIG_FILE, WEIGHTS_FILE

log = logging.getLogger(__name__)

EXPORT_FORMAT = "stoneseg-onnx-1"  # change when the export itself changes: old files go unused
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def cache_dir() -> Path:
    """Where exported networks are kept (``STONESEG_CACHE_DIR`` wins)."""
    return user_cache_root() / "onnx"


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_intact(path: Path) -> bool:
    """True when ``path`` still has the checksum written beside it when it was exported."""
    try:
        expected = digest_path(path).read_text().strip()
    except OSError:
        return False
    return bool(expected) and file_sha256(path) == expected


@functools.lru_cache(maxsize=1)
def _machine_tag() -> str:
    """A short hash of ONNX Runtime's version and this CPU (architecture, feature flags)."""
    import onnxruntime

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((x for x in fh if x.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    text = f"{onnxruntime.__version__}|{platform.machine()}|{platform.processor()}|{flags}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _optimised_path(path: Path) -> Path | None:
    """Where the optimised graph of the network file ``path`` is kept (None: no checksum)."""
    try:
        digest = digest_path(path).read_text().strip()[:16]
        return path.with_name(f"{path.stem}.opt-{digest}-{_machine_tag()}.onnx") if digest else None
    except Exception:
        return None


def _keep_optimised(tmp: Path, target: Path) -> None:
    """Move the graph ONNX Runtime wrote to ``tmp`` into place, with its checksum."""
    try:
        if tmp.is_file():
            digest = file_sha256(tmp)
            os.replace(tmp, target)
            atomic_write_bytes(digest_path(target), f"{digest}\n".encode())
    except OSError as exc:
        log.debug("cannot keep the optimised graph %s: %s", target, exc)
    finally:
        tmp.unlink(missing_ok=True)


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
        # waiting threads sleep rather than spin, as OMP_WAIT_POLICY=PASSIVE does for torch
        # (stoneseg_core/__init__.py): photo decoding and PNG writing share the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = None
        self.loaded_from = path  # the file the session was made from
        # the graph as ONNX Runtime optimised it the first time (level ALL: BatchNorm folded,
        # activations fused, NCHWc layouts for this CPU), saved beside: a session starts in
        # ~0.04 s instead of ~0.2 s. Named by the export's checksum and this machine's ONNX
        # Runtime and CPU (the layouts are specific to them), checked like the export.
        optimised = _optimised_path(path)
        if optimised is not None and optimised.is_file() and is_intact(optimised):
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                self.session = ort.InferenceSession(
                    str(optimised), sess_options=opts, providers=["CPUExecutionProvider"]
                )
                self.loaded_from = optimised
            except Exception as exc:
                log.debug("optimised graph %s not used: %s", optimised, exc)
        if self.session is None:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            tmp = None
            if optimised is not None:
                tmp = optimised.with_name(f".{optimised.name}.{os.getpid()}.tmp")
                opts.optimized_model_filepath = str(tmp)
                # not its warning that the saved graph is for this machine: it is named so
                opts.log_severity_level = 3
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            if tmp is not None:
                _keep_optimised(tmp, optimised)

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
        h.update(file_sha256(Path(folder) / name).encode())
    return h.hexdigest()[:32]


def onnx_network_for_folder(folder: Path, threads: int | None = None) -> OnnxNetwork | None:
    """The exported network of the model in ``folder`` when one is cached and intact, else None."""
    try:
        import onnxruntime  # noqa: F401

        alias = cache_dir() / f"{folder_key(folder)}.folder"
        if not alias.is_file():
            return None
        path = cache_dir() / f"{alias.read_text().strip()}.onnx"
        if not is_intact(path):
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


# ------------------------------------------------------------------------ int8 (opt in)
#
# Static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations, MinMax ranges
# from a few photos at working scale) of the convolutions, all but the first, the last three
# (the stem and the mask head) and the depthwise ones: measured on the dev photos with a
# trained lite0, quantising every convolution agreed with float32 at IoU 0.94, leaving the
# ends in float32 0.96, the depthwise ones too 0.985, at about the same speed (~1.8x the
# float32 network under load). Still short of 0.995: an option, never the default (docs/benchmarks.md).

INT8_FORMAT = "int8-qdq-1"  # change when the quantisation changes: old files go unused
INT8_KEEP_FLOAT = (1, 3)  # convolutions left in float32: the first 1 and the last 3


def int8_path(net: OnnxNetwork) -> Path:
    """Where the int8 version of the float32 network ``net`` is cached (beside it)."""
    return net.path.with_name(f"{net.path.stem}.{INT8_FORMAT}.onnx")


def _quantize(source: Path, target: Path, calibration: list[np.ndarray]) -> None:
    """Quantise ``source`` to ``target`` (atomically, checksum beside) on ``calibration``."""
    import tempfile

    import onnx
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: np.ascontiguousarray(x, np.float32)}

    with tempfile.TemporaryDirectory(prefix="stoneseg-int8-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # BatchNorm folded into the convolutions first, so that the folded weights are quantised
        q.quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        nodes = [n for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        convs = [n.name for n in nodes]
        first, last = INT8_KEEP_FLOAT
        depthwise = [
            n.name for n in nodes if any(a.name == "group" and a.i > 1 for a in n.attribute)
        ]
        keep = convs[:first] + convs[len(convs) - last :] + depthwise
        q.quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=keep,
            calibrate_method=q.CalibrationMethod.MinMax,
        )
        data = out.read_bytes()
    atomic_write_bytes(target, data)
    atomic_write_bytes(digest_path(target), f"{hashlib.sha256(data).hexdigest()}\n".encode())


def int8_network(
    net: OnnxNetwork, calibration: list[np.ndarray] | None = None, threads: int | None = None
) -> OnnxNetwork | None:
    """The int8 version of ``net``: cached, or quantised now on ``calibration`` (normalised
    (1, 3, H, W) inputs at working scale); None when neither (or quantising fails: logged).

    The first calibration of a network is kept for it: later runs reuse the file whatever
    photos they segment.
    """
    path = int8_path(net)
    try:
        if path.exists():
            if is_intact(path):
                found = OnnxNetwork(path, threads)
                os.utime(path)
                return found
            log.warning("Cached int8 network %s is damaged; quantising it again.", path)
        if not calibration:
            return None
        _quantize(net.path, path, calibration)
        log.info("Quantised the network to int8 on %d photos: %s", len(calibration), path)
        return OnnxNetwork(path, threads)
    except Exception as exc:
        log.warning(
            "int8 network not used (%s: %s); inference runs in float32.", type(exc).__name__, exc
        )
        return None
