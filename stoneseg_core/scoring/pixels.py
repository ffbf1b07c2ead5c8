"""Segmentation metrics from one confusion count, per image and pooled over a set.

Pooled figures add the confusion counts of all images first (micro-averaging), so a large
photo weighs as many pixels as it has; the per-image rows show how uneven a set is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def scores(self) -> Scores:
        return Scores.from_confusion(self)


def _ratio(num: int, den: int, empty: float) -> float:
    """num/den, with ``empty`` where the denominator is zero (both masks empty: perfect)."""
    return float(num) / den if den else empty


@dataclass(frozen=True)
class Scores:
    accuracy: float
    iou: float
    f1: float
    precision: float
    recall: float

    @classmethod
    def from_confusion(cls, c: Confusion) -> Scores:
        # When the truth and the prediction are both empty, there is nothing to miss and
        # nothing wrongly found: every score is 1. When only one is empty, the ratios are 0.
        both_empty = c.tp + c.fp + c.fn == 0
        empty = 1.0 if both_empty else 0.0
        return cls(
            accuracy=_ratio(c.tp + c.tn, c.total, 1.0),
            iou=_ratio(c.tp, c.tp + c.fp + c.fn, empty),
            f1=_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, empty),
            precision=_ratio(c.tp, c.tp + c.fp, empty),
            recall=_ratio(c.tp, c.tp + c.fn, empty),
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def confusion(pred: np.ndarray, truth: np.ndarray) -> Confusion:
    """Count pixels; both arrays are masks (any value > 0 is stone) of the same shape."""
    pred = np.asarray(pred) > 0
    truth = np.asarray(truth) > 0
    if pred.shape != truth.shape:
        raise ValueError(f"Prediction {pred.shape} and ground truth {truth.shape} differ in size.")
    tp = int(np.count_nonzero(pred & truth))
    p = int(np.count_nonzero(pred))
    t = int(np.count_nonzero(truth))
    fp = p - tp
    fn = t - tp
    return Confusion(tp=tp, fp=fp, fn=fn, tn=int(pred.size) - tp - fp - fn)


def pooled(counts: list[Confusion]) -> Scores:
    total = Confusion()
    for c in counts:
        total = total + c
    return total.scores()


# Candidate thresholds for choosing a model's own: 0.10, 0.15, ..., 0.90. Finer steps would
# fit the few validation photos of a small project rather than the model.
THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))
_BINS = 1000  # probabilities are counted in bins of 0.001


@dataclass
class ThresholdSweep:
    """Confusion counts at every candidate threshold, from one pass over each photo.

    Each photo adds two histograms of its probabilities (stone pixels, ground pixels), so
    the counts at any threshold are cumulative sums: no second pass, no copies of the photos.
    """

    stone: np.ndarray = field(default_factory=lambda: np.zeros(_BINS + 1, np.int64))
    ground: np.ndarray = field(default_factory=lambda: np.zeros(_BINS + 1, np.int64))

    def add(self, prob: np.ndarray, truth: np.ndarray) -> None:
        prob = np.asarray(prob, np.float32)
        truth = np.asarray(truth) > 0
        if prob.shape != truth.shape:
            raise ValueError(f"Probability {prob.shape} and truth {truth.shape} differ in size.")
        # bin b holds p in [b/1000, (b+1)/1000): "p >= t" for t = k/1000 is bins k and up
        bins = np.clip((prob * _BINS).astype(np.int32), 0, _BINS)
        self.stone += np.bincount(bins[truth], minlength=_BINS + 1)
        self.ground += np.bincount(bins[~truth], minlength=_BINS + 1)

    def confusion_at(self, threshold: float) -> Confusion:
        k = int(round(threshold * _BINS))
        tp = int(self.stone[k:].sum())
        fn = int(self.stone[:k].sum())
        fp = int(self.ground[k:].sum())
        tn = int(self.ground[:k].sum())
        return Confusion(tp=tp, fp=fp, fn=fn, tn=tn)

    def best(self, candidates: tuple[float, ...] = THRESHOLDS) -> tuple[float, Scores]:
        """The candidate with the highest pooled IoU; ties go to the one nearest 0.5."""
        ranked = sorted(
            candidates,
            key=lambda t: (-self.confusion_at(t).scores().iou, abs(t - 0.5)),
        )
        t = ranked[0]
        return t, self.confusion_at(t).scores()
