"""Training as a generator: progress after every batch, a summary after every epoch.

    gen = iter_training(pairs, out_dir, TrainConfig(epochs=5))
    for event in gen: ...            # BatchProgress / EpochSummary
    result = <the generator's return value>  (or use ``run_training``)

The split is made by source photo before any augmentation, so validation figures come only
from photos the model never learned from. Augmentation happens on the fly; nothing is
written to disk but the model folder. The best model by validation IoU, judged in eval mode
after the BatchNorm statistics are recalibrated, is saved as soon as it is found, so a
cancelled run still leaves the best model so far.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import pretrained
from .config import InferenceConfig, TrainConfig
from .dataset import CropDataset, Sample, load_samples, seed_worker
from .device import autocast, autocast_dtype, resolve_device
from .errors import DataError, OutOfMemoryError, StonesegError
from .metrics import THRESHOLDS, Confusion, Scores, ThresholdSweep, confusion, pooled
from .model import (
    ModelInfo,
    build_model,
    load_model,
    recalibrate_batchnorm,
    save_model,
    set_bn_momentum,
    set_output_channels,
    weights_provenance,
)
from .predict import Segmenter

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ events


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


@dataclass
class _State:
    best_iou: float = -1.0
    best_epoch: int = 0
    best_scores: Scores | None = None
    best_per_image: tuple[ImageScore, ...] = ()
    history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------- helpers


class DiceBCELoss(nn.Module):
    """Dice + BCE-with-logits: Dice handles the stone/background imbalance, BCE the calibration."""

    def __init__(self) -> None:
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss

        self.dice = DiceLoss(mode="binary", from_logits=True)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return self.dice(logits, target) + self.bce(logits, target)


class StoneBoundaryLoss(nn.Module):
    """For the "mask+boundary" target: Dice + BCE on the stone channel (exactly the loss of
    a 1-channel model) plus ``boundary_weight`` x (Dice + BCE) on the boundary channel.

    Each channel gets its own Dice: SMP's binary Dice pools every channel of an image
    together, which would let the large stone channel drown the thin boundary band.
    """

    def __init__(self, boundary_weight: float = 1.0) -> None:
        super().__init__()
        self.stone = DiceBCELoss()
        self.boundary = DiceBCELoss()
        self.boundary_weight = boundary_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        stone = self.stone(logits[:, :1], target[:, :1])
        return stone + self.boundary_weight * self.boundary(logits[:, 1:2], target[:, 1:2])


def warmup_cosine(
    total_steps: int, warmup_steps: int, floor: float = 0.02
) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to ``floor`` of the peak."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_pairs(pairs: list[tuple[Path, ...]]) -> None:
    if not pairs:
        raise DataError("No labelled images: paint (or import) at least two masks before training.")


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
    cfg = InferenceConfig(threshold=info.threshold, amp="off", runtime="torch")
    seg = Segmenter(model, info, cfg, device)
    losses, stems, sweeps = [], [], []
    for s in samples:
        if should_stop is not None and should_stop():
            break
        prob_work = seg.probability_at_work_scale(s.image)
        target = torch.from_numpy((s.mask > 127).astype(np.float32))[None, None]
        p = torch.from_numpy(np.clip(prob_work, 1e-6, 1 - 1e-6))[None, None]
        losses.append(float(loss_fn(torch.logit(p), target)))
        full = s.full_mask
        if full is not None and full.shape != prob_work.shape:
            import cv2

            prob_full = cv2.resize(
                prob_work, (full.shape[1], full.shape[0]), interpolation=cv2.INTER_LINEAR
            )
        else:
            prob_full = prob_work
            full = s.mask if full is None else full
        sweep = ThresholdSweep()
        sweep.add(prob_full, full)
        stems.append(s.stem)
        sweeps.append(sweep)
    model.train()
    loss = float(np.mean(losses)) if losses else float("nan")
    return Validation(loss, tuple(stems), tuple(sweeps))


def _param_groups(model: nn.Module, lr: float, encoder_factor: float) -> list[dict]:
    """The encoder at ``encoder_factor`` x the learning rate, the rest (decoder, head) at it.

    A pretrained encoder already knows edges and textures; a lower rate keeps what it knows
    while the new decoder learns from scratch."""
    encoder = list(model.encoder.parameters())
    ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if id(p) not in ids]
    if encoder_factor == 1.0:
        return [{"params": encoder + rest, "lr": lr}]
    return [{"params": encoder, "lr": lr * encoder_factor}, {"params": rest, "lr": lr}]


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
    ``compare_with`` (default: ``from_model``): a model to score on the same validation
    photos at the end (those it never trained on), so the caller can keep the better one.
    """
    t_start = time.perf_counter()
    _check_pairs(pairs)
    out_dir = Path(out_dir)
    cfg = config
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    dtype = autocast_dtype(device, cfg.amp, training=True)

    parent_info: ModelInfo | None = None
    if from_model is not None:
        model, parent_info = load_model(from_model, "cpu")
        cfg = cfg.replace(encoder=parent_info.encoder, work_size=parent_info.work_size)
        if parent_info.classes > cfg.classes:
            # a boundary model stays one (the default target "mask" would drop what it learnt)
            cfg = cfg.replace(target=parent_info.target)
        set_bn_momentum(model, cfg.bn_momentum)
        if parent_info.classes != cfg.classes:
            log.info(
                "fine-tuning a %s model for the %s target: new output layer for the extra channel",
                parent_info.target,
                cfg.target,
            )
            set_output_channels(model, cfg.classes)
    else:
        model = build_model(cfg.encoder, cfg.weights, cfg.bn_momentum, classes=cfg.classes)

    stems = [pair[0].stem for pair in pairs]
    if len(set(stems)) != len(stems):
        raise DataError(
            "Two labelled images share a file name stem; rename one so masks are unambiguous."
        )
    from .project import split_by_image, split_continuing

    if parent_info is None:
        train_stems, val_stems = split_by_image(stems, cfg.val_fraction, cfg.val_images, cfg.seed)
    else:
        # a fine-tuned model never validates on a photo any of its ancestors trained on
        train_stems, val_stems = split_continuing(
            stems,
            cfg.val_fraction,
            earlier_val=parent_info.val_images,
            trained_before=parent_info.lineage_train_images,
            val_images=cfg.val_images,
        )
    by_stem = dict(zip(stems, pairs))
    boundary = cfg.classes > 1
    # one pass over both sides, so every unusable file is named in one message
    loaded = load_samples(
        [by_stem[s] for s in stems],
        cfg.work_size,
        keep_full_mask=set(val_stems),
        with_instances=boundary,
    )
    by_sample = {sample.stem: sample for sample in loaded}
    train_samples = [by_sample[s] for s in train_stems]
    val_samples = [by_sample[s] for s in val_stems]

    info = ModelInfo(
        encoder=cfg.encoder,
        work_size=cfg.work_size,
        threshold=cfg.threshold,
        train=cfg.to_dict(),
        train_images=train_stems,
        val_images=val_stems,
        parent=str(from_model) if from_model else None,
        target=cfg.target,
        trained_before=list(parent_info.lineage_train_images) if parent_info else [],
    )
    if parent_info is not None:
        info.mean, info.std = parent_info.mean, parent_info.std
        info.encoder_weights = {
            "source": "model",
            "parent": str(from_model),
            "origin": parent_info.encoder_weights or {"source": "unknown"},
        }
    else:
        # the input normalisation the encoder's pretrained weights were trained with
        info.mean, info.std = pretrained.normalization(cfg.encoder)
        info.encoder_weights = weights_provenance(model)

    model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    dataset = CropDataset(
        train_samples,
        cfg.crop,
        cfg.samples_per_image,
        info.mean,
        info.std,
        seed=cfg.seed,
        boundary_px=cfg.boundary_px if boundary else 0,
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(dataset) > cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=cfg.num_workers > 0,
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.lr, cfg.encoder_lr_factor),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(total_steps, warmup_steps=min(steps_per_epoch, max(1, total_steps // 10))),
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and dtype == torch.float16)
    loss_fn = StoneBoundaryLoss() if boundary else DiceBCELoss()
    val_loss_fn = DiceBCELoss()
    state = _State()
    cancelled = False

    def stop_requested() -> bool:
        return should_stop is not None and should_stop()

    def finish_epoch(epoch: int, train_loss: float, seconds: float) -> EpochSummary:
        used = recalibrate_batchnorm(
            model, (x for x, _ in loader), device, cfg.bn_recalibration_batches
        )
        log.debug("recalibrated BatchNorm on %d batches", used)
        val = _validate(model, val_samples, info, val_loss_fn, device, None)
        val_loss = val.loss
        best_t = val.best_threshold()
        # a threshold chosen on one or two photos fitted those photos, not the model: on
        # held-out photos it lost IoU (README, "Threshold"), so it takes enough of them
        choose = cfg.choose_threshold and len(val.stems) >= cfg.threshold_min_val_images
        threshold = best_t if choose else cfg.threshold
        scores, rows = val.at(threshold)
        at_default = val.at(cfg.threshold)[0]
        is_best = scores.iou > state.best_iou
        lr = optimizer.param_groups[-1]["lr"]
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "seconds": round(seconds, 2),
                "threshold": threshold,
                **{f"val_{k}": v for k, v in scores.to_dict().items()},
                f"val_iou_at_{cfg.threshold:g}": at_default.iou,
            }
        )
        if is_best:
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
            state.best_iou, state.best_epoch, state.best_scores, state.best_per_image = (
                scores.iou,
                epoch,
                scores,
                rows,
            )
            _save(epoch)
        else:
            _save_history_only()
        return EpochSummary(
            epoch=epoch,
            epochs=cfg.epochs,
            train_loss=train_loss,
            val_loss=val_loss,
            val=scores,
            per_image=rows,
            best_epoch=state.best_epoch,
            best_iou=state.best_iou,
            is_best=is_best,
            seconds=seconds,
            lr=lr,
        )

    def _metrics_block() -> dict:
        return {
            "best_epoch": state.best_epoch,
            "validation": state.best_scores.to_dict() if state.best_scores else None,
            "per_image": [{"image": r.image, **r.scores.to_dict()} for r in state.best_per_image],
            "cancelled": cancelled,
        }

    def _save(epoch: int) -> None:
        info.history = state.history
        info.metrics = _metrics_block()
        info.created = ""
        save_model(model, info, out_dir)

    def _save_history_only() -> None:
        # the weights on disk stay the best ones; only the record of the run grows
        import json

        from .imageio import atomic_write_bytes
        from .model import CONFIG_FILE

        if not (out_dir / CONFIG_FILE).is_file():
            return
        info.history = state.history
        info.metrics = _metrics_block()
        atomic_write_bytes(
            out_dir / CONFIG_FILE, json.dumps(info.to_json(), indent=2, default=str).encode()
        )

    model.train()
    seen = 0
    try:
        for epoch in range(1, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            running = []
            for batch_idx, (images, masks) in enumerate(loader, start=1):
                images = images.to(device, non_blocking=True)
                masks = masks.to(device, non_blocking=True)
                if device.type == "cpu":
                    images = images.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                try:
                    with autocast(device, dtype):
                        logits = model(images)
                    loss = loss_fn(logits, masks)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                except torch.OutOfMemoryError as exc:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    raise OutOfMemoryError(
                        f"The {device.type.upper()} ran out of memory at batch size {cfg.batch_size} and crop "
                        f"{cfg.crop}px. Lower the batch size or the crop size, or train on the CPU."
                    ) from exc
                scheduler.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise StonesegError(
                        "Training diverged (the loss became NaN or infinite). Lower the learning rate and train again."
                    )
                running.append(value)
                seen += len(images)
                elapsed = time.perf_counter() - t_start
                yield BatchProgress(
                    epoch=epoch,
                    epochs=cfg.epochs,
                    batch=batch_idx,
                    batches=steps_per_epoch,
                    loss=value,
                    lr=optimizer.param_groups[-1]["lr"],
                    images_per_second=seen / max(elapsed, 1e-9),
                    elapsed=elapsed,
                )
                if stop_requested():
                    cancelled = True
                    break
            if cancelled:
                if state.best_epoch == 0 and running:
                    # nothing saved yet: keep what this partial epoch learned
                    yield finish_epoch(
                        epoch, float(np.mean(running)), time.perf_counter() - t_epoch
                    )
                break
            yield finish_epoch(epoch, float(np.mean(running)), time.perf_counter() - t_epoch)
    except GeneratorExit:
        cancelled = True
        _save_history_only()
        raise
    if cancelled:
        _save_history_only()
    other = compare_with if compare_with is not None else from_model
    comparison = None
    if other is not None and state.best_epoch > 0:
        comparison = compare_on_validation(
            Path(other), state.best_per_image, {s: by_stem[s][:2] for s in val_stems}, device
        )
    return TrainResult(
        model_dir=out_dir,
        best_epoch=state.best_epoch,
        best=state.best_scores,
        best_per_image=state.best_per_image,
        history=tuple(state.history),
        train_images=tuple(train_stems),
        val_images=tuple(val_stems),
        cancelled=cancelled,
        seconds=time.perf_counter() - t_start,
        comparison=comparison,
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
    from .imageio import read_image, read_mask

    try:
        net, info = load_model(other, device)
        # each model at its own threshold: what it does when it segments a photo
        seg = Segmenter(net, info, InferenceConfig(threshold=info.threshold), device)
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
