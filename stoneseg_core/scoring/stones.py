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

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import split_stones
from stoneseg_core.grains.instances import compare_stones, pool_instance_evaluations
from stoneseg_core.io.images import read_image, read_instance_labels

if TYPE_CHECKING:
    from stoneseg_core.inference.segmenter import Prediction, Segmenter


# how ``stone_labels`` splits a model's prediction, by its target (model.config.TARGETS)
SPLIT_NAMES = {
    "mask": "distance transform",
    "mask+boundary": "seams (boundary map)",
    "mask+distance": "seams (distance map)",
}


def stone_labels(pred: Prediction) -> np.ndarray:
    """A prediction split into stones the way the app does it (``grains``, the Grains panel)."""
    return split_stones(
        pred.mask > 0,
        pred.probability,
        boundary=pred.boundary,
        min_stone_px=pred.min_stone_px,
    )


def score_stones(
    seg: Segmenter,
    items: Sequence[tuple[str | Path, str | Path]],
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """The model's stone-level measures on ``items`` (photo path, per-stone label path).

    None when nothing could be scored (no items, or stopped). A photo whose labels cannot be
    read is named in ``"skipped"`` and left out; the rest are still scored.
    """
    evaluations, names, skipped = [], [], []
    for image_path, inst_path in items:
        if should_stop is not None and should_stop():
            return None
        try:
            image = read_image(image_path)
            truth = read_instance_labels(inst_path, expected_size=image.shape[:2])
        except StonesegError as exc:
            skipped.append(str(exc))
            continue
        evaluations.append(compare_stones(stone_labels(seg.predict(image, should_stop)), truth))
        names.append(Path(image_path).stem)
    if not evaluations:
        return None
    out = pool_instance_evaluations(evaluations)
    out["photos"] = names
    out["split"] = SPLIT_NAMES[seg.info.target]
    if skipped:
        out["skipped"] = skipped
    return out


__all__ = ["score_stones", "stone_labels"]
