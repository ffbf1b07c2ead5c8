"""The steps of one training run, for ``train.iter_training``: the model to start from, the
split by photo, the data, the optimiser (``prepare``), one batch (``train_step``) and saving
what the run found (``save_best`` / ``save_history``).

Everything a run holds between those steps is one ``TrainingRun``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from stoneseg_core.errors import DataError, OutOfMemoryError, StonesegError
from stoneseg_core.io.images import atomic_write_bytes
from stoneseg_core.io.project import split_by_image, split_continuing
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.device import autocast, autocast_dtype, resolve_device
from stoneseg_core.model.network import (
    CONFIG_FILE,
    ModelInfo,
    build_model,
    load_model,
    pretrained,
    save_model,
    set_bn_momentum,
    set_output_channels,
    weights_provenance,
)
from stoneseg_core.model.scale import ScalePolicy, smallest_stone_area, typical_stone_px
from stoneseg_core.scoring.pixels import Scores
from stoneseg_core.training.dataset import (
    STONE_SIZE_ZOOM_OCTAVES,
    CropDataset,
    Sample,
    load_samples,
    resolve_stone_px,
    seed_worker,
    with_stone_px,
)
from stoneseg_core.training.distributed import Distributed, current, wrap_for_training
from stoneseg_core.training.losses import DiceBCELoss, StoneBoundaryLoss

log = logging.getLogger("stoneseg_core.training.train")


# ---------------------------------------------------------------------------------- helpers


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


def check_pairs(pairs: list[tuple[Path, ...]]) -> None:
    if not pairs:
        raise DataError("No labelled images: paint (or import) at least two masks before training.")


def param_groups(model: nn.Module, lr: float, encoder_factor: float) -> list[dict]:
    """The encoder at ``encoder_factor`` x the learning rate, the rest (decoder, head) at it.

    A pretrained encoder already knows edges and textures; a lower rate keeps what it knows
    while the new decoder learns from scratch."""
    encoder = list(model.encoder.parameters())
    ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if id(p) not in ids]
    if encoder_factor == 1.0:
        return [{"params": encoder + rest, "lr": lr}]
    return [{"params": encoder, "lr": lr * encoder_factor}, {"params": rest, "lr": lr}]


# ------------------------------------------------------------------------------ the run


@dataclass
class TrainingRun:
    """What one training run holds from ``prepare`` to its result."""

    cfg: TrainConfig
    out_dir: Path
    from_model: str | Path | None
    device: torch.device
    dtype: torch.dtype | None
    model: nn.Module
    info: ModelInfo
    by_stem: dict[str, tuple[Path, ...]]
    train_stems: list[str]
    val_stems: list[str]
    val_samples: list[Sample]
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    val_loss_fn: nn.Module  # the stone channel's loss: validation means the same for every target
    t_start: float
    # the best epoch so far: by validation stone F1 then IoU, or by IoU (cfg.select_epoch_by)
    best_key: tuple[float, ...] | None = None
    best_iou: float = -1.0
    best_epoch: int = 0
    best_scores: Scores | None = None
    best_per_image: tuple = ()  # of events.ImageScore
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False
    stone_scores: dict | None = None  # the best model's stones on validation (training/train.py)
    seen: int = 0  # training images seen, for the speed
    # under torchrun (distributed.py): this process's rank, and the DDP wrapper the training
    # step runs (``model`` stays the unwrapped one: validated and saved on rank 0)
    dist: Distributed | None = None
    train_model: nn.Module | None = None

    @property
    def is_main(self) -> bool:
        """True alone, and on rank 0 of a torchrun job: the process that saves and reports."""
        return self.dist is None or self.dist.is_main

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[-1]["lr"]


def _start_model(
    cfg: TrainConfig, from_model: str | Path | None
) -> tuple[nn.Module, TrainConfig, ModelInfo | None]:
    """A new model, or ``from_model`` to fine-tune (whose encoder and working scale win)."""
    if from_model is None:
        return (
            build_model(cfg.encoder, cfg.weights, cfg.bn_momentum, classes=cfg.classes),
            cfg,
            None,
        )
    model, parent_info = load_model(from_model, "cpu")
    parent_scale = parent_info.scale_policy
    cfg = cfg.replace(
        encoder=parent_info.encoder,
        work_size=parent_info.work_size,
        scale_policy=parent_scale.policy,
        stone_px=parent_scale.stone_px,
    )
    if parent_info.classes > 1 and parent_info.target != cfg.target:
        # a boundary (or distance) model stays one: the default target "mask" would drop
        # what it learnt, and another two-channel target would retrain its second channel
        # to mean something else under the same weights
        cfg = cfg.replace(target=parent_info.target)
    set_bn_momentum(model, cfg.bn_momentum)
    if parent_info.classes != cfg.classes:
        log.info(
            "fine-tuning a %s model for the %s target: new output layer for the extra channel",
            parent_info.target,
            cfg.target,
        )
        set_output_channels(model, cfg.classes)
    return model, cfg, parent_info


def _split(
    stems: list[str], cfg: TrainConfig, parent_info: ModelInfo | None
) -> tuple[list[str], list[str]]:
    if len(set(stems)) != len(stems):
        raise DataError(
            "Two labelled images share a file name stem; rename one so masks are unambiguous."
        )
    if parent_info is None:
        return split_by_image(stems, cfg.val_fraction, cfg.val_images, cfg.seed)
    # a fine-tuned model never validates on a photo any of its ancestors trained on
    return split_continuing(
        stems,
        cfg.val_fraction,
        earlier_val=parent_info.val_images,
        trained_before=parent_info.lineage_train_images,
        val_images=cfg.val_images,
    )


def _model_info(
    cfg: TrainConfig,
    model: nn.Module,
    train_stems: list[str],
    val_stems: list[str],
    from_model: str | Path | None,
    parent_info: ModelInfo | None,
) -> ModelInfo:
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
    return info


def _loader(
    samples: list[Sample],
    cfg: TrainConfig,
    info: ModelInfo,
    device: torch.device,
    run_dist: Distributed | None = None,
) -> DataLoader:
    """The training crops; under torchrun this rank's share of them, with its own
    augmentation seed (``cfg.seed + rank``) and ``batch_size`` crops a batch on each rank."""
    dataset = CropDataset(
        samples,
        cfg.crop,
        cfg.crops_per_image(len(samples)),
        info.mean,
        info.std,
        seed=cfg.seed if run_dist is None else cfg.seed + run_dist.rank,
        boundary_px=cfg.boundary_px if cfg.classes > 1 else 0,
        small_stone_weight=cfg.small_stone_weight if cfg.classes > 1 else 1.0,
        distance=cfg.target == "mask+distance",
        zoom_octaves=STONE_SIZE_ZOOM_OCTAVES if info.scale_policy.policy == "stone-size" else 0.0,
    )
    sampler = None
    if run_dist is not None:
        # every rank gets len(dataset) / N crops (padded to equal shares: the ranks must
        # take the same number of steps), reshuffled each epoch by set_epoch
        sampler = DistributedSampler(
            dataset,
            num_replicas=run_dist.world_size,
            rank=run_dist.rank,
            shuffle=True,
            seed=cfg.seed,
        )
    share = len(dataset) if sampler is None else len(sampler)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=share > cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=cfg.num_workers > 0,
    )


def _device(config: TrainConfig, run_dist: Distributed | None) -> torch.device:
    """The device ``config`` asks for; under torchrun, this rank's one of its kind."""
    device = resolve_device(config.device)
    if run_dist is not None:
        device = run_dist.device(device.type)
    return device


def _load_photos(
    cfg: TrainConfig,
    by_stem: dict[str, tuple[Path, ...]],
    train_stems: list[str],
    val_stems: list[str],
) -> tuple[ScalePolicy, dict[str, Sample]]:
    """The scale policy and every photo at its working scale, by stem."""
    # a stone-size policy's standard stone: the training photos' own (never the validation's)
    policy = ScalePolicy(cfg.scale_policy, cfg.work_size, cfg.stone_px)
    policy = resolve_stone_px([by_stem[s] for s in train_stems], policy)
    # one pass over both sides, so every unusable file is named in one message
    loaded = load_samples(
        list(by_stem.values()),
        policy,
        keep_full_mask=set(val_stems),
        # per-stone labels: the boundary target's band, and every model's speck floor
        with_instances=True,
        # a stone-size model validates at the scale it estimates, as a new photo gets
        keep_full_image=set(val_stems) if policy.policy == "stone-size" else (),
    )
    return policy, {sample.stem: sample for sample in loaded}


def _record_training_scale(
    policy: ScalePolicy, by_sample: dict[str, Sample], train_stems: list[str]
) -> ScalePolicy:
    """``policy`` with what inference needs of the training photos: the standard stone (a
    long-side model's too), their median scale and the speck floor."""
    if policy.stone_px <= 0:
        # long-side: the standard stone recorded for `--scale stone-size` at inference, from
        # the training masks as loaded (already at the long-side scale: no second read)
        policy = with_stone_px(policy, [typical_stone_px(by_sample[s].mask) for s in train_stems])
    train_factors = [by_sample[s].factor for s in train_stems if s in by_sample]
    return dataclasses.replace(
        policy,
        train_scale=float(np.median(train_factors)) if train_factors else 0.0,
        min_stone_area=smallest_stone_area(
            [
                by_sample[s].mask if by_sample[s].instances is None else by_sample[s].instances
                for s in train_stems
                if s in by_sample
            ]
        ),
    )


def _place_model(
    model: nn.Module, device: torch.device, run_dist: Distributed | None
) -> tuple[nn.Module, nn.Module | None]:
    """The model on ``device`` (channels-last on the CPU), and under torchrun the DDP
    wrapper the training step runs (None alone)."""
    model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    train_model = None
    if run_dist is not None:
        model, train_model = wrap_for_training(model, run_dist, device)
    return model, train_model


def _optimiser(
    model: nn.Module, cfg: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over ``param_groups``, and its warm-up-then-cosine schedule over the run."""
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.lr, cfg.encoder_lr_factor),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(total_steps, warmup_steps=min(steps_per_epoch, max(1, total_steps // 10))),
    )
    return optimizer, scheduler


def prepare(
    pairs: list[tuple[Path, ...]],
    out_dir: Path,
    config: TrainConfig,
    from_model: str | Path | None,
) -> TrainingRun:
    """The model, the split by photo, the photos at working scale, the loader and the optimiser."""
    t_start = time.perf_counter()
    check_pairs(pairs)
    seed_everything(config.seed)
    run_dist = current()  # None alone; a torchrun job's rank (distributed.py)
    device = _device(config, run_dist)
    dtype = autocast_dtype(device, config.amp, training=True)
    model, cfg, parent_info = _start_model(config, from_model)

    stems = [pair[0].stem for pair in pairs]
    train_stems, val_stems = _split(stems, cfg, parent_info)
    by_stem = dict(zip(stems, pairs))
    policy, by_sample = _load_photos(cfg, by_stem, train_stems, val_stems)
    policy = _record_training_scale(policy, by_sample, train_stems)
    info = _model_info(cfg, model, train_stems, val_stems, from_model, parent_info)
    info.scale = policy.to_json()

    model, train_model = _place_model(model, device, run_dist)
    loader = _loader([by_sample[s] for s in train_stems], cfg, info, device, run_dist)
    optimizer, scheduler = _optimiser(model, cfg, len(loader))
    return TrainingRun(
        cfg=cfg,
        out_dir=out_dir,
        from_model=from_model,
        device=device,
        dtype=dtype,
        model=model,
        info=info,
        by_stem=by_stem,
        train_stems=train_stems,
        val_stems=val_stems,
        val_samples=[by_sample[s] for s in val_stems],
        loader=loader,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(
            "cuda", enabled=device.type == "cuda" and dtype == torch.float16
        ),
        loss_fn=StoneBoundaryLoss() if cfg.classes > 1 else DiceBCELoss(),
        val_loss_fn=DiceBCELoss(),
        t_start=t_start,
        dist=run_dist,
        train_model=train_model,
    )


def train_step(run: TrainingRun, images: torch.Tensor, masks: torch.Tensor) -> float:
    """One optimiser step on one batch; its loss. A clear error on running out of memory or diverging."""
    device, cfg = run.device, run.cfg
    images = images.to(device, non_blocking=True)
    masks = masks.to(device, non_blocking=True)
    if device.type == "cpu":
        images = images.contiguous(memory_format=torch.channels_last)
    run.optimizer.zero_grad(set_to_none=True)
    net = run.model if run.train_model is None else run.train_model  # DDP averages gradients
    try:
        with autocast(device, run.dtype):
            logits = net(images)
        loss = run.loss_fn(logits, masks)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    except torch.OutOfMemoryError as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemoryError(
            f"The {device.type.upper()} ran out of memory at batch size {cfg.batch_size} and crop "
            f"{cfg.crop}px. Lower the batch size or the crop size, or train on the CPU."
        ) from exc
    run.scheduler.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise StonesegError(
            "Training diverged (the loss became NaN or infinite). Lower the learning rate and train again."
        )
    run.seen += len(images)
    return value


# ---------------------------------------------------------------------------------- saving


def _metrics_block(run: TrainingRun) -> dict:
    return {
        "best_epoch": run.best_epoch,
        "validation": run.best_scores.to_dict() if run.best_scores else None,
        "per_image": [{"image": r.image, **r.scores.to_dict()} for r in run.best_per_image],
        "cancelled": run.cancelled,
        **({"stones": run.stone_scores} if run.stone_scores else {}),
    }


def save_best(run: TrainingRun) -> None:
    """Save the model (the best so far) with the record of the run (rank 0 alone under torchrun)."""
    if not run.is_main:
        return
    info = run.info
    info.history = run.history
    info.metrics = _metrics_block(run)
    info.created = ""
    save_model(run.model, info, run.out_dir)


def save_history(run: TrainingRun) -> None:
    """Bring the record of the run up to date; the weights on disk stay the best ones."""
    if not run.is_main or not (run.out_dir / CONFIG_FILE).is_file():
        return
    info = run.info
    info.history = run.history
    info.metrics = _metrics_block(run)
    atomic_write_bytes(
        run.out_dir / CONFIG_FILE, json.dumps(info.to_json(), indent=2, default=str).encode()
    )
