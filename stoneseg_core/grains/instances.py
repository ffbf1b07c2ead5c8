"""Instance checks: compare split stones with instance ground truth (stone-level precision,
recall and F1 at an IoU threshold, and the D50 error in psi)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StonesegError
from .distribution import Weighting, grain_size_distribution
from .measure import _check_scale, measure_stones
from .split import split_stones


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


def _overlaps(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
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


def stone_scores_over_ious(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, Any]:
    """Pooled over photos (predicted labels, true labels): P/R/F1 at IoU 0.5, F1 averaged over the thresholds."""
    totals = {float(t): InstanceScores() for t in iou_thresholds}
    for pred, true in pairs:
        for t, s in match_instances_over_ious(pred, true, iou_thresholds).items():
            totals[t] = totals[t] + s
    at50 = totals.get(0.5) or next(iter(totals.values()))
    return {
        **at50.to_dict(),
        "f1_50_95": float(np.mean([s.f1 for s in totals.values()])),
        "f1_by_iou": {f"{t:.2f}": s.f1 for t, s in totals.items()},
    }


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
    """Stone-level comparison of one photo; sizes are b-axes in pixels, areas in pixels."""

    scores: InstanceScores
    pred_sizes_px: tuple[float, ...]
    pred_areas_px: tuple[float, ...]
    true_sizes_px: tuple[float, ...]
    true_areas_px: tuple[float, ...]
    mm_per_px: float | None = None
    iou_threshold: float = 0.5

    def to_dict(self, by: Weighting = "count") -> dict[str, Any]:
        scale = 1.0 if self.mm_per_px is None else self.mm_per_px
        unit = "px" if self.mm_per_px is None else "mm"
        d_pred = grain_size_distribution(self.pred_sizes_px, by, self.pred_areas_px).percentile(50)
        d_true = grain_size_distribution(self.true_sizes_px, by, self.true_areas_px).percentile(50)
        return {
            **self.scores.to_dict(),
            "iou_threshold": self.iou_threshold,
            "n_pred": len(self.pred_sizes_px),
            "n_true": len(self.true_sizes_px),
            "by": by,
            "unit": unit,
            f"d50_pred_{unit}": None if d_pred is None else d_pred * scale,
            f"d50_true_{unit}": None if d_true is None else d_true * scale,
            "d50_psi_error": d50_psi_error(
                self.pred_sizes_px, self.true_sizes_px, by, self.pred_areas_px, self.true_areas_px
            ),
        }


def evaluate_instances_detailed(
    pred_mask_or_prob: np.ndarray,
    true_instance_labels: np.ndarray,
    mm_per_px: float | None = None,
    iou_threshold: float = 0.5,
    min_separation_px: int = 5,
    neck_ratio: float = 0.9,
    threshold: float = 0.5,
    boundary: np.ndarray | None = None,
) -> InstanceEvaluation:
    """Split a prediction into stones and compare them with instance ground truth.

    A float array is taken as the model's probability (thresholded at ``threshold`` and
    used to split); anything else as a mask (> 0 is stone). ``boundary``: the model's
    stone-boundary probability, when it has one (then the split follows it).
    """
    _check_scale(mm_per_px)
    pred = np.asarray(pred_mask_or_prob)
    true = np.asarray(true_instance_labels)
    if pred.shape[:2] != true.shape[:2]:
        raise StonesegError(
            f"The prediction is {pred.shape[1]}x{pred.shape[0]} pixels but the instance ground truth is "
            f"{true.shape[1]}x{true.shape[0]}: they must come from the same photo."
        )
    if pred.dtype.kind == "f":
        labels = split_stones(
            pred >= threshold, pred, min_separation_px, neck_ratio, boundary=boundary
        )
    else:
        labels = split_stones(pred, None, min_separation_px, neck_ratio, boundary=boundary)
    scores = match_instances(labels, true, iou_threshold)
    ps, ts = measure_stones(labels), measure_stones(true)
    return InstanceEvaluation(
        scores=scores,
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
    """Stone-level precision, recall and F1 at IoU >= 0.5 and the D50 error in psi, as a dict.

    For ``stoneseg evaluate`` with instance masks; pool a folder with
    ``pool_instance_evaluations`` on ``evaluate_instances_detailed`` results.
    """
    return evaluate_instances_detailed(
        pred_mask_or_prob, true_instance_labels, mm_per_px, **split_options
    ).to_dict(by)


def pool_instance_evaluations(
    evaluations: Sequence[InstanceEvaluation], by: Weighting = "count"
) -> dict[str, Any]:
    """Pooled figures: counts summed over photos; D50 from all stones together (in mm when every photo has a scale)."""
    if not evaluations:
        return {**InstanceScores().to_dict(), "n_images": 0, "d50_psi_error": None}
    total = InstanceScores()
    for e in evaluations:
        total = total + e.scores
    scaled = all(e.mm_per_px is not None for e in evaluations)

    def gather(attr: str, is_area: bool) -> list[float]:
        out: list[float] = []
        for e in evaluations:
            k = (e.mm_per_px**2 if is_area else e.mm_per_px) if scaled else 1.0
            out.extend(v * k for v in getattr(e, attr))
        return out

    pooled = InstanceEvaluation(
        scores=total,
        pred_sizes_px=tuple(gather("pred_sizes_px", False)),
        pred_areas_px=tuple(gather("pred_areas_px", True)),
        true_sizes_px=tuple(gather("true_sizes_px", False)),
        true_areas_px=tuple(gather("true_areas_px", True)),
        mm_per_px=None,
        iou_threshold=evaluations[0].iou_threshold,
    )
    d = pooled.to_dict(by)
    if scaled:  # the gathered sizes are already millimetres
        d["unit"] = "mm"
        d["d50_pred_mm"] = d.pop("d50_pred_px")
        d["d50_true_mm"] = d.pop("d50_true_px")
    d["n_images"] = len(evaluations)
    return d
