"""Segmenting photos of any size with a trained model.

A photo is brought to the model's working scale, cut into overlapping tiles padded to the
network's multiple of 32, predicted in small batches, blended with a weight that falls off
towards each tile's edge (so no seams), and the probability is resized back to the photo's
own size. Memory stays bounded: the full-size photo is only ever held as uint8 and the
probability as one float32 plane.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .config import InferenceConfig
from .dataset import normalize, to_work_scale
from .device import autocast, autocast_dtype, resolve_device
from .errors import ImageReadError, OutOfMemoryError, StonesegError
from .imageio import list_images, read_image, write_mask
from .model import ModelInfo, load_model

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


@dataclass(frozen=True)
class Prediction:
    probability: np.ndarray  # float32 (H, W) in [0, 1] at the photo's own size
    mask: np.ndarray  # uint8 0/255 (H, W)


class Segmenter:
    """A loaded model plus how to run it. Reuse one for many photos."""

    def __init__(
        self, model: nn.Module, info: ModelInfo, config: InferenceConfig | None = None, device=None
    ):
        self.config = config or InferenceConfig(threshold=info.threshold)
        self.device = resolve_device(self.config.device) if device is None else torch.device(device)
        self.dtype = autocast_dtype(self.device, self.config.amp)
        self.info = info
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu" or self.dtype is not None:
            # channels_last made fp32 CPU inference 1.66x faster here (oneDNN kernels)
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, folder: str | Path, config: InferenceConfig | None = None) -> Segmenter:
        cfg = config or InferenceConfig()
        device = resolve_device(cfg.device)
        model, info = load_model(folder, device)
        if config is None:
            cfg = cfg.replace(threshold=info.threshold)
        return cls(model, info, cfg, device)

    # ----------------------------------------------------------------------------- core
    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised float32 -> (N, H, W) probabilities, with optional flip TTA."""
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        views = [((), ())]
        if self.config.tta:
            views = [((), ()), ((3,), (3,)), ((2,), (2,)), ((2, 3), (2, 3))]
        total = None
        with autocast(self.device, self.dtype):
            for fwd, back in views:
                xi = torch.flip(x, fwd) if fwd else x
                logits = self.model(xi).float()
                prob = torch.sigmoid(logits)
                prob = torch.flip(prob, back) if back else prob
                total = prob if total is None else total + prob
        return (total / len(views))[:, 0].cpu().numpy()

    def probability_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Probability for an image already at working scale."""
        cfg = self.config
        h, w = work.shape[:2]
        tile = cfg.tile
        if h <= tile and w <= tile:
            # one pass over the whole image, padded to the network's multiple of 32
            ph, pw = _round_up(h), _round_up(w)
            x = normalize(_pad_to(work, ph, pw), self.info.mean, self.info.std)[None]
            return self._run_oom_safe(x)[0, :h, :w]
        ph, pw = max(h, tile), max(w, tile)
        padded = _pad_to(work, ph, pw)
        ys, xs = tile_starts(ph, tile, cfg.overlap), tile_starts(pw, tile, cfg.overlap)
        weight = blend_window(tile, cfg.overlap)
        acc = np.zeros((ph, pw), np.float32)
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
                acc[y : y + tile, x : x + tile] += p * weight
                norm[y : y + tile, x : x + tile] += weight
        return (acc / np.maximum(norm, 1e-6))[:h, :w]

    def _run_oom_safe(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self._forward(batch)
        except torch.OutOfMemoryError as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                return np.concatenate(
                    [self._run_oom_safe(batch[i : i + 1]) for i in range(len(batch))]
                )
            raise OutOfMemoryError(
                f"The {self.device.type.upper()} ran out of memory on one tile; use a smaller tile or the CPU."
            ) from exc

    def predict(
        self, image: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> Prediction:
        """Probability and 0/255 mask at the photo's own size."""
        h, w = image.shape[:2]
        work = to_work_scale(image, self.info.work_size)
        prob = self.probability_at_work_scale(work, should_stop)
        if prob.shape != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = np.where(prob >= self.config.threshold, 255, 0).astype(np.uint8)
        return Prediction(probability=prob, mask=mask)


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


def _prefetch(paths: list[Path], depth: int = 2) -> Iterator[tuple[Path, np.ndarray | Exception]]:
    """Decode the next photos on a background thread while the model runs."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader():
        for p in paths:
            if stop.is_set():
                return
            try:
                item = (p, read_image(p))
            except (ImageReadError, StonesegError) as exc:
                item = (p, exc)
            except Exception as exc:  # noqa: BLE001 - report and carry on with the next photo
                item = (p, ImageReadError(f"Cannot read image {p.name}: {exc}"))
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
    """Segment every photo in ``input_dir`` into ``output_dir/<stem>.png`` (0/255).

    Bad files are reported and skipped; existing outputs are kept unless ``overwrite``.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths = list_images(input_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(
            f"Cannot create output folder {output_dir}: {exc.strerror or exc}"
        ) from exc
    todo, skipped = [], []
    for p in paths:
        out = output_dir / f"{p.stem}.png"
        (skipped if out.exists() and not overwrite else todo).append(p)
    total = len(paths)
    written, failed, index = 0, [], 0
    for p in skipped:
        index += 1
        yield SegmentEvent(
            index, total, p, "skipped", output_dir / f"{p.stem}.png", "output exists"
        )
    cancelled = False
    for p, item in _prefetch(todo):
        if should_stop is not None and should_stop():
            cancelled = True
            break
        index += 1
        out = output_dir / f"{p.stem}.png"
        start = time.perf_counter()
        if isinstance(item, Exception):
            failed.append((p, str(item)))
            yield SegmentEvent(index, total, p, "failed", None, str(item))
            continue
        try:
            mask = segmenter.predict(item, should_stop).mask
            write_mask(out, mask)
        except StonesegError as exc:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            failed.append((p, str(exc)))
            yield SegmentEvent(
                index, total, p, "failed", None, str(exc), time.perf_counter() - start
            )
            if isinstance(exc, OutOfMemoryError):
                raise
            continue
        written += 1
        yield SegmentEvent(index, total, p, "written", out, "", time.perf_counter() - start)
    return SegmentSummary(written=written, skipped=len(skipped), failed=failed, cancelled=cancelled)
