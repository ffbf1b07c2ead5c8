"""Scoring a model on the labelled photos of a folder, as a generator.

``iter_evaluation`` yields one ``EvaluationProgress`` per photo and returns the result: pixel
scores per photo and pooled (over all photos, and over those the model was not trained on),
and, with instance ground truth, stone-level scores. ``stoneseg evaluate`` prints it; a
window can drive the same generator.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import InferenceConfig
from .errors import StonesegError
from .grains import evaluate_instances_detailed, pool_instance_evaluations
from .imageio import read_image, read_instance_labels, read_mask
from .metrics import confusion, pooled
from .predict import Segmenter
from .project import Project


@dataclass(frozen=True)
class EvaluationProgress:
    """One labelled photo handled by ``iter_evaluation``."""

    index: int  # 1-based
    total: int
    image: Path
    status: str  # "scored" or "failed"
    message: str = ""


def iter_evaluation(
    model_dir: str | Path,
    data_dir: str | Path,
    config: InferenceConfig | None = None,
    instances_dir: str | Path | None = None,
) -> Generator[EvaluationProgress, None, dict[str, Any]]:
    """Score a model on every labelled photo of a folder. Rows say whether the model saw it."""
    seg = Segmenter.load(model_dir, config)
    project = Project.open(data_dir)
    pairs = project.labelled_pairs()
    if not pairs:
        raise StonesegError(
            f"No labelled photos in {data_dir}: it needs images/ and masks/ with the same stems."
        )
    trained_on = set(seg.info.train_images)
    validated_on = set(seg.info.val_images)
    rows, counts, unseen, failed, stone_evals = [], [], [], [], []
    if instances_dir is not None:
        instances_dir = Path(instances_dir)
        if not instances_dir.is_dir():
            raise StonesegError(f"Instance mask folder not found: {instances_dir}")
    total = len(pairs)
    for index, (img_path, mask_path) in enumerate(pairs, start=1):
        try:
            image = read_image(img_path)
            truth = read_mask(mask_path, expected_size=image.shape[:2])
        except StonesegError as exc:
            failed.append({"image": img_path.name, "error": str(exc)})
            yield EvaluationProgress(index, total, img_path, "failed", str(exc))
            continue
        prediction = seg.predict(image)
        c = confusion(prediction.mask, truth)
        split = (
            "train"
            if img_path.stem in trained_on
            else "validation"
            if img_path.stem in validated_on
            else "unseen"
        )
        row = {"image": img_path.name, "split": split, **c.scores().to_dict(), "pixels": c.total}
        inst_path = instances_dir / f"{img_path.stem}.png" if instances_dir is not None else None
        if inst_path is not None and inst_path.is_file():
            try:
                labels = read_instance_labels(inst_path, expected_size=image.shape[:2])
                ev = evaluate_instances_detailed(
                    prediction.probability,
                    labels,
                    threshold=seg.config.threshold,
                    boundary=getattr(prediction, "boundary", None),
                )
                stone_evals.append(ev)
                row["stones"] = ev.to_dict()
            except StonesegError as exc:
                failed.append({"image": inst_path.name, "error": str(exc)})
        rows.append(row)
        counts.append(c)
        if split != "train":
            unseen.append(c)
        yield EvaluationProgress(index, total, img_path, "scored")
    result: dict[str, Any] = {"model": str(model_dir), "data": str(data_dir), "images": len(rows)}
    result.update(pooled(counts).to_dict() if counts else {})
    result["not_trained_on"] = {
        "images": len(unseen),
        **(pooled(unseen).to_dict() if unseen else {}),
    }
    result["per_image"] = rows
    if instances_dir is not None:
        result["stones"] = pool_instance_evaluations(stone_evals)
    result["failed"] = failed
    return result


__all__ = ["EvaluationProgress", "iter_evaluation"]
