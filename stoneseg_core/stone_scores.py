"""Stone-level scores of a model on labelled photos with per-stone truth (``instances/``).

What a geologist publishes is the grain-size curve, so a model is also judged by its stones:
its prediction is split as the app splits it (``stone_labels``: the model's boundary map and
speck floor when it has them) and matched one-to-one with the true stones. ``score_stones``
gives stone precision, recall and F1 at IoU 0.5, F1 averaged over IoU 0.50-0.95, stones found
and true, and the D16/D50/D84 errors in psi (by count and by area), pooled over the photos.
Training records it for the validation photos that have per-stone labels; ``stoneseg
evaluate --instances`` and ``bench_stones.py`` report the same measures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import StonesegError
from .grains import measure_stones, split_stones
from .grains.instances import stone_curve_errors, stone_scores_over_ious
from .imageio import read_image, read_instance_labels

if TYPE_CHECKING:
    from .predict import Prediction, Segmenter


def stone_labels(pred: Prediction) -> np.ndarray:
    """A prediction split into stones the way the app does it (``grains``, the Grains panel)."""
    return split_stones(
        pred.mask > 0,
        pred.probability,
        boundary=pred.boundary,
        min_stone_px=pred.min_stone_px,
    )


def pooled_stone_scores(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], mm_per_px: Sequence[float | None] | None = None
) -> dict[str, Any]:
    """(predicted labels, true labels) per photo -> the pooled measures (see the module)."""
    pred_sizes: list[float] = []
    true_sizes: list[float] = []
    pred_areas: list[float] = []
    true_areas: list[float] = []
    scales = list(mm_per_px) if mm_per_px is not None else [None] * len(pairs)
    for (pred, true), mm in zip(pairs, scales, strict=True):
        k = mm or 1.0
        for s in measure_stones(pred):
            pred_sizes.append(s.b_axis_px * k)
            pred_areas.append(s.area_px * k * k)
        for s in measure_stones(true):
            true_sizes.append(s.b_axis_px * k)
            true_areas.append(s.area_px * k * k)
    scores = stone_scores_over_ious(pairs)
    return {
        "images": len(pairs),
        "found": len(pred_sizes),
        "true": len(true_sizes),
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1": scores["f1"],
        "f1_50_95": scores["f1_50_95"],
        **stone_curve_errors(pred_sizes, true_sizes, pred_areas, true_areas),
    }


def score_stones(
    seg: Segmenter,
    items: Sequence[tuple[str | Path, str | Path]],
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """The model's stone-level measures on ``items`` (photo path, per-stone label path).

    None when nothing could be scored (no items, or stopped). A photo whose labels cannot be
    read is named in ``"skipped"`` and left out; the rest are still scored.
    """
    pairs, names, skipped = [], [], []
    for image_path, inst_path in items:
        if should_stop is not None and should_stop():
            return None
        try:
            image = read_image(image_path)
            truth = read_instance_labels(inst_path, expected_size=image.shape[:2])
        except StonesegError as exc:
            skipped.append(str(exc))
            continue
        pairs.append((stone_labels(seg.predict(image, should_stop)), truth))
        names.append(Path(image_path).stem)
    if not pairs:
        return None
    out = pooled_stone_scores(pairs)
    out["photos"] = names
    out["split"] = "seams (boundary map)" if seg.info.classes > 1 else "distance transform"
    if skipped:
        out["skipped"] = skipped
    return out


__all__ = ["pooled_stone_scores", "score_stones", "stone_labels"]
