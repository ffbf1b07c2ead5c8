"""Training as a generator: progress after every batch, a summary after every epoch.

    gen = iter_training(pairs, out_dir, TrainConfig(epochs=5))
    for event in gen: ...            # BatchProgress / EpochSummary
    result = <the generator's return value>  (or use ``run_training``)

The split is made by source photo before any augmentation, so validation figures come only
from photos the model never learned from. Augmentation happens on the fly; nothing is
written to disk but the model folder. The best model by validation IoU (or by stone F1 on
the validation photos with per-stone labels: ``TrainConfig.select_epoch_by``), judged in eval
mode after the BatchNorm statistics are recalibrated, is saved as soon as it is found, so a
cancelled run still leaves the best model so far.

``iter_training`` is a short loop over named steps: ``training_steps.prepare`` (model,
split, data, optimiser), ``_train_epoch`` (``training_steps.train_step`` per batch),
``_end_epoch`` (validation, threshold, ``_keep_best``) and ``_finish``. The events and
results are in events.py, the losses in losses.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from stoneseg_core.errors import StonesegError
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import read_image, read_mask
from stoneseg_core.io.project import Project
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.network import ModelInfo, load_model, recalibrate_batchnorm
from stoneseg_core.model.scale import mask_by, resize_by
from stoneseg_core.model.stone_model import STONES, starting_model
from stoneseg_core.scoring.pixels import THRESHOLDS, Scores, ThresholdSweep, confusion, pooled
from stoneseg_core.scoring.stones import score_stones
from stoneseg_core.training.dataset import Sample
from stoneseg_core.training.events import (
    BatchProgress,
    Comparison,
    EpochSummary,
    ImageScore,
    TrainingPhotos,
    TrainResult,
    Validation,
)
from stoneseg_core.training.losses import DiceBCELoss, StoneBoundaryLoss
from stoneseg_core.training.steps import (
    TrainingRun,
    prepare,
    save_best,
    save_history,
    seed_everything,
    train_step,
    warmup_cosine,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- validation


@torch.no_grad()
def _validate(
    model: nn.Module,
    samples: list[Sample],
    info: ModelInfo,
    loss_fn: nn.Module,
    device: torch.device,
    should_stop: Callable[[], bool] | None,
) -> Validation:
    """Loss at working scale; metrics at each photo's own size, against its own mask.

    Both are of the stone channel only (``loss_fn`` is the 1-channel loss), so validation
    figures mean the same for every target.
    """
    model.eval()
    # PyTorch, never ONNX Runtime: the weights change every epoch, so an export (seconds,
    # and a cache file per epoch) would not pay for itself
    cfg = InferenceConfig(amp="off", runtime="torch")  # at the model's own threshold
    seg = Segmenter(model, info, cfg, device)
    losses, stems, sweeps = [], [], []
    for s in samples:
        if should_stop is not None and should_stop():
            break
        if s.full_image is not None:
            # stone-size: at the scale the network estimates, as a photo nobody labelled gets
            # (the validation photo's own mask must not choose its scale)
            factor = seg.work_scale(s.full_image, should_stop=should_stop)
            work_image, work_mask = resize_by(s.full_image, factor), mask_by(s.full_mask, factor)
        else:
            work_image, work_mask = s.image, s.mask
        prob_work = seg.probability_at_work_scale(work_image)
        target = torch.from_numpy((work_mask > 127).astype(np.float32))[None, None]
        p = torch.from_numpy(np.clip(prob_work, 1e-6, 1 - 1e-6))[None, None]
        losses.append(float(loss_fn(torch.logit(p), target)))
        full = s.full_mask
        if full is not None and full.shape != prob_work.shape:
            prob_full = cv2.resize(
                prob_work, (full.shape[1], full.shape[0]), interpolation=cv2.INTER_LINEAR
            )
        else:
            prob_full = prob_work
            full = work_mask if full is None else full
        sweep = ThresholdSweep()
        sweep.add(prob_full, full)
        stems.append(s.stem)
        sweeps.append(sweep)
    model.train()
    loss = float(np.mean(losses)) if losses else float("nan")
    return Validation(loss, tuple(stems), tuple(sweeps))


# --------------------------------------------------------------------------------- training


def iter_training(
    pairs: list[tuple[Path, ...]],
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    from_model: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    compare_with: str | Path | None = None,
) -> Generator[BatchProgress | EpochSummary, None, TrainResult]:
    """Train a U-Net on (image, mask) pairs and save the best model in ``out_dir``.

    A pair may carry a third path, instance labels (or None), used by the boundary target
    (``TrainConfig.target = "mask+boundary"``); see dataset.py.

    ``from_model`` fine-tunes an earlier model (its encoder and working scale are kept, and
    so is its boundary channel if it has one; a 1-channel model gets one when
    ``config.target`` asks for it).
    ``should_stop`` is polled after every batch; closing the generator also stops cleanly.
    ``config.weights == "stones"`` with no ``from_model`` fine-tunes the installed stone model
    (``model.stone_model``) when it has ``config.encoder``.
    ``compare_with`` (default: ``from_model``): a model to score on the same validation
    photos at the end (those it never trained on), so the caller can keep the better one.
    """
    from_model = starting_model(config.weights, config.encoder, from_model)
    if config.weights == STONES:  # (not used: the encoder's ImageNet weights instead)
        config = config.replace(weights="imagenet")
    run = prepare(pairs, Path(out_dir), config, from_model)
    run.model.train()
    try:
        for epoch in range(1, run.cfg.epochs + 1):
            t_epoch = time.perf_counter()
            losses = yield from _train_epoch(run, epoch, should_stop)
            if run.cancelled and not (run.best_epoch == 0 and losses):
                break
            # (cancelled with nothing saved yet: keep what this partial epoch learned)
            summary = _end_epoch(
                run, epoch, _epoch_loss(run, losses), time.perf_counter() - t_epoch
            )
            if summary is not None:  # None: a rank other than 0 of a torchrun job
                yield summary
            if run.cancelled:
                break
    except GeneratorExit:
        run.cancelled = True
        save_history(run)
        raise
    if run.cancelled:
        save_history(run)
    return _finish(run, compare_with if compare_with is not None else from_model)


def iter_project_training(
    project: Project,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    from_model: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    compare_with: str | Path | None = None,
) -> Generator[TrainingPhotos | BatchProgress | EpochSummary, None, TrainResult]:
    """``iter_training`` on a project's labelled photos, chosen inside the job.

    Choosing them (``Project.training_pairs``) hashes and decodes the per-stone labels the app
    wrote, about half a second per 24 MP photo, so a window runs this in its worker rather
    than on its own thread. The first event says what was chosen (``TrainingPhotos``).
    """
    pairs, notes = project.training_pairs()
    if len(pairs) < 2:
        raise StonesegError(
            "Training needs at least two photos whose masks you made or reviewed (one to learn "
            f"from, one to check on); this project has {len(pairs)}. Paint another mask first."
        )
    yield TrainingPhotos(len(pairs), sum(len(p) > 2 for p in pairs), tuple(notes))
    return (yield from iter_training(pairs, out_dir, config, from_model, should_stop, compare_with))


def _train_epoch(
    run: TrainingRun, epoch: int, should_stop: Callable[[], bool] | None
) -> Generator[BatchProgress, None, list[float]]:
    """One pass over the training crops, a BatchProgress after every batch; the batches' losses.

    Sets ``run.cancelled`` and stops early when ``should_stop`` says so."""
    losses = []
    if run.dist is not None:
        run.loader.sampler.set_epoch(epoch)  # a new shuffle of the shares every epoch
    if run.dist is not None and log.isEnabledFor(logging.DEBUG):
        log.debug(
            "rank %d of %d, epoch %d: crops %s",
            run.dist.rank,
            run.dist.world_size,
            epoch,
            list(run.loader.sampler),
        )
    for batch, (images, masks) in enumerate(run.loader, start=1):
        value = train_step(run, images, masks)
        losses.append(value)
        elapsed = time.perf_counter() - run.t_start
        if run.is_main:  # the speed is rank 0's (all ranks run in lockstep)
            yield BatchProgress(
                epoch=epoch,
                epochs=run.cfg.epochs,
                batch=batch,
                batches=run.steps_per_epoch,
                loss=value,
                lr=run.lr,
                images_per_second=run.seen / max(elapsed, 1e-9),
                elapsed=elapsed,
            )
        stop = should_stop is not None and should_stop()
        if run.dist is not None:
            stop = run.dist.any(stop)  # every rank stops after the same batch
        if stop:
            run.cancelled = True
            break
    return losses


def _epoch_loss(run: TrainingRun, losses: list[float]) -> float:
    """The epoch's mean training loss (over all ranks under torchrun)."""
    value = float(np.mean(losses))
    return value if run.dist is None else run.dist.mean(value)


def _end_epoch(
    run: TrainingRun, epoch: int, train_loss: float, seconds: float
) -> EpochSummary | None:
    """Validate in eval mode (BatchNorm recalibrated first), choose the threshold, keep the best.

    Under torchrun every rank recalibrates (SyncBatchNorm on CUDA needs them all); rank 0
    validates, saves and returns the summary; the others get its best epoch and return None."""
    cfg = run.cfg
    used = recalibrate_batchnorm(
        run.model, (x for x, _ in run.loader), run.device, cfg.bn_recalibration_batches
    )
    log.debug("recalibrated BatchNorm on %d batches", used)
    if not run.is_main:
        run.best_epoch, run.best_iou = run.dist.from_main(None)
        return None
    val = _validate(run.model, run.val_samples, run.info, run.val_loss_fn, run.device, None)
    best_t = val.best_threshold()
    # a threshold chosen on one or two photos fitted those photos, not the model: on
    # held-out photos it lost IoU (docs/benchmarks.md, "The threshold chosen on the validation photos"), so it takes enough of them
    choose = cfg.choose_threshold and len(val.stems) >= cfg.threshold_min_val_images
    threshold = best_t if choose else cfg.threshold
    scores, rows = val.at(threshold)
    at_default = val.at(cfg.threshold)[0]
    stones = _epoch_stones(run, threshold)
    # the epoch kept: by its stones where the validation photos have per-stone labels (what
    # a geologist publishes), pixel IoU breaking ties; else by pixel IoU
    key = (scores.iou,) if stones is None else (stones["f1"], scores.iou)
    is_best = run.best_key is None or key > run.best_key
    lr = run.lr
    run.history.append(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val.loss,
            "lr": lr,
            "seconds": round(seconds, 2),
            "threshold": threshold,
            **{f"val_{k}": v for k, v in scores.to_dict().items()},
            f"val_iou_at_{cfg.threshold:g}": at_default.iou,
            **({} if stones is None else {"val_stone_f1": stones["f1"]}),
        }
    )
    if is_best:
        run.best_key = key
        run.stone_scores = stones
        _keep_best(run, epoch, val, threshold, choose, best_t, scores, rows, at_default)
    else:
        save_history(run)
    if run.dist is not None:  # rank 0's decision, after its save
        run.dist.from_main((run.best_epoch, run.best_iou))
    return EpochSummary(
        epoch=epoch,
        epochs=cfg.epochs,
        train_loss=train_loss,
        val_loss=val.loss,
        val=scores,
        per_image=rows,
        best_epoch=run.best_epoch,
        best_iou=run.best_iou,
        is_best=is_best,
        seconds=seconds,
        lr=lr,
        stone_f1=None if stones is None else stones["f1"],
    )


def _keep_best(
    run: TrainingRun,
    epoch: int,
    val: Validation,
    threshold: float,
    choose: bool,
    best_t: float,
    scores: Scores,
    rows: tuple[ImageScore, ...],
    at_default: Scores,
) -> None:
    """Record the new best epoch, with how its threshold was chosen, and save the model."""
    cfg, info = run.cfg, run.info
    info.threshold = threshold
    if choose:
        info.threshold_choice = {
            "method": "best pooled IoU on the validation photos",
            "candidates": f"{THRESHOLDS[0]:.2f} to {THRESHOLDS[-1]:.2f} in steps of 0.05",
            "images": list(val.stems),
            "iou": scores.iou,
            f"iou_at_{cfg.threshold:g}": at_default.iou,
        }
    else:
        why = (
            f"{len(val.stems)} validation photo(s): fewer than "
            f"{cfg.threshold_min_val_images} to choose one on"
            if cfg.choose_threshold
            else "fixed by the user"
        )
        info.threshold_choice = {
            "method": "fixed",
            "value": cfg.threshold,
            "why": why,
            "best_on_validation": best_t,
            "images": list(val.stems),
        }
    run.best_iou, run.best_epoch, run.best_scores, run.best_per_image = (
        scores.iou,
        epoch,
        scores,
        rows,
    )
    save_best(run)


def _stone_items(run: TrainingRun) -> list[tuple[Path, Path]]:
    """(photo, per-stone labels) of the validation photos that have per-stone labels."""
    return [
        (run.by_stem[s][0], run.by_stem[s][2])
        for s in run.val_stems
        if len(run.by_stem[s]) > 2 and run.by_stem[s][2] is not None
    ]


@torch.no_grad()
def _epoch_stones(run: TrainingRun, threshold: float) -> dict | None:
    """This epoch's stones on the validation photos with per-stone labels, split as the app
    splits them, at ``threshold``; None when the epoch is chosen by pixel IoU (the config
    says so, the model has no boundary channel, or no validation photo has per-stone labels)."""
    if run.cfg.select_epoch_by != "stones" or run.info.classes < 2:
        return None
    items = _stone_items(run)
    if not items:
        return None
    run.model.eval()
    try:
        cfg = InferenceConfig(amp="off", runtime="torch", threshold=threshold)
        return score_stones(Segmenter(run.model, run.info, cfg, run.device), items)
    except StonesegError as exc:
        log.warning("stone-level validation failed: %s", exc)
        return None
    finally:
        run.model.train()


def _stone_validation(run: TrainingRun) -> dict | None:
    """The best model's stones on the validation photos that have per-stone labels, recorded
    in its config.json (``metrics["stones"]``); None when none has them. Those of the epoch
    kept when it was chosen by its stones (saved with it); else the saved model is scored."""
    items = _stone_items(run)
    if not items or run.best_epoch == 0 or run.cancelled or not run.is_main:
        return None
    if run.stone_scores is not None:
        return run.stone_scores
    try:
        seg = Segmenter.load(run.out_dir, InferenceConfig(amp="off", runtime="torch"))
        stones = score_stones(seg, items)
    except StonesegError as exc:
        log.warning("stone-level validation failed: %s", exc)
        return None
    if stones is not None:
        run.stone_scores = stones
        save_history(run)
    return stones


def _finish(run: TrainingRun, other: str | Path | None) -> TrainResult:
    """The result, with the comparison against ``other`` on the validation photos."""
    stones = _stone_validation(run)
    comparison = None
    if other is not None and run.best_epoch > 0 and run.is_main:
        comparison = compare_on_validation(
            Path(other),
            run.best_per_image,
            {s: run.by_stem[s][:2] for s in run.val_stems},
            run.device,
        )
    return TrainResult(
        model_dir=run.out_dir,
        best_epoch=run.best_epoch,
        best=run.best_scores,
        best_per_image=run.best_per_image,
        history=tuple(run.history),
        train_images=tuple(run.train_stems),
        val_images=tuple(run.val_stems),
        cancelled=run.cancelled,
        seconds=time.perf_counter() - run.t_start,
        comparison=comparison,
        stones=stones,
    )


def compare_on_validation(
    other: Path,
    new_rows: tuple[ImageScore, ...],
    pairs: dict[str, tuple[Path, ...]],
    device: torch.device | str = "cpu",
) -> Comparison | None:
    """Score ``other`` on the new model's validation photos (``pairs``: stem -> image, mask)
    that ``other`` and its ancestors never trained on, beside the new model's own scores.
    None when no such photo is left or ``other`` cannot be read."""
    try:
        net, info = load_model(other, device)
        # each model at its own threshold: what it does when it segments a photo, counted
        # as validation counts the new model (the network's pixels: no speck floor)
        seg = Segmenter(net, info, device=device)
        seg.floor_specks = False
    except StonesegError as exc:
        log.warning("cannot compare with %s: %s", other, exc)
        return None
    seen = set(seg.info.lineage_train_images)
    rows = [r for r in new_rows if r.image not in seen and r.image in pairs]
    if not rows:
        return None
    counts = []
    for r in rows:
        image_path, mask_path = pairs[r.image][:2]
        image = read_image(image_path)
        truth = read_mask(mask_path, expected_size=image.shape[:2])
        counts.append(confusion(seg.predict(image).mask, truth))
    return Comparison(
        other=Path(other),
        images=tuple(r.image for r in rows),
        new=pooled([r.counts for r in rows]),
        other_scores=pooled(counts),
    )


def run_training(
    pairs: list[tuple[Path, ...]],
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    from_model: str | Path | None = None,
    on_event: Callable[[BatchProgress | EpochSummary], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run ``iter_training`` to the end and return its result."""
    gen = iter_training(pairs, out_dir, config, from_model, should_stop)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


__all__ = [
    "DiceBCELoss",
    "StoneBoundaryLoss",
    "compare_on_validation",
    "iter_training",
    "run_training",
    "seed_everything",
    "warmup_cosine",
]
