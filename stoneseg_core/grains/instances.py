"""Instance checks: compare split stones with instance ground truth (stone-level precision,
recall and F1 at an IoU threshold, F1 averaged over IoU 0.50:0.05:0.95, and the grain-size
curve's errors in psi at D16, D50 and D84, by count and by area)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.distribution import GrainSizeCurve, Weighting, grain_size_distribution
from stoneseg_core.grains.measure import check_mm_per_px, measure_stones
from stoneseg_core.grains.split import split_stones


@dataclass(frozen=True)
class InstanceScores:
    """Stone-level counts at one IoU threshold. Iterates as (tp, fp, fn, precision, recall, f1)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: InstanceScores) -> InstanceScores:
        return InstanceScores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    # Both empty: nothing missed and nothing invented, so 1 (as in metrics.Scores).
    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(self.fn == 0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float(self.fp == 0)

    @property
    def f1(self) -> float:
        den = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / den if den else 1.0

    def __iter__(self):
        return iter((self.tp, self.fp, self.fn, self.precision, self.recall, self.f1))

    def to_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _overlaps(
    pred: np.ndarray, true: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Every overlapping (predicted, true) pair with its IoU: (pred index, true index, IoU, n_pred, n_true)."""
    pred_ids, pred_inv = np.unique(pred.ravel(), return_inverse=True)
    true_ids, true_inv = np.unique(true.ravel(), return_inverse=True)
    n_pred = int(np.count_nonzero(pred_ids))
    n_true = int(np.count_nonzero(true_ids))
    pred_area = np.bincount(pred_inv, minlength=pred_ids.size)
    true_area = np.bincount(true_inv, minlength=true_ids.size)
    both = (pred.ravel() != 0) & (true.ravel() != 0)
    pair = pred_inv[both].astype(np.int64) * true_ids.size + true_inv[both]
    keys, inter = np.unique(pair, return_counts=True)
    pi, ti = keys // true_ids.size, keys % true_ids.size
    iou = inter / (pred_area[pi] + true_area[ti] - inter)
    return pi, ti, iou, n_pred, n_true


def _matched(pi: np.ndarray, ti: np.ndarray, iou: np.ndarray, iou_threshold: float) -> int:
    """How many one-to-one pairs reach ``iou_threshold`` (Hungarian assignment on IoU)."""
    from scipy.optimize import linear_sum_assignment  # 0.25 s to import: at the first check

    ok = iou >= iou_threshold
    if not ok.any():
        return 0
    pi, ti, iou = pi[ok], ti[ok], iou[ok]
    rows, ri = np.unique(pi, return_inverse=True)
    cols, ci = np.unique(ti, return_inverse=True)
    cost = np.zeros((rows.size, cols.size))
    cost[ri, ci] = -iou
    r, c = linear_sum_assignment(cost)
    return int(np.count_nonzero(cost[r, c] < 0))


def _same_size(pred: np.ndarray, true: np.ndarray) -> None:
    if pred.shape != true.shape:
        raise StonesegError(
            f"Predicted labels {pred.shape[::-1]} and ground truth {true.shape[::-1]} differ in size (width, height)."
        )


def match_instances(
    pred_labels: np.ndarray, true_labels: np.ndarray, iou_threshold: float = 0.5
) -> InstanceScores:
    """Count stones found (tp), invented (fp) and missed (fn), one-to-one at IoU >= ``iou_threshold``.

    Pairs are assigned by the Hungarian method on IoU, so the count is right for any
    threshold (above 0.5 a stone can overlap only one other that much anyway).
    """
    pred = np.asarray(pred_labels)
    true = np.asarray(true_labels)
    _same_size(pred, true)
    if not 0 < iou_threshold <= 1:
        raise StonesegError(f"The IoU threshold must be in (0, 1], got {iou_threshold}.")
    pi, ti, iou, n_pred, n_true = _overlaps(pred, true)
    tp = _matched(pi, ti, iou, iou_threshold) if n_pred and n_true else 0
    return InstanceScores(tp, n_pred - tp, n_true - tp)


# IoU thresholds of the averaged stone F1 (COCO's 0.50:0.05:0.95)
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def match_instances_over_ious(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[float, InstanceScores]:
    """``match_instances`` at each IoU threshold, the overlaps computed once."""
    pred = np.asarray(pred_labels)
    true = np.asarray(true_labels)
    _same_size(pred, true)
    pi, ti, iou, n_pred, n_true = _overlaps(pred, true)
    out = {}
    for t in iou_thresholds:
        tp = _matched(pi, ti, iou, t) if n_pred and n_true else 0
        out[float(t)] = InstanceScores(tp, n_pred - tp, n_true - tp)
    return out


def sum_over_ious(
    per_photo: Iterable[Mapping[float, InstanceScores]],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[float, InstanceScores]:
    """The counts of several photos (each ``match_instances_over_ious``'s answer) summed at each threshold."""
    totals = {float(t): InstanceScores() for t in iou_thresholds}
    for scores in per_photo:
        for t in totals:
            totals[t] = totals[t] + scores[t]
    return totals


def f1_over_ious(totals: Mapping[float, InstanceScores]) -> dict[str, Any]:
    """``f1_50_95`` (the mean of the F1s at the thresholds) and ``f1_by_iou`` ({"0.50": F1, ...})."""
    return {
        "f1_50_95": float(np.mean([s.f1 for s in totals.values()])) if totals else None,
        "f1_by_iou": {f"{t:.2f}": s.f1 for t, s in totals.items()},
    }


def stone_scores_over_ious(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, Any]:
    """Pooled over photos (predicted labels, true labels): P/R/F1 at IoU 0.5, F1 averaged over the thresholds."""
    totals = sum_over_ious(
        (match_instances_over_ious(pred, true, iou_thresholds) for pred, true in pairs),
        iou_thresholds,
    )
    at50 = totals.get(0.5) or next(iter(totals.values()))
    return {**at50.to_dict(), **f1_over_ious(totals)}


def d50_psi_error(
    pred_sizes: Sequence[float],
    true_sizes: Sequence[float],
    by: Weighting = "count",
    pred_areas: Sequence[float] | None = None,
    true_areas: Sequence[float] | None = None,
) -> float | None:
    """psi(D50 predicted) - psi(D50 true): +0.1 means the prediction is 7 % too coarse.

    Sizes may be in pixels: the scale cancels in a difference of logarithms. None when
    either side has no stones.
    """
    d_pred = grain_size_distribution(pred_sizes, by, pred_areas).percentile(50)
    d_true = grain_size_distribution(true_sizes, by, true_areas).percentile(50)
    if d_pred is None or d_true is None:
        return None
    return math.log2(d_pred) - math.log2(d_true)


CURVE_PERCENTILES = (16.0, 50.0, 84.0)


def stone_curve_errors(
    pred_sizes: Sequence[float],
    true_sizes: Sequence[float],
    pred_areas: Sequence[float] | None = None,
    true_areas: Sequence[float] | None = None,
    percentiles: Sequence[float] = CURVE_PERCENTILES,
) -> dict[str, float | None]:
    """The grain-size curve's error in psi at each percentile, by count and (with areas) by area.

    Keys ``d16_psi_error`` (by count) and ``d16_psi_error_area`` (by area), and so on; each
    psi(predicted) - psi(true), None when either side has no stones.
    """
    out: dict[str, float | None] = {}
    weightings: list[Weighting] = ["count"] + (
        ["area"] if pred_areas is not None and true_areas is not None else []
    )
    for by in weightings:
        pc = grain_size_distribution(pred_sizes, by, pred_areas if by == "area" else None)
        tc = grain_size_distribution(true_sizes, by, true_areas if by == "area" else None)
        for p in percentiles:
            dp, dt = pc.percentile(p), tc.percentile(p)
            key = f"d{p:g}_psi_error" + ("" if by == "count" else "_area")
            out[key] = None if dp is None or dt is None else math.log2(dp) - math.log2(dt)
    return out


@dataclass(frozen=True)
class InstanceEvaluation:
    """Stone-level comparison of one photo; sizes are b-axes in pixels, areas in pixels.

    ``scores_by_iou``: the counts at each of ``IOU_THRESHOLDS`` ((threshold, scores) pairs),
    kept instead of the label images so that a folder's F1 over IoU 0.50:0.95 can be pooled
    without holding every photo's labels; empty for an evaluation made without them.
    """

    scores: InstanceScores
    pred_sizes_px: tuple[float, ...]
    pred_areas_px: tuple[float, ...]
    true_sizes_px: tuple[float, ...]
    true_areas_px: tuple[float, ...]
    mm_per_px: float | None = None
    iou_threshold: float = 0.5
    scores_by_iou: tuple[tuple[float, InstanceScores], ...] = ()

    @property
    def unit(self) -> str:
        return "px" if self.mm_per_px is None else "mm"

    def curves(self, by: Weighting = "count") -> tuple[GrainSizeCurve, GrainSizeCurve]:
        """The (predicted, true) grain-size curves, in mm with a scale, else in pixels."""
        k = 1.0 if self.mm_per_px is None else self.mm_per_px
        areas = (lambda a: [v * k * k for v in a]) if by == "area" else (lambda a: None)
        return (
            grain_size_distribution(
                [v * k for v in self.pred_sizes_px], by, areas(self.pred_areas_px), self.unit
            ),
            grain_size_distribution(
                [v * k for v in self.true_sizes_px], by, areas(self.true_areas_px), self.unit
            ),
        )

    def to_dict(self, by: Weighting = "count") -> dict[str, Any]:
        """The scores as JSON-ready numbers.

        ``tp``/``fp``/``fn``/``precision``/``recall``/``f1`` at ``iou_threshold``; ``f1_50_95``
        and ``f1_by_iou`` (None and {} without ``scores_by_iou``); ``n_pred``/``n_true``, the
        stones found and true; ``d16_pred_<unit>`` ... ``d84_true_<unit>``, the curves'
        percentiles weighted ``by``; and the curve's errors psi(predicted) - psi(true) at
        D16, D50 and D84 by count (``d16_psi_error`` ...) and by area (``d16_psi_error_area``
        ...), None where either side has no stones.
        """
        unit = self.unit
        pred_curve, true_curve = self.curves(by)
        out: dict[str, Any] = {
            **self.scores.to_dict(),
            "iou_threshold": self.iou_threshold,
            **f1_over_ious(dict(self.scores_by_iou)),
            "n_pred": len(self.pred_sizes_px),
            "n_true": len(self.true_sizes_px),
            "by": by,
            "unit": unit,
        }
        for p in CURVE_PERCENTILES:
            out[f"d{p:g}_pred_{unit}"] = pred_curve.percentile(p)
            out[f"d{p:g}_true_{unit}"] = true_curve.percentile(p)
        # psi differences do not depend on the scale: pixels will do
        out.update(
            stone_curve_errors(
                self.pred_sizes_px, self.true_sizes_px, self.pred_areas_px, self.true_areas_px
            )
        )
        return out


def evaluate_instances_detailed(
    pred_mask_or_prob: np.ndarray,
    true_instance_labels: np.ndarray,
    mm_per_px: float | None = None,
    iou_threshold: float = 0.5,
    min_separation_px: int = 5,
    neck_ratio: float = 0.9,
    threshold: float = 0.5,
    boundary: np.ndarray | None = None,
    min_stone_px: float = 0.0,
) -> InstanceEvaluation:
    """Split a prediction into stones and compare them with instance ground truth.

    A float array is taken as the model's probability (thresholded at ``threshold`` and
    used to split); anything else as a mask (> 0 is stone). ``boundary``: the model's
    stone-boundary probability, when it has one (then the split follows it).
    ``min_stone_px``: the prediction's speck floor (``Prediction.min_stone_px``), so the
    stones scored are those ``grains`` would measure.
    """
    check_mm_per_px(mm_per_px)
    pred = np.asarray(pred_mask_or_prob)
    true = np.asarray(true_instance_labels)
    if pred.shape[:2] != true.shape[:2]:
        raise StonesegError(
            f"The prediction is {pred.shape[1]}x{pred.shape[0]} pixels but the instance ground truth is "
            f"{true.shape[1]}x{true.shape[0]}: they must come from the same photo."
        )
    if pred.dtype.kind == "f":
        labels = split_stones(
            pred >= threshold,
            pred,
            min_separation_px,
            neck_ratio,
            boundary=boundary,
            min_stone_px=min_stone_px,
        )
    else:
        labels = split_stones(
            pred,
            None,
            min_separation_px,
            neck_ratio,
            boundary=boundary,
            min_stone_px=min_stone_px,
        )
    return compare_stones(labels, true, mm_per_px, iou_threshold)


def compare_stones(
    labels: np.ndarray,
    true_instance_labels: np.ndarray,
    mm_per_px: float | None = None,
    iou_threshold: float = 0.5,
) -> InstanceEvaluation:
    """Stones already split (``labels``) against instance ground truth of the same photo."""
    true = np.asarray(true_instance_labels)
    over = match_instances_over_ious(labels, true)
    scores = over.get(float(iou_threshold)) or match_instances(labels, true, iou_threshold)
    ps, ts = measure_stones(labels), measure_stones(true)
    return InstanceEvaluation(
        scores=scores,
        scores_by_iou=tuple(over.items()),
        pred_sizes_px=tuple(s.b_axis_px for s in ps),
        pred_areas_px=tuple(float(s.area_px) for s in ps),
        true_sizes_px=tuple(s.b_axis_px for s in ts),
        true_areas_px=tuple(float(s.area_px) for s in ts),
        mm_per_px=mm_per_px,
        iou_threshold=iou_threshold,
    )


def evaluate_instances(
    pred_mask_or_prob: np.ndarray,
    true_instance_labels: np.ndarray,
    mm_per_px: float | None = None,
    by: Weighting = "count",
    **split_options: Any,
) -> dict[str, Any]:
    """Stone-level scores of one photo as a dict (``InstanceEvaluation.to_dict``): P/R/F1 at
    IoU >= 0.5, F1 over IoU 0.50-0.95, and the curve's D16/D50/D84 errors in psi.

    For ``stoneseg evaluate`` with instance masks; pool a folder with
    ``pool_instance_evaluations`` on ``evaluate_instances_detailed`` results.
    """
    return evaluate_instances_detailed(
        pred_mask_or_prob, true_instance_labels, mm_per_px, **split_options
    ).to_dict(by)


def pool_instance_evaluations(
    evaluations: Sequence[InstanceEvaluation], by: Weighting = "count"
) -> dict[str, Any]:
    """Pooled figures: counts summed over photos (at each IoU threshold too); the curves and
    their D16/D50/D84 errors from all stones together (in mm when every photo has a scale)."""
    if not evaluations:
        return {
            **InstanceScores().to_dict(),
            "f1_50_95": None,
            "n_pred": 0,
            "n_true": 0,
            **stone_curve_errors([], [], [], []),
            "n_images": 0,
        }
    pooled = pooled_evaluation(evaluations)
    d = pooled.to_dict(by)
    d["n_images"] = len(evaluations)
    return d


def pooled_evaluation(evaluations: Sequence[InstanceEvaluation]) -> InstanceEvaluation:
    """Several photos' evaluations as one: counts summed, stones gathered.

    Sizes are gathered in mm when every photo has a scale (the result's ``mm_per_px`` is then
    1.0, so its ``unit`` is mm), else in each photo's pixels. The counts at each IoU threshold
    are summed when every photo has them.
    """
    if not evaluations:
        raise StonesegError("Nothing to pool: no photo had instance ground truth.")
    total = InstanceScores()
    for e in evaluations:
        total = total + e.scores
    scaled = all(e.mm_per_px is not None for e in evaluations)

    def gather(attr: str, is_area: bool) -> tuple[float, ...]:
        out: list[float] = []
        for e in evaluations:
            k = (e.mm_per_px**2 if is_area else e.mm_per_px) if scaled else 1.0
            out.extend(v * k for v in getattr(e, attr))
        return tuple(out)

    by_iou: tuple[tuple[float, InstanceScores], ...] = ()
    if all(e.scores_by_iou for e in evaluations):
        thresholds = [t for t, _ in evaluations[0].scores_by_iou]
        by_iou = tuple(
            sum_over_ious((dict(e.scores_by_iou) for e in evaluations), thresholds).items()
        )
    return InstanceEvaluation(
        scores=total,
        pred_sizes_px=gather("pred_sizes_px", False),
        pred_areas_px=gather("pred_areas_px", True),
        true_sizes_px=gather("true_sizes_px", False),
        true_areas_px=gather("true_areas_px", True),
        mm_per_px=1.0 if scaled else None,  # the gathered sizes are already millimetres
        iou_threshold=evaluations[0].iou_threshold,
        scores_by_iou=by_iou,
    )
