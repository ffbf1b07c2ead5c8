"""Segmenting photos of any size with a trained model.

A photo is brought to the model's working scale, cut into overlapping tiles padded to the
network's multiple of 32, predicted in small batches, blended with a weight that falls off
towards each tile's edge (so no seams), and the probability is resized back to the photo's
own size. On the CPU in float32 the network runs in ONNX Runtime (onnx_export.py), elsewhere in
PyTorch; with the export of a model folder cached, the CPU path never imports torch (it is
imported where the PyTorch model is first needed: ``_torch()``). Memory stays bounded: the
full-size photo is only ever held as uint8 and the probability as one float32 plane (two
for a model trained with the boundary target: channel 0 is always the stone probability,
channel 1 the stone-boundary probability).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stoneseg_core.errors import OutOfMemoryError, StonesegError
from stoneseg_core.inference.onnx_cache import (
    OnnxNetwork,
    int8_network,
    onnx_network_for_folder,
    remember_folder,
)
from stoneseg_core.inference.tiling import blend_window, tile_starts
from stoneseg_core.inference.tiling import pad_to as _pad_to
from stoneseg_core.inference.tiling import round_up as _round_up
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.hardware import (
    autocast_dtype_name,
    gpu_may_be_present,
    resolve_device_name,
)
from stoneseg_core.model.info import ModelInfo, read_model_info
from stoneseg_core.model.scale import (
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


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, asked only where a GPU may be present (hardware.py)."""
    if "torch" not in sys.modules and not gpu_may_be_present():
        return False
    return bool(_torch().cuda.is_available())


def load_model(folder: Path, device) -> tuple[nn.Module, ModelInfo]:
    """``model.load_model``, imported when a model is first built (it brings torch and SMP)."""
    from stoneseg_core.model.network import load_model as load

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
            resolve_device_name(self.config.device, cuda_available)
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
        # float32 on the CPU: the network in ONNX Runtime (onnx_export.py), from the cache or
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
        device = resolve_device_name(cfg.device, cuda_available)
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
            from stoneseg_core.inference.onnx_export import (
                onnx_network,  # exports with torch, which the model has loaded
            )

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
        from stoneseg_core.model.device import autocast

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
