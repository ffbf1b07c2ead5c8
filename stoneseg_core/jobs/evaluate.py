"""Scoring a model on the labelled photos of a folder, as a generator.

``iter_evaluation`` yields one ``EvaluationProgress`` per photo and returns the result: pixel
scores per photo and pooled (over all photos, and over those the model was not trained on),
and, with instance ground truth, stone-level scores: precision, recall and F1 at IoU 0.5, F1
averaged over IoU 0.50:0.95, and the grain-size curve's errors at D16/D50/D84 in psi by count
and by area, per photo and pooled over the stones of all photos (in mm when every photo has a
scale), optionally drawn as a picture of both curves. ``stoneseg evaluate`` prints it; a
window can drive the same generator.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains.curve_plot import check_plot_path
from stoneseg_core.grains.instances import (
    InstanceEvaluation,
    compare_stones,
    pool_instance_evaluations,
    pooled_evaluation,
)
from stoneseg_core.grains.measure import check_mm_per_px
from stoneseg_core.grains.scale import project_scales
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.geo import georeference_or_none, is_tiff
from stoneseg_core.io.images import (
    instances_disagreement,
    read_image,
    read_instance_labels,
    read_mask,
)
from stoneseg_core.io.project import INSTANCES_DIR, Project
from stoneseg_core.model.config import InferenceConfig
from stoneseg_core.scoring.pixels import Confusion, confusion, pooled
from stoneseg_core.scoring.stones import stone_labels


class _Stale(Exception):
    """App-written per-stone labels that no longer fit their mask."""


@dataclass(frozen=True)
class EvaluationProgress:
    """One labelled photo handled by ``iter_evaluation``."""

    index: int  # 1-based
    total: int
    image: Path
    status: str  # "scored" or "failed"
    message: str = ""


def default_instances_dir(data_dir: str | Path) -> Path | None:
    """``DATA_DIR/instances`` when it is a folder (the instance truth a project keeps), else None."""
    folder = Path(data_dir) / INSTANCES_DIR
    return folder if folder.is_dir() else None


def photo_scale(
    image_path: Path,
    project: Project,
    mm_per_px: float | None = None,
    scales: dict[str, float] | None = None,
) -> float | None:
    """A photo's mm per pixel, or None: the one given for all photos, else its row of
    ``scales`` (a scale CSV), else the scale the app keeps for it in the project, else its
    GeoTIFF georeference's, else the project folder's."""
    if mm_per_px is not None:
        return mm_per_px
    if scales is not None and image_path.stem in scales:
        return scales[image_path.stem]
    own, folder = project_scales(project.state)
    if image_path.stem in own:
        return own[image_path.stem]
    georef = georeference_or_none(image_path) if is_tiff(image_path) else None
    if georef is not None:
        mm = georef.mm_per_px()[0]
        if mm is not None:
            return mm
    return folder


def iter_evaluation(
    model_dir: str | Path,
    data_dir: str | Path,
    config: InferenceConfig | None = None,
    instances_dir: str | Path | None = None,
    mm_per_px: float | None = None,
    scales: dict[str, float] | None = None,
    plot: str | Path | None = None,
) -> Generator[EvaluationProgress, None, dict[str, Any]]:
    """Score a model on every labelled photo of a folder. Rows say whether the model saw it.

    ``instances_dir`` (``<stem>.png``, one id per stone) adds the stone figures: each row's
    ``stones``, ``stones`` pooled over all photos with instance truth, and
    ``not_trained_on["stones"]`` pooled over those the model did not train on. Scales
    (``photo_scale``) put the sizes in mm; the psi errors do not depend on them. ``plot``: a
    .png, .svg or .pdf file to draw the pooled predicted and true grain-size curves into
    (``plot_stone_curves``).
    """
    instances_dir, plot = _checked_options(mm_per_px, instances_dir, plot)
    seg = Segmenter.load(model_dir, config)
    project = Project.open(data_dir)
    pairs = project.labelled_pairs()
    if not pairs:
        raise StonesegError(
            f"No labelled photos in {data_dir}: it needs images/ and masks/ with the same stems."
        )
    trained_on = set(seg.info.train_images)
    validated_on = set(seg.info.val_images)
    # the project's own labels: those the app wrote (cuts and merges) may be stale
    own_labels = instances_dir is not None and (
        instances_dir.resolve() == project.instances_dir.resolve()
    )
    own_project = project if own_labels else None
    tally = _Tally()
    total = len(pairs)
    for index, (img_path, mask_path) in enumerate(pairs, start=1):
        try:
            image = read_image(img_path)
            truth = read_mask(mask_path, expected_size=image.shape[:2])
        except StonesegError as exc:
            tally.failed.append({"image": img_path.name, "error": str(exc)})
            yield EvaluationProgress(index, total, img_path, "failed", str(exc))
            continue
        scale = photo_scale(img_path, project, mm_per_px, scales)
        prediction = seg.predict(image, mm_per_px=scale)
        c = confusion(prediction.mask, truth)
        split = _split_of(img_path.stem, trained_on, validated_on)
        row = {"image": img_path.name, "split": split, **c.scores().to_dict(), "pixels": c.total}
        if scale is not None:
            row["mm_per_px"] = scale
        inst_path = instances_dir / f"{img_path.stem}.png" if instances_dir is not None else None
        if inst_path is not None and inst_path.is_file():
            try:
                ev = _stone_scores(inst_path, img_path, truth, prediction, scale, own_project)
                tally.stone_evals.append((split, ev))
                row["stones"] = ev.to_dict()
            except _Stale as exc:
                tally.stale.append(str(exc))
            except StonesegError as exc:
                tally.failed.append({"image": inst_path.name, "error": str(exc)})
        tally.add_photo(row, c)
        yield EvaluationProgress(index, total, img_path, "scored")
    return _result(model_dir, data_dir, instances_dir, plot, tally)


def _checked_options(
    mm_per_px: float | None, instances_dir: str | Path | None, plot: str | Path | None
) -> tuple[Path | None, Path | None]:
    """(``instances_dir``, ``plot``) as paths, once checked: a scale that is one, a plot file
    of a kind that can be drawn and the instance truth it needs, an instance folder that is
    there. Raises a StonesegError saying which is wrong."""
    check_mm_per_px(mm_per_px)
    if plot is not None:
        plot = check_plot_path(plot)
        if instances_dir is None:
            raise StonesegError(
                "The plot shows the grain-size curves of the stones: it needs instance ground "
                "truth (--instances)."
            )
    if instances_dir is not None:
        instances_dir = Path(instances_dir)
        if not instances_dir.is_dir():
            raise StonesegError(f"Instance mask folder not found: {instances_dir}")
    return instances_dir, plot


def _split_of(stem: str, trained_on: set[str], validated_on: set[str]) -> str:
    """Whether the model saw a photo: "train", "validation" or "unseen"."""
    return "train" if stem in trained_on else "validation" if stem in validated_on else "unseen"


def _stone_scores(
    inst_path: Path,
    img_path: Path,
    truth: np.ndarray,
    prediction,
    scale: float | None,
    own_project: Project | None,
) -> InstanceEvaluation:
    """One photo's stone-level scores against its instance truth ``inst_path``.

    With ``own_project`` (the truth is that project's own ``instances/``), labels the app
    wrote from cuts and merges are first checked against the mask: _Stale when they no
    longer fit it. Raises a StonesegError when the labels cannot be read.
    """
    labels = read_instance_labels(inst_path, expected_size=truth.shape[:2])  # the photo's
    if own_project is not None and own_project.wrote_instances(img_path):
        why = instances_disagreement(labels, truth)
        if why is not None:  # the mask was edited after the cuts and merges
            raise _Stale(f"{img_path.name} ({why})")
    # the stones `grains` would measure (its split, its speck floor); the evaluation keeps
    # counts and sizes, never the label images
    return compare_stones(stone_labels(prediction), labels, scale)


@dataclass
class _Tally:
    """What ``iter_evaluation`` gathers photo by photo."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: list[Confusion] = field(default_factory=list)  # every scored photo's
    unseen: list[Confusion] = field(default_factory=list)  # those not trained on
    stone_evals: list[tuple[str, InstanceEvaluation]] = field(default_factory=list)  # (split, ..)
    stale: list[str] = field(default_factory=list)  # photos whose app-written labels are stale
    failed: list[dict[str, str]] = field(default_factory=list)

    def add_photo(self, row: dict[str, Any], c: Confusion) -> None:
        """A scored photo's row and pixel counts."""
        self.rows.append(row)
        self.counts.append(c)
        if row["split"] != "train":
            self.unseen.append(c)


def _result(
    model_dir: str | Path,
    data_dir: str | Path,
    instances_dir: Path | None,
    plot: Path | None,
    tally: _Tally,
) -> dict[str, Any]:
    """``iter_evaluation``'s result: the pooled pixel scores, every row, and with instance
    truth the pooled stone scores (and the plot); the failures last."""
    result: dict[str, Any] = {
        "model": str(model_dir),
        "data": str(data_dir),
        "images": len(tally.rows),
    }
    result.update(pooled(tally.counts).to_dict() if tally.counts else {})
    result["not_trained_on"] = {
        "images": len(tally.unseen),
        **(pooled(tally.unseen).to_dict() if tally.unseen else {}),
    }
    result["per_image"] = tally.rows
    if instances_dir is not None:
        _add_stone_results(result, instances_dir, plot, tally)
    result["failed"] = tally.failed
    return result


def _add_stone_results(
    result: dict[str, Any], instances_dir: Path, plot: Path | None, tally: _Tally
) -> None:
    """The stone scores pooled over all photos and over those not trained on, a note naming
    the photos left out for stale labels, and the plot of the curves (a failure to draw it
    counted among the failures)."""
    all_evals = [ev for _, ev in tally.stone_evals]
    held_out = [ev for split, ev in tally.stone_evals if split != "train"]
    result["instances"] = str(instances_dir)
    if tally.stale:
        result["notes"] = [
            f"{len(tally.stale)} photo(s) left out of the stone scores: the app wrote their "
            "per-stone labels from cuts and merges, and their mask was edited since: "
            + "; ".join(tally.stale)
            + ". Analyse each again in the Grains panel to save them afresh."
        ]
    result["stones"] = pool_instance_evaluations(all_evals)
    result["not_trained_on"]["stones"] = pool_instance_evaluations(held_out)
    if plot is not None:
        try:
            result["plot"] = str(plot_stone_curves(plot, all_evals, held_out))
        except StonesegError as exc:
            tally.failed.append({"image": plot.name, "error": str(exc)})


def plot_stone_curves(
    path: str | Path,
    all_evals: list[InstanceEvaluation],
    held_out: list[InstanceEvaluation],
) -> Path:
    """Draw the pooled predicted and true grain-size curves (by count and by area) of the
    photos the model was not trained on, or of all scored photos when it trained on every
    one; the title says which. Returns the path."""
    from stoneseg_core.grains.curve_plot import plot_grain_size_curves

    evals = held_out or all_evals
    if not evals:
        raise StonesegError("No photo had instance ground truth: no grain-size curve to draw.")
    both = pooled_evaluation(evals)
    if held_out:
        which = f"{len(evals)} photo{'s' if len(evals) != 1 else ''} not trained on"
    else:
        which = (
            f"all {len(evals)} scored photo{'s' if len(evals) != 1 else ''} (every one trained on)"
        )
    d = both.to_dict()
    errs = "  ".join(
        f"D{p} {d[f'd{p}_psi_error']:+.2f}"
        for p in (16, 50, 84)
        if d[f"d{p}_psi_error"] is not None
    )
    title = f"Grain-size curves, predicted vs true: {which}"
    if errs:
        title += f"\nerror in psi by count: {errs}"
    panels = []
    for by in ("count", "area"):
        pred, true = both.curves(by)
        panels.append((f"by {by}", [("true", true), ("predicted", pred)]))
    return plot_grain_size_curves(path, panels, title)


__all__ = [
    "EvaluationProgress",
    "default_instances_dir",
    "iter_evaluation",
    "photo_scale",
    "plot_stone_curves",
]
