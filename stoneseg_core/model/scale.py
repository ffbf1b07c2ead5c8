"""The working scale: how large a photo is made before the network sees it (no torch).

Two policies, stored with each model (``ModelInfo.scale``):

- ``long-side``: every photo is resized so that its longer side is ``work_size`` pixels.
  Suits single-scene photos (a cairn, one boulder), where the stones grow with the photo.
- ``stone-size``: every photo is resized so that its *typical stone* is ``stone_px`` pixels
  across, whatever the size of the photo: a 24 MP gravel frame with a thousand 60-px pebbles
  and a 400-px web photo of five cobbles both show the network stones of the same size, and
  a photo tiled into a mosaic of itself is seen at the same scale as the photo alone. At
  training the typical stone comes from the photo's mask; at inference from the photo's
  mm/px and a stone size the user gives, from the training photos' scale (a fixed camera),
  or estimated from the network's own output (``estimate_scale``).

The typical stone size is ``typical_stone_px``: six times the mean distance of a stone pixel
to the nearest ground pixel. For a disc of diameter D that mean is D/6, so the figure is the
disc's diameter; it is area-weighted (large stones count by their area) and, unlike counting
connected pieces, it is not fooled by touching stones that merge into one piece: each keeps
its own thickness. It scales exactly with the photo, which is what a scale estimate needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

SCALE_POLICIES = ("long-side", "stone-size")

# the smallest stone piece worth measuring a size from: fewer stone pixels than this in a
# photo (after scaling) and its size is unknown
MIN_STONE_PIXELS = 64
# a photo is never made smaller than this on its longer side (the network needs context)
# nor enlarged more than MAX_UPSCALE times
MIN_WORK_SIDE = 256
MAX_UPSCALE = 4.0
MIN_SCALE = 1.0 / 128
# the estimate: zooming in by r must grow the measured stone by at least r**SATURATION_GROWTH
# (checked between measurements at least MIN_SATURATION_SPAN apart in log factor: a quarter
# octave, where a size read to +-10 % still tells growth from none)
SATURATION_GROWTH = 0.25
MIN_SATURATION_SPAN = math.log(2.0) / 4 - 1e-9
# the estimate measures on up to ESTIMATE_GRID x ESTIMATE_GRID windows of a photo
ESTIMATE_GRID = 3
# The speck floor: no stone smaller than a disc this many working pixels across, whatever the
# training stones (the network cannot draw a stone it cannot resolve) ...
MIN_STONE_WORK_PX = 3.0
# ... nor smaller than this fraction of the training stones' 1st-percentile area, when the
# training photos show at least MIN_FLOOR_STONES stones (fewer say little of the smallest)
SPECK_FRACTION = 0.5
MIN_FLOOR_STONES = 20


def scale_factor(height: int, width: int, work_size: int) -> float:
    """Factor that brings the longer side of a photo to ``work_size`` pixels."""
    return work_size / max(height, width)


def scaled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """(H, W) of a photo resized by ``factor`` (at least 1 x 1)."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_by(image: np.ndarray, factor: float) -> np.ndarray:
    """The photo resized by ``factor``: area averaging to shrink, bilinear to enlarge."""
    if abs(factor - 1.0) < 1e-6:
        return image
    h, w = scaled_size(*image.shape[:2], factor)
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interp)


def mask_by(mask: np.ndarray, factor: float) -> np.ndarray:
    """Resize a 0/255 mask by area averaging (or bilinear), then threshold at half."""
    scaled = resize_by(mask, factor)
    return np.where(scaled >= 128, 255, 0).astype(np.uint8)


def instances_by(labels: np.ndarray, factor: float) -> np.ndarray:
    """Resize instance labels with nearest interpolation: ids are names, never averaged."""
    h, w = labels.shape[:2]
    labels = labels.astype(np.uint16) if labels.max(initial=0) <= 65535 else labels
    if abs(factor - 1.0) < 1e-6:
        return labels
    nh, nw = scaled_size(h, w, factor)
    if labels.dtype == np.uint16:
        return cv2.resize(labels, (nw, nh), interpolation=cv2.INTER_NEAREST)
    ys = np.minimum(((np.arange(nh) + 0.5) / factor).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(nw) + 0.5) / factor).astype(np.int64), w - 1)
    return labels[ys[:, None], xs[None, :]]


def to_work_scale(image: np.ndarray, work_size: int) -> np.ndarray:
    """The long-side policy: the photo with its longer side at ``work_size`` pixels."""
    return resize_by(image, scale_factor(*image.shape[:2], work_size))


def mask_to_work_scale(mask: np.ndarray, work_size: int) -> np.ndarray:
    return mask_by(mask, scale_factor(*mask.shape[:2], work_size))


def instances_to_work_scale(labels: np.ndarray, work_size: int) -> np.ndarray:
    return instances_by(labels, scale_factor(*labels.shape[:2], work_size))


def normalize(image: np.ndarray, mean, std) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 CHW normalised."""
    x = image.astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _stone(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    return m > 127 if m.dtype == np.uint8 else m > 0


def typical_stone_px(mask: np.ndarray | list[np.ndarray]) -> float | None:
    """The typical stone's diameter in pixels (see the module's docstring) of a 0/255 (or
    bool) mask, or pooled over several (windows of one photo); None with fewer than
    ``MIN_STONE_PIXELS`` stone pixels."""
    total, count = 0.0, 0
    for m in mask if isinstance(mask, list) else [mask]:
        stone = _stone(m)
        if stone.any():
            dist = cv2.distanceTransform(stone.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            total += float(dist[stone].sum())
            count += int(np.count_nonzero(stone))
    if count < MIN_STONE_PIXELS:
        return None
    # a stone's edge pixels are 1 (not 1/2) from the ground in this transform, which adds
    # about one pixel to every diameter: taken off, so the figure scales with the photo
    return max(1.0, 6.0 * total / count - 1.0)


@dataclass(frozen=True)
class ScalePolicy:
    """How a model brings photos to its working scale (stored in the model's config.json).

    ``stone_px``: the typical stone's diameter the network was trained to see (stone-size);
    ``train_scale``: the median factor of its training photos (for "same scale as the
    training photos", a fixed camera); ``work_size``: the long-side size (long-side policy,
    and the first guess of the estimate; the model's own ``work_size``, not stored twice).
    """

    policy: str = "long-side"
    work_size: int = 384
    stone_px: float = 0.0
    train_scale: float = 0.0
    min_side: int = MIN_WORK_SIDE
    # the speck floor at working scale, an area in pixels (``smallest_stone_area``); 0 for
    # files written before it was recorded: then a disc MIN_STONE_WORK_PX across
    min_stone_area: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "stone_px": round(float(self.stone_px), 3),
            "train_scale": float(self.train_scale),
            "min_side": self.min_side,
            "min_stone_area": round(float(self.min_stone_area), 3),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any] | None, work_size: int) -> ScalePolicy:
        """A model folder's policy; files written before policies existed are long-side."""
        if not d:
            return cls(policy="long-side", work_size=work_size)
        policy = str(d.get("policy", "long-side"))
        if policy not in SCALE_POLICIES:
            raise ValueError(f"unknown scale policy {policy!r}")
        return cls(
            policy=policy,
            work_size=work_size,
            stone_px=float(d.get("stone_px", 0.0)),
            train_scale=float(d.get("train_scale", 0.0)),
            min_side=int(d.get("min_side", MIN_WORK_SIDE)),
            min_stone_area=float(d.get("min_stone_area", 0.0)),
        )

    def long_side(self, height: int, width: int) -> float:
        return scale_factor(height, width, self.work_size)

    def clamp(self, factor: float, height: int, width: int) -> float:
        """Keep a stone-size factor sane: never below ``min_side`` px on the longer side (or
        the photo's own size, if smaller), never more than MAX_UPSCALE times larger."""
        longer = max(height, width)
        low = min(1.0, self.min_side / longer)
        return float(min(MAX_UPSCALE, max(low, MIN_SCALE, factor)))

    def for_stone(self, stone_px: float, height: int, width: int) -> float:
        """The factor that makes a stone ``stone_px`` across ``self.stone_px`` across."""
        return self.clamp(self.stone_px / max(stone_px, 1e-6), height, width)

    def for_training(self, mask: np.ndarray, instances: np.ndarray | None = None) -> float:
        """The factor for a labelled photo: from its mask's typical stone (stone-size), or
        its long side (long-side, or a mask without stones)."""
        h, w = mask.shape[:2]
        if self.policy != "stone-size":
            return self.long_side(h, w)
        d = typical_stone_px(mask)
        return self.long_side(h, w) if d is None else self.for_stone(d, h, w)


def smallest_stone_area(label_maps: list[np.ndarray]) -> float:
    """The speck floor at working scale (pixels of area) from the training photos' stones there.

    ``label_maps``: per-stone labels (an instance file) or a mask, whose 8-connected pieces
    are then the stones. Half the 1st-percentile stone's area, and never under a disc of
    ``MIN_STONE_WORK_PX``: a speck smaller than the smallest stones the network was shown is
    not a stone it learnt to see. With fewer than ``MIN_FLOOR_STONES`` stones the disc alone
    (three big stones say nothing of how small a stone may be).
    """
    areas: list[np.ndarray] = []
    for m in label_maps:
        m = np.asarray(m)
        if m.dtype == np.uint8 or m.dtype == bool:
            n, labels = cv2.connectedComponents(_stone(m).view(np.uint8), connectivity=8)
            if n > 1:
                areas.append(np.bincount(labels.ravel())[1:])
        else:
            counts = np.bincount(m.ravel().astype(np.int64))[1:]
            areas.append(counts[counts > 0])
    floor = math.pi * (MIN_STONE_WORK_PX / 2.0) ** 2
    if sum(a.size for a in areas) < MIN_FLOOR_STONES:
        return floor
    return float(max(floor, SPECK_FRACTION * np.percentile(np.concatenate(areas), 1)))


def drop_specks_at_work_scale(prob: np.ndarray, threshold: float, min_area: float) -> np.ndarray:
    """``prob`` (float32, working scale; changed in place and returned) with 0 over each
    8-connected piece of ``prob >= threshold`` smaller than ``min_area`` pixels: what the
    network cannot resolve is no stone. Done at working scale (a few hundred pixels a side,
    so ~1 ms): the photo-size mask and probability made from it then hold no such piece
    (bilinear interpolation of values under the threshold stays under it)."""
    if min_area <= 1:
        return prob
    stone = (prob >= threshold).view(np.uint8)
    if not stone.any():
        return prob
    n, labels, stats, _ = cv2.connectedComponentsWithStats(stone, connectivity=8)
    small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_area) + 1
    if small.size:
        drop = np.zeros(n, bool)
        drop[small] = True
        prob[drop[labels]] = 0.0
    return prob


def speck_floor(policy: ScalePolicy, scale: float) -> float:
    """The smallest stone in a photo's own pixels (area) when it is worked at ``scale``."""
    area = policy.min_stone_area or math.pi * (MIN_STONE_WORK_PX / 2.0) ** 2
    return area / max(scale, 1e-9) ** 2


def scale_fallback(policy: ScalePolicy, mode: str) -> str | None:
    """Why a model with ``policy`` cannot scale photos as ``mode`` (InferenceConfig.scale)
    asks and brings them to its long side instead; None when it can."""
    if mode == "training" and policy.train_scale <= 0:
        return (
            "This model does not record its training photos' scale: photos are brought to "
            "its long side instead."
        )
    stone_size = mode == "stone-size" or (mode == "auto" and policy.policy == "stone-size")
    if stone_size and policy.stone_px <= 0:
        return (
            "This model does not record its standard stone size (it was trained before "
            "StoneSeg recorded it): photos are brought to its long side instead. Train it "
            "again to scale by stone size."
        )
    return None


def snap(factor: float, steps_per_octave: int = 8) -> float:
    """``factor`` rounded to a step of 2**(1/steps_per_octave) (9 % at 8): the same photo
    estimated from two starting points lands on exactly the same scale."""
    return float(2.0 ** (round(math.log2(factor) * steps_per_octave) / steps_per_octave))


def sample_windows(
    height: int, width: int, factor: float, side: int = 256, grid: int | None = None
) -> list[tuple[int, int, int, int]]:
    """Windows (y0, x0, y1, x1) of a photo to measure its stones on: the whole photo when it
    is at most ``grid`` x ``side`` working pixels each way, else up to ``grid`` x ``grid``
    windows of ``side`` working pixels spread evenly over it (the centre of each cell), so
    the sample stands for the whole photo, not its middle, at the cost of one network tile.
    ``grid`` defaults to ``ESTIMATE_GRID`` as it is when called (a benchmark compares others)."""
    grid = ESTIMATE_GRID if grid is None else grid
    span = max(1, int(side / factor))

    def starts(length: int) -> list[tuple[int, int]]:
        if length <= grid * span:
            return [(0, length)]
        centres = [(i + 0.5) * length / grid for i in range(grid)]
        return [(int(c - span / 2), int(c - span / 2) + span) for c in centres]

    return [(y0, x0, y1, x1) for y0, y1 in starts(height) for x0, x1 in starts(width)]


def window_side(policy: ScalePolicy) -> int:
    """The side (working px) of the windows the estimate measures on: three standard stones."""
    return max(256, 32 * math.ceil(3 * policy.stone_px / 32))


class _ScaleSearch:
    """The measurements of one scale estimate, factor by factor (see ``estimate_scale``)."""

    def __init__(
        self,
        image: np.ndarray,
        policy: ScalePolicy,
        stone_mask_at: Callable[[np.ndarray, float, bool], np.ndarray],
    ) -> None:
        self.image = image
        self.stone_mask_at = stone_mask_at
        self.target = math.log(policy.stone_px)
        self.side = window_side(policy)
        self.trail: list[dict[str, float]] = []
        self.measured: dict[float, float] = {}  # factor -> log(size / stone_px)
        self.sizes: dict[float, float] = {}  # factor -> log(measured size)

    def measure(self, factor: float) -> float | None:
        """The typical stone of the network's mask at ``factor``, on ``sample_windows``, as
        log(size / stone_px); None where the network finds no stones. A stone more than half
        a window across cannot be measured in it and counts as "too big"."""
        h, w = self.image.shape[:2]
        windows = sample_windows(h, w, factor, self.side)
        masks = []
        for y0, x0, y1, x1 in windows:
            whole = len(windows) == 1 and (y0, x0, y1, x1) == (0, 0, h, w)
            work = resize_by(self.image[y0:y1, x0:x1], factor)
            masks.append(self.stone_mask_at(work, factor, whole))
        d = typical_stone_px(masks)
        self.trail.append({"factor": factor, "stone_px": float(d) if d else 0.0})
        if d is None:
            return None
        err = math.log(d) - self.target
        if d > self.side / 2:  # too big for its window to measure: too big, by an octave at least
            err = max(err, math.log(2.0))
        self.measured[factor] = err
        self.sizes[factor] = math.log(d)
        return err

    def saturated(self, f: float) -> bool:
        """Whether zooming in to ``f`` stopped making the stones bigger.

        Zooming in must make the stones bigger: a network shown stones far larger than it was
        trained on does not see them whole, it paints pieces of about its own standard size
        (or fewer and fewer of them), so the size it measures stops growing with the factor
        and reads "too small" at every zoom, which would walk the estimate ever further in (a
        4 MP photo of large blocks went to 4x its scale). A measurement at least a quarter of
        an octave above another whose size grew by less than ``SATURATION_GROWTH`` powers of
        the ratio of factors is *saturated*: it is never the answer, and no step goes to it
        or beyond.
        """
        return any(
            math.log(f / g) >= MIN_SATURATION_SPAN
            and self.sizes[f] - self.sizes[g] < SATURATION_GROWTH * math.log(f / g)
            for g in self.sizes
            if g < f
        )

    def usable(self) -> list[float]:
        return [f for f in self.measured if not self.saturated(f)]

    def best(self) -> float:
        """The unsaturated measurement closest to the target."""
        return min(self.usable(), key=lambda f: abs(self.measured[f]))

    def next_step(self, factor: float) -> float:
        """The factor to measure after ``factor`` (not yet snapped to the grid).

        Step as if the measured size grew in proportion to the factor, at most an octave a
        round (far from its scale a network sees texture, not stones, and its sizes
        mislead); once two measurements lie on both sides of the target, interpolate
        between them (in log scale).
        """
        err = self.measured[factor]
        usable = self.usable()
        below = [f for f in usable if self.measured[f] < 0]  # stones too small here
        above = [f for f in usable if self.measured[f] > 0]
        step = factor * math.exp(-float(np.clip(err, -math.log(2.0), math.log(2.0))))
        if below and above and max(below) < min(above):
            lo, hi = max(below), min(above)  # the tightest bracket (size grows with factor)
            t = self.measured[lo] / (self.measured[lo] - self.measured[hi])
            step = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
        return step

    def measured_or_blocked(self, factor: float) -> bool:
        """``factor`` was measured already, or lies at or beyond a saturated measurement."""
        blocked = [f for f in self.measured if self.saturated(f)]
        return factor in self.measured or bool(blocked and factor >= min(blocked))


def _first_guesses(policy: ScalePolicy, height: int, width: int) -> list[float]:
    """The long-side scale and the training photos' median scale (a photo like them; a
    mosaic of them is one), on the grid and clamped."""
    first = policy.clamp(snap(policy.long_side(height, width)), height, width)
    starts = [first]
    if policy.train_scale > 0:
        second = policy.clamp(snap(policy.train_scale), height, width)
        if second != first:
            starts.append(second)
    return starts


def estimate_scale(
    image: np.ndarray,
    policy: ScalePolicy,
    stone_mask_at: Callable[[np.ndarray, float, bool], np.ndarray],
    rounds: int = 6,
) -> tuple[float, list[dict[str, float]]]:
    """The stone-size factor for a photo nobody measured, from the network's own output.

    Look for the factor at which the typical stone of the network's mask is
    ``policy.stone_px`` across. Measure (``_ScaleSearch.measure``, with ``stone_mask_at(work
    image, factor, whether it is the whole photo)`` -> its stone mask, bool or 0/255) at two
    first guesses (``_first_guesses``). From the better, step towards the target
    (``_ScaleSearch.next_step``), always on a grid of 9 % steps (``snap``). A measurement
    where zooming in stopped making the stones bigger is saturated
    (``_ScaleSearch.saturated``): never the answer, and no step goes to it or beyond.

    Ends when a step is within half a grid step of the target, when the next step was
    measured already or is blocked, or after ``rounds``; the answer is the unsaturated
    measurement closest to the target. A photo in which the network finds no stones keeps
    the long-side factor. Returns (factor, the rounds as {"factor", "stone_px"} for the log).
    """
    h, w = image.shape[:2]
    half_step = math.log(2.0) / 16
    search = _ScaleSearch(image, policy, stone_mask_at)
    starts = _first_guesses(policy, h, w)
    for f in starts:
        search.measure(f)
    if not search.measured:
        return starts[0], search.trail
    for _ in range(rounds - len(starts)):
        factor = search.best()
        if abs(search.measured[factor]) <= half_step:
            break
        nxt = policy.clamp(snap(search.next_step(factor)), h, w)
        if search.measured_or_blocked(nxt):
            break
        if search.measure(nxt) is None:
            break
    return search.best(), search.trail
