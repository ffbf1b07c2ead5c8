"""Segmenting photos of any size with a trained model.

A photo is brought to the model's working scale, cut into overlapping tiles padded to the
network's multiple of 32, predicted in small batches, blended with a weight that falls off
towards each tile's edge (so no seams), and the probability is resized back to the photo's
own size. On the CPU in float32 the network runs in ONNX Runtime (runtime.py), elsewhere in
PyTorch. Memory stays bounded: the full-size photo is only ever held as uint8 and the
probability as one float32 plane (two for a model trained with the boundary target: channel
0 is always the stone probability, channel 1 the stone-boundary probability).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .config import InferenceConfig
from .device import autocast, autocast_dtype, resolve_device
from .errors import ImageReadError, OutOfMemoryError, StonesegError
from .geo import Georeference, georeference_or_none, is_tiff, write_geotiff_mask
from .imageio import image_size, jpeg_reduction, list_images, read_image, write_mask
from .model import ModelInfo, load_model, read_model_info
from .runtime import OnnxNetwork, onnx_network, onnx_network_for_folder, remember_folder
from .work_scale import ScalePolicy, estimate_scale, normalize, resize_by

log = logging.getLogger(__name__)

MULTIPLE = 32


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` that overlap by >= ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """2-D weight that ramps from near 0 at a tile's border to 1 inside ``overlap`` pixels."""
    if overlap <= 0:
        return np.ones((tile, tile), np.float32)
    ramp = np.ones(tile, np.float32)
    edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    ramp[:overlap] = edge
    ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height and w == width:
        return image
    mode = cv2.BORDER_REFLECT_101 if h > 1 and w > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, mode)


def _round_up(x: int, m: int = MULTIPLE) -> int:
    return -(-x // m) * m


def _weights_version(model: nn.Module) -> int:
    """Grows whenever a weight or BatchNorm statistic is changed in place (training, loading)."""
    return sum(t._version for t in model.parameters()) + sum(t._version for t in model.buffers())


@dataclass(frozen=True)
class Prediction:
    probability: np.ndarray  # float32 (H, W) in [0, 1] at the photo's own size: stone
    mask: np.ndarray  # uint8 0/255 (H, W)
    # float32 (H, W) in [0, 1]: the stone-boundary probability, for a model trained with
    # the "mask+boundary" target; None for a 1-channel model
    boundary: np.ndarray | None = None
    scale: float = 1.0  # the working scale it was made at: working pixels per photo pixel


class Segmenter:
    """A loaded model plus how to run it. Reuse one for many photos."""

    def __init__(
        self,
        model: nn.Module | None,
        info: ModelInfo,
        config: InferenceConfig | None = None,
        device=None,
    ):
        self.config = config or InferenceConfig(threshold=info.threshold)
        self.device = resolve_device(self.config.device) if device is None else torch.device(device)
        self.dtype = autocast_dtype(self.device, self.config.amp)
        self.info = info
        # channels_last made fp32 CPU inference 1.2-1.7x faster here (oneDNN kernels); on a
        # GPU it pays only with reduced precision (tensor-core layouts)
        self.channels_last = self.device.type == "cpu" or self.dtype is not None
        # None only for a Segmenter.load whose ONNX export is cached: built when first asked for
        self._model = self._prepare(model) if model is not None else None
        self._folder: Path | None = None  # the model folder, for Segmenter.load
        self._folder_version = -1  # the weights as loaded from it
        # float32 on the CPU: the network in ONNX Runtime (runtime.py), from the cache or
        # exported at the first pass, and again whenever the model's weights have changed
        cpu_fp32 = self.device.type == "cpu" and self.dtype is None
        self.use_onnx = self.config.runtime != "torch" and cpu_fp32
        if self.config.runtime == "onnx" and not cpu_fp32:
            log.info("ONNX Runtime runs float32 on the CPU only; this model runs in PyTorch.")
        self._onnx: OnnxNetwork | None = None
        self._onnx_version = -1
        # the last stone-size estimate's rounds ({"factor", "stone_px"}), for logs and tests
        self.last_estimate: list[dict[str, float]] = []
        self._reuse: tuple[np.ndarray, float, np.ndarray] | None = None

    def _prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device).eval()
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    @property
    def model(self) -> nn.Module:
        """The PyTorch model (built from the model folder the first time it is needed)."""
        if self._model is None:
            self._model = self._prepare(load_model(self._folder, self.device)[0])
        return self._model

    @classmethod
    def load(cls, folder: str | Path, config: InferenceConfig | None = None) -> Segmenter:
        """The model in ``folder``. On the CPU with its ONNX export cached, the PyTorch model
        is not built until something needs it (it saves ~2.5 s of imports)."""
        folder = Path(folder)
        cfg = config or InferenceConfig()
        device = resolve_device(cfg.device)
        onnx = None
        if (
            device.type == "cpu"
            and cfg.runtime != "torch"
            and autocast_dtype(device, cfg.amp) is None
        ):
            onnx = onnx_network_for_folder(folder)
        if onnx is not None:
            model, info = None, read_model_info(folder)
        else:
            model, info = load_model(folder, device)
        if config is None:
            cfg = cfg.replace(threshold=info.threshold)
        seg = cls(model, info, cfg, device)
        seg._folder = folder
        if onnx is not None and seg.use_onnx:
            seg._onnx = onnx
        elif seg._model is not None:
            seg._folder_version = _weights_version(seg._model)
        return seg

    # ----------------------------------------------------------------------------- core
    def _network(self) -> nn.Module | OnnxNetwork:
        """What runs the network now: the ONNX Runtime session for these weights, or the model."""
        if not self.use_onnx:
            return self.model
        if self._model is None and self._onnx is not None:
            return self._onnx  # the cached export of the model folder's weights
        version = _weights_version(self.model)
        if version != self._onnx_version:
            self._onnx = onnx_network(self.model)
            self._onnx_version = version
            if (
                self._onnx is not None
                and self._folder is not None
                and version == self._folder_version
            ):
                remember_folder(self._folder, self._onnx)  # the weights as in the folder's files
        return self._onnx if self._onnx is not None else self.model

    @property
    def runtime_in_use(self) -> str:
        """ "onnxruntime" or "torch": what ran (or will run) the last pass, for logs and tests."""
        return "onnxruntime" if self.use_onnx and self._onnx is not None else "torch"

    @property
    def classes(self) -> int:
        """Output channels of the model: 1 (stone) or 2 (stone, boundary)."""
        return self.info.classes

    def _forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised float32 on the device -> (N, C, H, W) probabilities there."""
        net = self._network()
        with torch.inference_mode():
            if self.channels_last and net is self._model:
                x = x.contiguous(memory_format=torch.channels_last)
            views = [((), ())]
            if self.config.tta:
                views = [((), ()), ((3,), (3,)), ((2,), (2,)), ((2, 3), (2, 3))]
            total = None
            with autocast(self.device, self.dtype):
                for fwd, back in views:
                    xi = torch.flip(x, fwd) if fwd else x
                    prob = torch.sigmoid(net(xi).float())
                    prob = torch.flip(prob, back) if back else prob
                    total = prob if total is None else total + prob
            return total / len(views)

    def probability_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Stone probability (H, W) for an image already at working scale."""
        return self.probabilities_at_work_scale(work, should_stop)[0]

    def probabilities_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Every output channel's probability (C, H, W) for an image already at working scale."""
        cfg = self.config
        h, w = work.shape[:2]
        tile = cfg.tile
        if h <= tile and w <= tile:
            # one pass over the whole image, padded to the network's multiple of 32
            ph, pw = _round_up(h), _round_up(w)
            x = normalize(_pad_to(work, ph, pw), self.info.mean, self.info.std)[None]
            return self._run_oom_safe(x)[0, :, :h, :w]
        ph, pw = max(h, tile), max(w, tile)
        padded = _pad_to(work, ph, pw)
        if self.device.type == "cuda":
            return self._tiles_on_device(padded, should_stop)[:, :h, :w]
        ys, xs = tile_starts(ph, tile, cfg.overlap), tile_starts(pw, tile, cfg.overlap)
        weight = blend_window(tile, cfg.overlap)
        acc = np.zeros((self.classes, ph, pw), np.float32)
        norm = np.zeros((ph, pw), np.float32)
        coords = [(y, x) for y in ys for x in xs]
        for i in range(0, len(coords), cfg.batch_tiles):
            if should_stop is not None and should_stop():
                raise StonesegError("Cancelled.")
            chunk = coords[i : i + cfg.batch_tiles]
            batch = np.stack(
                [
                    normalize(padded[y : y + tile, x : x + tile], self.info.mean, self.info.std)
                    for y, x in chunk
                ]
            )
            probs = self._run_oom_safe(batch)
            for (y, x), p in zip(chunk, probs):
                acc[:, y : y + tile, x : x + tile] += p * weight
                norm[y : y + tile, x : x + tile] += weight
        return (acc / np.maximum(norm, 1e-6))[:, :h, :w]

    def _tiles_on_device(
        self, padded: np.ndarray, should_stop: Callable[[], bool] | None
    ) -> np.ndarray:
        """The tiled pass with the photo, the tiles and the blending kept on the GPU.

        The photo goes up once (uint8, from pinned memory) and the probability comes down
        once, instead of a normalised float copy of every tile going up and its result
        coming down (64 small copies from pageable memory for a 24 MP photo).
        Returns (C, H, W).
        """
        cfg, dev, tile = self.config, self.device, self.config.tile
        ph, pw = padded.shape[:2]
        with torch.inference_mode():
            img = torch.from_numpy(padded)
            if dev.type == "cuda":
                img = img.pin_memory()
            img = img.to(dev, non_blocking=True)
            mean = torch.tensor(self.info.mean, dtype=torch.float32, device=dev).view(3, 1, 1)
            std = torch.tensor(self.info.std, dtype=torch.float32, device=dev).view(3, 1, 1)
            x = (img.permute(2, 0, 1).float() / 255.0 - mean) / std
            del img
            weight = torch.from_numpy(blend_window(tile, cfg.overlap)).to(dev)
            acc = torch.zeros((self.classes, ph, pw), dtype=torch.float32, device=dev)
            norm = torch.zeros((ph, pw), dtype=torch.float32, device=dev)
            ys, xs = tile_starts(ph, tile, cfg.overlap), tile_starts(pw, tile, cfg.overlap)
            coords = [(y, x0) for y in ys for x0 in xs]
            for i in range(0, len(coords), cfg.batch_tiles):
                if should_stop is not None and should_stop():
                    raise StonesegError("Cancelled.")
                chunk = coords[i : i + cfg.batch_tiles]
                batch = torch.stack([x[:, y : y + tile, x0 : x0 + tile] for y, x0 in chunk])
                probs = self._run_oom_safe_tensor(batch)
                for (y, x0), p in zip(chunk, probs):
                    acc[:, y : y + tile, x0 : x0 + tile] += p * weight
                    norm[y : y + tile, x0 : x0 + tile] += weight
            out = (acc / norm.clamp_min(1e-6)).cpu().numpy()
        return out

    def _run_oom_safe_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """Forward a batch; out of memory, again one tile at a time; a tile alone: a message."""
        try:
            return self._forward_tensor(batch)
        except torch.OutOfMemoryError as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                return torch.cat(
                    [self._run_oom_safe_tensor(batch[i : i + 1]) for i in range(len(batch))]
                )
            raise OutOfMemoryError(
                f"The {self.device.type.upper()} ran out of memory on one tile; use a smaller tile or the CPU."
            ) from exc

    def _run_oom_safe(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        return self._run_oom_safe_tensor(x).cpu().numpy()

    # ---------------------------------------------------------------------- working scale
    @property
    def scale_policy(self) -> ScalePolicy:
        return self.info.scale_policy

    def work_scale(
        self,
        image: np.ndarray,
        mm_per_px: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> float:
        """Working pixels per photo pixel for ``image`` (its own pixels; ``mm_per_px`` of them).

        The model's policy, unless the InferenceConfig's ``scale`` says otherwise: long-side;
        the training photos' median factor ("training"); or, for a stone-size model, the
        typical stone given in mm (``stone_mm``, with ``mm_per_px``) or else estimated by
        the network on the photo (work_scale.estimate_scale: a few small passes).
        """
        h, w = image.shape[:2]
        policy, mode = self.scale_policy, self.config.scale
        if mode == "training":
            if policy.train_scale > 0:
                return policy.train_scale
            log.info("This model does not record its training photos' scale: long-side used.")
            return policy.long_side(h, w)
        if mode == "long-side" or policy.policy != "stone-size":
            return policy.long_side(h, w)
        if self.config.stone_mm > 0 and mm_per_px:
            return policy.for_stone(self.config.stone_mm / mm_per_px, h, w)
        threshold = self.config.threshold
        self._reuse = None

        def stone_mask_at(work: np.ndarray, factor: float, whole: bool) -> np.ndarray:
            probs = self.probabilities_at_work_scale(work, should_stop)
            # a pass over the whole photo at what may be the final factor: kept, so that
            # predicting a small photo costs no pass more than the estimate's
            self._reuse = (image, factor, probs) if whole else None
            return probs[0] >= threshold

        factor, trail = estimate_scale(image, policy, stone_mask_at)
        log.debug("scale estimate %s -> %.4f", trail, factor)
        self.last_estimate = trail
        return factor

    def _probabilities_at(
        self, image: np.ndarray, factor: float, should_stop: Callable[[], bool] | None
    ) -> np.ndarray:
        """(C, h, w) probabilities of ``image`` resized by ``factor`` (the estimate's last
        pass when it was this very pass)."""
        reuse, self._reuse = self._reuse, None
        if reuse is not None and reuse[0] is image and reuse[1] == factor:
            return reuse[2]
        return self.probabilities_at_work_scale(resize_by(image, factor), should_stop)

    def predict(
        self,
        image: np.ndarray,
        should_stop: Callable[[], bool] | None = None,
        scale: float | None = None,
        mm_per_px: float | None = None,
    ) -> Prediction:
        """Probability and 0/255 mask (and boundary probability, if the model has it) at the
        photo's own size. ``scale``: working pixels per photo pixel (default: ``work_scale``)."""
        h, w = image.shape[:2]
        factor = self.work_scale(image, mm_per_px, should_stop) if scale is None else scale
        probs = self._probabilities_at(image, factor, should_stop)
        prob, boundary = probs[0], probs[1] if len(probs) > 1 else None
        del probs
        if prob.shape != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
            if boundary is not None:
                boundary = cv2.resize(boundary, (w, h), interpolation=cv2.INTER_LINEAR)
        # bool viewed as 0/1 bytes, times 255 in place: one byte per pixel and no temporary
        # (np.where(...).astype(np.uint8) made an int64 plane: 192 MB and ~14x the time at 24 MP)
        mask = (prob >= self.config.threshold).view(np.uint8)
        mask *= 255
        return Prediction(probability=prob, mask=mask, boundary=boundary, scale=factor)

    def predict_mask(
        self,
        image: np.ndarray,
        should_stop: Callable[[], bool] | None = None,
        size: tuple[int, int] | None = None,
        mm_per_px: float | None = None,
    ) -> np.ndarray:
        """The 0/255 stone mask only, at ``size`` (H, W; default: the image's own size).

        ``image`` may be the photo decoded smaller (``read_image(..., reduce=k)``) with
        ``size`` its full size: it is brought to the working scale all the same
        (``mm_per_px`` is of the full-size photo's pixels). No full-size float plane is
        made: the working-scale probability becomes uint8 (0..255), is resized with linear
        interpolation as uint8 and thresholded in place; the mask differs from
        ``predict(...).mask`` only where the probability is within ~1/255 of the threshold.
        """
        h, w = size if size is not None else image.shape[:2]
        if mm_per_px and image.shape[1] != w:
            mm_per_px = mm_per_px * w / image.shape[1]  # of the decoded image's pixels
        factor = self.work_scale(image, mm_per_px, should_stop)
        prob = self._probabilities_at(image, factor, should_stop)[0]
        q = cv2.convertScaleAbs(prob, alpha=255.0)  # round(255 p), saturated to 0..255
        if q.shape != (h, w):
            q = cv2.resize(q, (w, h), interpolation=cv2.INTER_LINEAR)
        # q >= 255 t (q is within half a step of 255 p): the prediction's p >= t
        cv2.threshold(q, 255.0 * self.config.threshold - 0.5, 255, cv2.THRESH_BINARY, dst=q)
        return q


# ------------------------------------------------------------------------ folder segmentation


@dataclass(frozen=True)
class SegmentEvent:
    """One photo handled by ``iter_segment_folder``."""

    index: int  # 1-based
    total: int
    image: Path
    status: str  # "written", "skipped" or "failed"
    output: Path | None = None
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class SegmentSummary:
    written: int
    skipped: int
    failed: list[tuple[Path, str]]
    cancelled: bool = False


def _read_for_scale(path: Path, long_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """(photo, its full (H, W)): a JPEG decoded as small as ``long_side`` allows (see
    ``jpeg_reduction``), anything else, or with ``long_side`` None, at full size."""
    k = jpeg_reduction(path, long_side) if long_side else 1
    if k > 1:
        w, h = image_size(path)
        image = read_image(path, reduce=k)
        if image.shape[:2] == (-(-h // k), -(-w // k)):
            return image, (h, w)
        log.debug("%s: reduced decode gave %s, not 1/%d of %dx%d", path.name, image.shape, k, w, h)
    image = read_image(path)
    return image, image.shape[:2]


def _read_photo(path: Path, long_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """``_read_for_scale``, any failure raised as a StonesegError naming the photo."""
    try:
        return _read_for_scale(path, long_side)
    except StonesegError:
        raise
    except Exception as exc:
        raise ImageReadError(f"Cannot read image {path.name}: {exc}") from exc


def decode_long_side(segmenter: Segmenter) -> int | None:
    """The longer side JPEGs may be decoded down to for ``segmenter`` (None: full size)."""
    # reduced decode knows its size beforehand only under the long-side policy
    if segmenter.config.reduced_decode and segmenter.scale_policy.policy == "long-side":
        return segmenter.info.work_size
    return None


def photo_mask(
    segmenter: Segmenter,
    image: np.ndarray,
    size: tuple[int, int],
    georef: Georeference | None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """A folder job's mask of a decoded photo (full size ``size``), at the scale its
    georeference gives, if any."""
    mm_per_px = georef.mm_per_px()[0] if georef is not None else None
    return segmenter.predict_mask(image, should_stop, size, mm_per_px)


def write_segment_output(out: Path, mask: np.ndarray, georef: Georeference | None) -> None:
    """A folder job's mask, atomically: a PNG, or a GeoTIFF on ``georef``'s grid."""
    if georef is None:
        write_mask(out, mask)
    else:
        write_geotiff_mask(out, mask, georef)


def segment_photo(
    segmenter: Segmenter,
    path: Path,
    out: Path,
    georef: Georeference | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """One photo of a folder job, start to end: read, segment, write ``out`` atomically.

    The same steps as ``iter_segment_images`` runs (there pipelined: the next photo decoded
    and the last mask written on threads), so every engine writes the same masks. Raises a
    StonesegError naming the photo (OutOfMemoryError when even one tile does not fit).
    """
    image, size = _read_photo(path, decode_long_side(segmenter))
    mask = photo_mask(segmenter, image, size, georef, should_stop)
    del image
    write_segment_output(out, mask, georef)


@dataclass(frozen=True)
class SegmentPlan:
    """What a folder job will do with each photo, decided before any is segmented."""

    outputs: dict[Path, Path]  # photo -> its mask's path
    georefs: dict[Path, Georeference | None]  # TIFFs (with ``geotiff_masks``) -> georeference
    todo: list[Path]
    skipped: list[Path]  # the output exists and is kept
    itself: list[Path]  # the output would replace the photo itself


def plan_segment_outputs(
    paths: Sequence[Path], output_dir: Path, overwrite: bool, geotiff_masks: bool
) -> SegmentPlan:
    """Create ``output_dir``; name each photo's mask, and sort the photos into to do, kept
    (an existing output, unless ``overwrite``) and refused (the mask would be the photo)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(
            f"Cannot create output folder {output_dir}: {exc.strerror or exc}"
        ) from exc
    # a georeferenced GeoTIFF's mask is a GeoTIFF on the same grid; any other photo's a PNG
    georefs = {p: georeference_or_none(p) for p in paths if geotiff_masks and is_tiff(p)}
    outputs = {
        p: output_dir / f"{p.stem}{'.png' if georefs.get(p) is None else '.tif'}" for p in paths
    }
    todo, skipped, itself = [], [], []
    for p in paths:
        if outputs[p].resolve() == p.resolve():
            itself.append(p)  # a GeoTIFF segmented into its own folder
        else:
            (skipped if outputs[p].exists() and not overwrite else todo).append(p)
    return SegmentPlan(outputs, georefs, todo, skipped, itself)


def iter_plan_events(
    plan: SegmentPlan, total: int, failed: list[tuple[Path, str]]
) -> Iterator[SegmentEvent]:
    """The events of the photos the plan does not segment (kept, refused: added to ``failed``)."""
    index = 0
    for p in plan.skipped:
        index += 1
        yield SegmentEvent(index, total, p, "skipped", plan.outputs[p], "output exists")
    for p in plan.itself:
        index += 1
        message = (
            f"its mask {plan.outputs[p].name} would replace the photo; choose another output folder"
        )
        failed.append((p, message))
        yield SegmentEvent(index, total, p, "failed", None, message)


def _prefetch(
    paths: list[Path], depth: int = 2, long_side: int | None = None
) -> Iterator[tuple[Path, tuple[np.ndarray, tuple[int, int]] | Exception]]:
    """Decode the next photos on a background thread while the model runs.

    ``long_side``: decode JPEGs at reduced size down to this longer side (the working scale).
    Yields (path, (photo, full (H, W))) or (path, the error).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader():
        for p in paths:
            if stop.is_set():
                return
            try:
                item = (p, _read_photo(p, long_side))
            except StonesegError as exc:
                item = (p, exc)
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue

    t = threading.Thread(target=reader, name="stoneseg-prefetch", daemon=True)
    t.start()
    try:
        for _ in paths:
            yield q.get()
    finally:
        stop.set()


def iter_segment_folder(
    segmenter: Segmenter,
    input_dir: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[SegmentEvent, None, SegmentSummary]:
    """Segment every photo in ``input_dir`` into ``output_dir/<stem>.png`` (0/255), or
    ``<stem>.tif`` with the georeference of a georeferenced GeoTIFF.

    Bad files are reported and skipped; existing outputs are kept unless ``overwrite``.
    """
    paths = list_images(Path(input_dir))
    return (
        yield from iter_segment_images(
            segmenter, paths, output_dir, overwrite, should_stop, geotiff_masks=True
        )
    )


def iter_segment_images(
    segmenter: Segmenter,
    images: Sequence[str | Path],
    output_dir: str | Path,
    overwrite: bool = True,
    should_stop: Callable[[], bool] | None = None,
    geotiff_masks: bool = False,
) -> Generator[SegmentEvent, None, SegmentSummary]:
    """Segment each photo of ``images`` into ``output_dir/<stem>.png`` (0/255); with
    ``geotiff_masks`` a georeferenced GeoTIFF into ``<stem>.tif``, a GeoTIFF with the
    photo's georeference (not for a project's ``masks/``, which are PNGs).

    The folder job's loop, for photos the caller picks (the window's "Predict all" segments
    the photos without a mask). An existing output is replaced only with ``overwrite``. A
    photo that cannot be read or segmented is reported (status "failed") and skipped; running
    out of memory ends the run after it is reported. ``should_stop`` is asked before each
    photo and between the tiles of one; when it says stop the run ends with
    ``cancelled=True``. Closing the generator stops it too.
    """
    paths = [Path(p) for p in images]
    plan = plan_segment_outputs(paths, Path(output_dir), overwrite, geotiff_masks)
    outputs, georefs, todo = plan.outputs, plan.georefs, plan.todo
    total = len(paths)
    written, failed = 0, []
    yield from iter_plan_events(plan, total, failed)
    index = len(plan.skipped) + len(plan.itself)
    cancelled = False
    stopping = (lambda: False) if should_stop is None else should_stop
    # the PNG of one photo is encoded and written on this thread while the network runs on
    # the next; its event comes once the file is in place (or the write failed)
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stoneseg-writer")
    pending: tuple[int, Path, Path, Future, float] | None = None

    def finish(job: tuple[int, Path, Path, Future, float]) -> SegmentEvent:
        nonlocal written
        i, p, out, fut, start = job
        try:
            fut.result()
        except StonesegError as exc:
            failed.append((p, str(exc)))
            return SegmentEvent(i, total, p, "failed", None, str(exc), time.perf_counter() - start)
        written += 1
        return SegmentEvent(i, total, p, "written", out, "", time.perf_counter() - start)

    try:
        long_side = decode_long_side(segmenter)
        for p, item in _prefetch(todo, long_side=long_side):
            if stopping():
                cancelled = True
                break
            index += 1
            out = outputs[p]
            start = time.perf_counter()
            if isinstance(item, Exception):
                if pending is not None:
                    yield finish(pending)
                    pending = None
                failed.append((p, str(item)))
                yield SegmentEvent(index, total, p, "failed", None, str(item))
                continue
            try:
                image, size = item
                mask = photo_mask(segmenter, image, size, georefs.get(p), should_stop)
                del image, item
            except StonesegError as exc:
                if stopping():
                    cancelled = True
                    break
                if pending is not None:
                    yield finish(pending)
                    pending = None
                failed.append((p, str(exc)))
                yield SegmentEvent(
                    index, total, p, "failed", None, str(exc), time.perf_counter() - start
                )
                if isinstance(exc, OutOfMemoryError):
                    raise
                continue
            if pending is not None:
                yield finish(pending)
                pending = None
                if stopping():  # asked to stop on seeing that event: this mask is not written
                    cancelled = True
                    break
            job = writer.submit(write_segment_output, out, mask, georefs.get(p))
            pending = (index, p, out, job, start)
            del mask
        if pending is not None:
            yield finish(pending)
            pending = None
    finally:
        writer.shutdown(wait=True)
    return SegmentSummary(
        written=written, skipped=len(plan.skipped), failed=failed, cancelled=cancelled
    )
