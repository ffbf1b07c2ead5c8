"""Segmenting photos of any size with a trained model.

A photo is brought to the model's working scale (the model's scale policy, or the stone size
the network estimates on the photo), run through the network whole or tile by tile
(``tiled_pass``), and the probability is resized back to the photo's own size and
thresholded. What runs the network is a ``networks.Network``: on the CPU in float32 ONNX
Runtime, elsewhere PyTorch (``networks.pick_network``); with the export of a model folder
cached, the CPU path never imports torch. Memory stays bounded: the full-size photo is only
ever held as uint8 and the probability as one float32 plane (two for a model trained with
the boundary target: channel 0 is always the stone probability, channel 1 the
stone-boundary probability).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stoneseg_core.inference import tiled_pass
from stoneseg_core.inference.networks import (
    Int8Network,
    Network,
    TorchNetwork,
    load_network,
    pick_network,
)
from stoneseg_core.inference.tiling import pad_to, round_up
from stoneseg_core.inference.uncertainty import Uncertainty, measure_uncertainty
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.model.info import ModelInfo
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


@dataclass(frozen=True)
class Prediction:
    probability: np.ndarray  # float32 (H, W) in [0, 1] at the photo's own size: stone
    mask: np.ndarray  # uint8 0/255 (H, W)
    # float32 (H, W) in [0, 1]: the stone-boundary probability, for a model trained with
    # the "mask+boundary" target; 1 - the predicted distance to the edge for a
    # "mask+distance" model (the same kind of edge map); None for a 1-channel model
    boundary: np.ndarray | None = None
    scale: float = 1.0  # the working scale it was made at: working pixels per photo pixel
    # the speck floor in the photo's pixels (area): a piece of this mask smaller than that is
    # below what the network resolves at ``scale`` (work_scale.speck_floor); 0: none
    min_stone_px: float = 0.0
    # how unsure the model is, where and how much (at working scale), when the Segmenter
    # measured it (``Segmenter.measure_uncertainty``); None otherwise
    uncertainty: Uncertainty | None = None


class Segmenter:
    """A loaded model plus how to run it. Reuse one for many photos."""

    def __init__(
        self,
        model: nn.Module | Network,
        info: ModelInfo,
        config: InferenceConfig | None = None,
        device=None,
    ):
        """``model``: a PyTorch model, run on ``device`` (default: the config's), or the
        Network of a model folder (``load``)."""
        config = config or InferenceConfig()
        if config.threshold is None:  # the model's own
            config = config.replace(threshold=info.threshold)
        self.config = config
        self.info = info
        if isinstance(model, Network):  # a model folder's (load)
            self.network: Network = model
        else:
            self.network = pick_network(config, TorchNetwork.for_model(model, config, device))
        # drop the pieces of the stone map under the model's speck floor (work_scale); off:
        # the network's own pixels, as training's validation counts them
        self.floor_specks = True
        # the last stone-size estimate's rounds ({"factor", "stone_px"}), for logs and tests
        self.last_estimate: list[dict[str, float]] = []
        # the estimate's last pass (image, factor, probabilities), when predict may reuse it
        self._reuse: tuple[np.ndarray, float, np.ndarray] | None = None
        # measure each prediction's uncertainty (inference.uncertainty: the map and score, from
        # the probability at working scale, no pass more): ``last_uncertainty``, and the
        # Prediction's; off by default (a folder job has no use for it)
        self.measure_uncertainty = False
        self.last_uncertainty: Uncertainty | None = None

    @classmethod
    def load(cls, folder: str | Path, config: InferenceConfig | None = None) -> Segmenter:
        """The model in ``folder``. On the CPU with its ONNX export cached, the PyTorch model
        is not built until something needs it (networks.load_network)."""
        folder = Path(folder)
        cfg = config or InferenceConfig()
        network, info = load_network(folder, cfg)
        seg = cls(network, info, cfg, network.pytorch.device_name)
        fallback = scale_fallback(seg.scale_policy, cfg.scale)
        if fallback is not None:
            log.warning("%s: %s", folder.name, fallback)
        return seg

    # ------------------------------------------------------------------------ the network
    @property
    def model(self) -> nn.Module:
        """The PyTorch model (built from the model folder the first time it is needed)."""
        return self.network.pytorch.model

    @property
    def device(self) -> torch.device:
        """The torch device (imports torch)."""
        return self.network.pytorch.device

    @property
    def device_type(self) -> str:
        """ "cpu" or "cuda", known without torch."""
        return self.network.pytorch.device_type

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for float32 (imports torch only for reduced precision)."""
        return self.network.pytorch.dtype

    @property
    def runtime_in_use(self) -> str:
        """ "onnxruntime", "onnxruntime-int8" or "torch": what ran (or will run) the last
        pass, for logs and tests."""
        return self.network.name

    @property
    def classes(self) -> int:
        """Output channels of the model: 1 (stone) or 2 (stone, boundary)."""
        return self.info.classes

    def calibrate_int8(self, images: Iterable[np.ndarray], limit: int = 8) -> bool:
        """For runtime "onnx-int8": quantise the network on up to ``limit`` of ``images``
        (photos, any size) unless its int8 version is cached (then ``images`` is not read).
        True when the int8 network runs from now on."""
        if not isinstance(self.network, Int8Network):
            return False
        return self.network.calibrate((self._calibration_input(i) for i in images), limit)

    def _calibration_input(self, image: np.ndarray) -> np.ndarray:
        """``image`` as the network will see it: at the scale the photos will be seen at (the
        model's policy), one tile at most, padded and normalised (1, 3, H, W)."""
        factor = self.work_scale(image)
        work = resize_by(image, factor)[: self.config.tile, : self.config.tile]
        h, w = work.shape[:2]
        padded = pad_to(work, round_up(h), round_up(w))
        return normalize(padded, self.info.mean, self.info.std)[None]

    # ------------------------------------------------------------------ the pass, in tiles
    def probability_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Stone probability (H, W) for an image already at working scale."""
        return self.probabilities_at_work_scale(work, should_stop)[0]

    def probabilities_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Every output channel's probability (C, H, W) for an image already at working scale."""
        cfg, forward = self.config, self.network.probabilities
        h, w = work.shape[:2]
        if h <= cfg.tile and w <= cfg.tile:
            return tiled_pass.whole_image(forward, work, self.info)
        padded = pad_to(work, max(h, cfg.tile), max(w, cfg.tile))
        if self.device_type == "cuda":
            probs = self.network.pytorch.tiles_on_device(padded, cfg, self.info, should_stop)
        else:
            probs = tiled_pass.tiled(forward, padded, cfg, self.info, should_stop)
        return probs[:, :h, :w]

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
        forward = self.network.probabilities
        tiled_pass.add_tiles(forward, image, coords, acc, norm, weight, self.config.tile, self.info)

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
        self.last_uncertainty = (
            measure_uncertainty(probs, self.config.threshold) if self.measure_uncertainty else None
        )
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
        if boundary is not None and self.info.target == "mask+distance":
            # the distance to the edge (1 at a stone's centre) as an edge map, which the
            # split follows the same way: its cores are the stones' centres
            boundary = 1.0 - boundary
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
            uncertainty=self.last_uncertainty,
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
