"""Segmenting photos of any size with a trained model.

A photo is brought to the model's working scale, cut into overlapping tiles padded to the
network's multiple of 32, predicted in small batches, blended with a weight that falls off
towards each tile's edge (so no seams), and the probability is resized back to the photo's
own size. On the CPU in float32 the network runs in ONNX Runtime (runtime.py), elsewhere in
PyTorch; with the export of a model folder cached, the CPU path never imports torch (it is
imported where the PyTorch model is first needed: ``_torch()``). Memory stays bounded: the
full-size photo is only ever held as uint8 and the probability as one float32 plane (two
for a model trained with the boundary target: channel 0 is always the stone probability,
channel 1 the stone-boundary probability).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from . import large
from .config import InferenceConfig
from .errors import ImageReadError, OutOfMemoryError, StonesegError
from .geo import Georeference, georeference_or_none, is_tiff, write_geotiff_mask
from .hardware import autocast_dtype_name, gpu_may_be_present, resolve_device_name
from .imageio import (
    image_size,
    jpeg_reduction,
    list_images,
    make_output_dir,
    read_image,
    write_mask,
)
from .model_info import ModelInfo, read_model_info
from .onnx_cache import OnnxNetwork, int8_network, onnx_network_for_folder, remember_folder
from .tiling import blend_window, tile_starts
from .tiling import pad_to as _pad_to
from .tiling import round_up as _round_up
from .work_scale import (
    ScalePolicy,
    drop_specks_at_work_scale,
    estimate_scale,
    normalize,
    resize_by,
    scale_fallback,
    speck_floor,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


def _torch():
    """torch, imported where the PyTorch model or a tensor is first needed (~2 s here)."""
    import torch

    return torch


def _cuda_available() -> bool:
    """``torch.cuda.is_available()``, asked only where a GPU may be present (hardware.py)."""
    if "torch" not in sys.modules and not gpu_may_be_present():
        return False
    return bool(_torch().cuda.is_available())


def load_model(folder: Path, device) -> tuple[nn.Module, ModelInfo]:
    """``model.load_model``, imported when a model is first built (it brings torch and SMP)."""
    from .model import load_model as load

    return load(folder, device)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), in place on ``logits`` (float32; exp overflows to inf: 0)."""
    with np.errstate(over="ignore"):
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
    logits += 1.0
    return np.reciprocal(logits, out=logits)


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
    # the speck floor in the photo's pixels (area): a piece of this mask smaller than that is
    # below what the network resolves at ``scale`` (work_scale.speck_floor); 0: none
    min_stone_px: float = 0.0


class Segmenter:
    """A loaded model plus how to run it. Reuse one for many photos."""

    def __init__(
        self,
        model: nn.Module | None,
        info: ModelInfo,
        config: InferenceConfig | None = None,
        device=None,
    ):
        config = config or InferenceConfig()
        if config.threshold is None:  # the model's own
            config = config.replace(threshold=info.threshold)
        self.config = config
        # drop the pieces of the stone map under the model's speck floor (work_scale); off:
        # the network's own pixels, as training's validation counts them
        self.floor_specks = True
        # "cpu", "cuda" or "cuda:N", chosen without torch (hardware.py); the torch.device
        # and dtype are made when first asked for (``device``, ``dtype``)
        self._device_name = (
            resolve_device_name(self.config.device, _cuda_available)
            if device is None
            else str(device)
        )
        self.device_type = self._device_name.split(":")[0]
        self._device = None
        self._dtype_name = autocast_dtype_name(self.device_type, self.config.amp)
        self.info = info
        # channels_last made fp32 CPU inference 1.2-1.7x faster here (oneDNN kernels); on a
        # GPU it pays only with reduced precision (tensor-core layouts)
        self.channels_last = self.device_type == "cpu" or self._dtype_name is not None
        # None only for a Segmenter.load whose ONNX export is cached: built when first asked for
        self._model = self._prepare(model) if model is not None else None
        self._folder: Path | None = None  # the model folder, for Segmenter.load
        self._folder_version = -1  # the weights as loaded from it
        # float32 on the CPU: the network in ONNX Runtime (runtime.py), from the cache or
        # exported at the first pass, and again whenever the model's weights have changed
        cpu_fp32 = self.device_type == "cpu" and self._dtype_name is None
        self.use_onnx = self.config.runtime != "torch" and cpu_fp32
        if self.config.runtime.startswith("onnx") and not cpu_fp32:
            log.info("ONNX Runtime runs float32 on the CPU only; this model runs in PyTorch.")
        self._onnx: OnnxNetwork | None = None
        self._onnx_version = -1
        # the last stone-size estimate's rounds ({"factor", "stone_px"}), for logs and tests
        self.last_estimate: list[dict[str, float]] = []
        self._reuse: tuple[np.ndarray, float, np.ndarray] | None = None
        # runtime "onnx-int8": the int8 version of self._onnx (_int8_of), once cached or
        # calibrated (calibrate_int8); float32 until then
        self._int8: OnnxNetwork | None = None
        self._int8_of: OnnxNetwork | None = None

    @property
    def device(self) -> torch.device:
        """The torch device (imports torch)."""
        if self._device is None:
            self._device = _torch().device(self._device_name)
        return self._device

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for float32 (imports torch only for reduced precision)."""
        return None if self._dtype_name is None else getattr(_torch(), self._dtype_name)

    def _prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device).eval()
        return model.to(memory_format=_torch().channels_last) if self.channels_last else model

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
        device = resolve_device_name(cfg.device, _cuda_available)
        onnx = None
        if (
            device == "cpu"
            and cfg.runtime != "torch"
            and autocast_dtype_name("cpu", cfg.amp) is None
        ):
            onnx = onnx_network_for_folder(folder)
        if onnx is not None:
            model, info = None, read_model_info(folder)
        else:
            model, info = load_model(folder, device)
        seg = cls(model, info, cfg, device)
        seg._folder = folder
        fallback = scale_fallback(seg.scale_policy, cfg.scale)
        if fallback is not None:
            log.warning("%s: %s", folder.name, fallback)
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
            return self._int8_for(self._onnx)  # the cached export of the folder's weights
        version = _weights_version(self.model)
        if version != self._onnx_version:
            from .runtime import onnx_network  # exports with torch, which the model has loaded

            self._onnx = onnx_network(self.model)
            self._onnx_version = version
            if (
                self._onnx is not None
                and self._folder is not None
                and version == self._folder_version
            ):
                remember_folder(self._folder, self._onnx)  # the weights as in the folder's files
        return self._int8_for(self._onnx) if self._onnx is not None else self.model

    def _int8_for(self, net: OnnxNetwork) -> OnnxNetwork:
        """``net``, or its int8 version for runtime "onnx-int8" once there is one."""
        if self.config.runtime != "onnx-int8":
            return net
        if self._int8_of is not net:  # a new float32 network: its int8 version if cached
            self._int8, self._int8_of = int8_network(net), net
        return self._int8 if self._int8 is not None else net

    def calibrate_int8(self, images: Iterable[np.ndarray], limit: int = 8) -> bool:
        """For runtime "onnx-int8": quantise the network on up to ``limit`` of ``images``
        (photos, any size) unless its int8 version is cached (then ``images`` is not read).
        True when the int8 network runs from now on."""
        if self.config.runtime != "onnx-int8" or not self.use_onnx:
            return False
        net = self._network()
        if net is self._int8:
            return True
        if not isinstance(net, OnnxNetwork):
            return False
        inputs = []
        for image in images:
            # calibrated at the scale the photos will be seen at (the model's policy)
            factor = self.work_scale(image)
            work = resize_by(image, factor)[: self.config.tile, : self.config.tile]
            h, w = work.shape[:2]
            padded = _pad_to(work, _round_up(h), _round_up(w))
            inputs.append(normalize(padded, self.info.mean, self.info.std)[None])
            if len(inputs) >= limit:
                break
        self._int8, self._int8_of = int8_network(net, inputs), net
        return self._int8 is not None

    @property
    def runtime_in_use(self) -> str:
        """ "onnxruntime", "onnxruntime-int8" or "torch": what ran (or will run) the last
        pass, for logs and tests."""
        if not (self.use_onnx and self._onnx is not None):
            return "torch"
        int8 = self._int8 is not None and self._int8_of is self._onnx
        return "onnxruntime-int8" if int8 else "onnxruntime"

    @property
    def classes(self) -> int:
        """Output channels of the model: 1 (stone) or 2 (stone, boundary)."""
        return self.info.classes

    def _forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised float32 on the device -> (N, C, H, W) probabilities there."""
        torch = _torch()
        net = self._network()
        with torch.inference_mode():
            if self.channels_last and net is self._model:
                x = x.contiguous(memory_format=torch.channels_last)
            views = [((), ())]
            if self.config.tta:
                views = [((), ()), ((3,), (3,)), ((2,), (2,)), ((2, 3), (2, 3))]
            total = None
            with self._autocast():
                for fwd, back in views:
                    xi = torch.flip(x, fwd) if fwd else x
                    prob = torch.sigmoid(net(xi).float())
                    prob = torch.flip(prob, back) if back else prob
                    total = prob if total is None else total + prob
            return total / len(views)

    def _autocast(self):
        from .device import autocast

        return autocast(self.device, self.dtype)

    def _forward_onnx(self, net: OnnxNetwork, x: np.ndarray) -> np.ndarray:
        """What ``_forward_tensor`` computes, in numpy around ONNX Runtime: no torch."""
        views = [()]
        if self.config.tta:
            views = [(), (3,), (2,), (2, 3)]
        total = None
        for axes in views:
            xi = np.ascontiguousarray(np.flip(x, axes)) if axes else x
            prob = _sigmoid(net(xi))
            prob = np.flip(prob, axes) if axes else prob
            total = prob if total is None else total + prob
        return total if len(views) == 1 else total / len(views)

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
        if self.device_type == "cuda":
            return self._tiles_on_device(padded, should_stop)[:, :h, :w]
        ys, xs = tile_starts(ph, tile, cfg.overlap), tile_starts(pw, tile, cfg.overlap)
        weight = blend_window(tile, cfg.overlap)
        acc = np.zeros((self.classes, ph, pw), np.float32)
        norm = np.zeros((ph, pw), np.float32)
        coords = [(y, x) for y in ys for x in xs]
        for i in range(0, len(coords), cfg.batch_tiles):
            if should_stop is not None and should_stop():
                raise StonesegError("Cancelled.")
            self.add_tiles(padded, coords[i : i + cfg.batch_tiles], acc, norm, weight)
        return (acc / np.maximum(norm, 1e-6))[:, :h, :w]

    def add_tiles(
        self,
        image: np.ndarray,
        coords: Sequence[tuple[int, int]],
        acc: np.ndarray,
        norm: np.ndarray,
        weight: np.ndarray,
    ) -> None:
        """Forward the tiles of ``image`` at ``coords`` ((y, x) of their top-left corners) as
        one batch and add each probability times ``weight`` into ``acc`` (C, H, W) and
        ``weight`` into ``norm`` (H, W) at the same place: one step of the tiled pass (the
        windowed segmentation of large.py runs the same steps on a band of the photo)."""
        tile = self.config.tile
        batch = np.stack(
            [
                normalize(image[y : y + tile, x : x + tile], self.info.mean, self.info.std)
                for y, x in coords
            ]
        )
        probs = self._run_oom_safe(batch)
        for (y, x), p in zip(coords, probs):
            acc[:, y : y + tile, x : x + tile] += p * weight
            norm[y : y + tile, x : x + tile] += weight

    def _tiles_on_device(
        self, padded: np.ndarray, should_stop: Callable[[], bool] | None
    ) -> np.ndarray:
        """The tiled pass with the photo, the tiles and the blending kept on the GPU.

        The photo goes up once (uint8, from pinned memory) and the probability comes down
        once, instead of a normalised float copy of every tile going up and its result
        coming down (64 small copies from pageable memory for a 24 MP photo).
        Returns (C, H, W).
        """
        torch = _torch()
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
        torch = _torch()
        try:
            return self._forward_tensor(batch)
        except torch.OutOfMemoryError as exc:
            if self.device_type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                return torch.cat(
                    [self._run_oom_safe_tensor(batch[i : i + 1]) for i in range(len(batch))]
                )
            raise OutOfMemoryError(
                f"The {self.device_type.upper()} ran out of memory on one tile; use a smaller tile or the CPU."
            ) from exc

    def _run_oom_safe_onnx(self, net: OnnxNetwork, batch: np.ndarray) -> np.ndarray:
        """``_run_oom_safe_tensor`` for ONNX Runtime: out of memory (numpy's MemoryError, or
        ORT failing to allocate), again one tile at a time; a tile alone: a message."""
        try:
            return self._forward_onnx(net, batch)
        except Exception as exc:
            if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
                raise
            if len(batch) > 1:
                return np.concatenate(
                    [self._run_oom_safe_onnx(net, batch[i : i + 1]) for i in range(len(batch))]
                )
            raise OutOfMemoryError(
                "The CPU ran out of memory on one tile; use a smaller tile."
            ) from exc

    def _run_oom_safe(self, batch: np.ndarray) -> np.ndarray:
        net = self._network()
        if isinstance(net, OnnxNetwork):
            return self._run_oom_safe_onnx(net, batch)
        x = _torch().from_numpy(batch).to(self.device)
        return self._run_oom_safe_tensor(x).cpu().numpy()

    # ---------------------------------------------------------------------- working scale
    @property
    def scale_policy(self) -> ScalePolicy:
        return self.info.scale_policy

    def speck_floor(self, factor: float) -> float:
        """The smallest stone (area, photo pixels) of a photo segmented at ``factor``."""
        return speck_floor(self.scale_policy, factor)

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
        if scale_fallback(policy, mode) is not None:  # said once, at load
            return policy.long_side(h, w)
        if mode == "training":
            return policy.train_scale
        stone_size = mode == "stone-size" or (mode == "auto" and policy.policy == "stone-size")
        if not stone_size:
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
            probs = reuse[2]
        else:
            probs = self.probabilities_at_work_scale(resize_by(image, factor), should_stop)
        # the speck floor, at working scale: no piece of the stone map smaller than the
        # smallest stone the network was shown (1.0: the floor in working pixels)
        if self.floor_specks:
            drop_specks_at_work_scale(probs[0], self.config.threshold, self.speck_floor(1.0))
        return probs

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
        floor = self.speck_floor(factor)
        return Prediction(
            probability=prob,
            mask=mask,
            boundary=boundary,
            scale=factor,
            min_stone_px=floor,
        )

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
        # the speck floor, in the pixels of the size asked for (working pixels per pixel of it)
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
    ``jpeg_reduction``), anything else, or with ``long_side`` None, at full size; (None,
    (H, W)) for a photo segmented window by window (``large.needs_windows``)."""
    if large.needs_windows(path):
        return None, large.photo_shape(path)
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
    if image is None:  # too large to hold whole: window by window (large.py)
        status, message = large.segment_large_photo(segmenter, path, out, should_stop)
        if status == "failed":
            raise StonesegError(message)
        return
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
    make_output_dir(output_dir)
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
            if item[0] is None:  # too large to hold whole: window by window (large.py)
                if pending is not None:
                    yield finish(pending)
                    pending = None
                status, message = large.segment_large_photo(segmenter, p, out, should_stop)
                if status == "cancelled":
                    cancelled = True
                    break
                if status == "written":
                    written += 1
                else:
                    failed.append((p, message))
                done = out if status == "written" else None
                yield SegmentEvent(
                    index, total, p, status, done, message, time.perf_counter() - start
                )
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
