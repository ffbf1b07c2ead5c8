"""The events and results of training (``train.iter_training``, ``iter_project_training``):
small frozen dataclasses that the CLI and the window read without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stoneseg_core.scoring.pixels import Confusion, Scores, ThresholdSweep, pooled


@dataclass(frozen=True)
class BatchProgress:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    loss: float
    lr: float
    images_per_second: float
    elapsed: float


@dataclass(frozen=True)
class TrainingPhotos:
    """The first event of ``iter_project_training``: what the run trains on."""

    photos: int
    with_labels: int  # photos with per-stone labels (instances/<stem>.png) taken
    notes: tuple[str, ...] = ()  # for the user (labels left out, and why)


@dataclass(frozen=True)
class ImageScore:
    image: str
    scores: Scores
    counts: Confusion


@dataclass(frozen=True)
class EpochSummary:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val: Scores
    per_image: tuple[ImageScore, ...]
    best_epoch: int
    best_iou: float
    is_best: bool
    seconds: float
    lr: float
    # this epoch's stone F1 on the validation photos with per-stone labels, when the epoch
    # kept is chosen by its stones (TrainConfig.select_epoch_by); else None
    stone_f1: float | None = None


@dataclass(frozen=True)
class Comparison:
    """A new model and another (the one it would replace) scored on the same photos, none
    of which either model trained on."""

    other: Path
    images: tuple[str, ...]
    new: Scores
    other_scores: Scores

    @property
    def new_is_not_worse(self) -> bool:
        return self.new.iou >= self.other_scores.iou


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    best_epoch: int
    best: Scores | None
    best_per_image: tuple[ImageScore, ...]
    history: tuple[dict, ...]
    train_images: tuple[str, ...]
    val_images: tuple[str, ...]
    cancelled: bool
    seconds: float
    # the new model against ``compare_with`` (by default the model fine-tuned), or None
    comparison: Comparison | None = None
    # stone-level scores of the best model on the validation photos with per-stone labels
    # (stone_scores.score_stones), or None when none has them
    stones: dict | None = None


@dataclass(frozen=True)
class Validation:
    """One validation pass: loss, and each photo's probabilities counted at every threshold."""

    loss: float
    stems: tuple[str, ...]
    sweeps: tuple[ThresholdSweep, ...]

    def at(self, threshold: float) -> tuple[Scores, tuple[ImageScore, ...]]:
        """Pooled and per-photo scores at ``threshold``."""
        rows = []
        for stem, sweep in zip(self.stems, self.sweeps):
            c = sweep.confusion_at(threshold)
            rows.append(ImageScore(stem, c.scores(), c))
        if not rows:
            return Scores(0, 0, 0, 0, 0), ()
        return pooled([r.counts for r in rows]), tuple(rows)

    def best_threshold(self) -> float:
        """The candidate threshold with the best pooled IoU over the validation photos."""
        total = ThresholdSweep()
        for sweep in self.sweeps:
            total.stone += sweep.stone
            total.ground += sweep.ground
        return total.best()[0]
