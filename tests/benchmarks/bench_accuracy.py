"""Accuracy on stones-dev by k-fold over photos: StoneSeg's default training against the notebook's way.

Folds are made over source photos (seeded shuffle, ``--folds`` folds). For each fold:

- StoneSeg: ``run_training`` with the default TrainConfig (optionally changed with
  ``--set key=value``), training on the other folds' photos, validating on the held-out
  fold. Reported: the LAST epoch's scores (no model selection, so honest) and the best
  epoch's (chosen on the held-out fold itself, so optimistic).
- The notebook's way: each photo squashed to 320x320, four copies made offline (original,
  horizontal flip, vertical flip, 90-degree turn), THEN split 80/20 at random into train and
  val (within the training fold only, so the held-out fold stays honest), SMP's U-Net as it
  comes (efficientnet-b0, random weights), Adam lr 3e-3, batch 16, 25 epochs, Dice + BCE;
  predictions resized back to each photo's own size for scoring. Also reported: what the
  notebook's own val split (copies of its training photos, at 320x320) would have claimed.

Scores are pooled over the fold's photos (confusion counts added first) at each photo's
own size, threshold 0.5: IoU, F1, precision, recall, and the wall time per fold.

A full run is long (~100+ CPU minutes on 2 cores). Shorter runs, clearly labelled in the
output: ``--epochs-scale 0.4`` (6 StoneSeg / 10 notebook epochs), ``--only-folds 0,1``.

    python tests/benchmarks/bench_accuracy.py [--folds 5] [--only-folds 0,1]
        [--epochs-scale 1.0] [--methods stoneseg,notebook] [--set lr=0.001 ...]
        [--train-fraction 0.5]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import (
    NOTEBOOK_COPIES,
    NOTEBOOK_SIZE,
    add_common_args,
    add_notebook_args,
    data_dir,
    device,
    emit,
    iter_notebook_training,
    labelled_pairs,
    load_average,
    machine,
    notebook_copy,
    notebook_model,
    notebook_predict,
    r3,
    read_rgb,
    reading_of,
    setup,
)

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import read_mask
from stoneseg_core.model import scale as work_scale
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.network import build_model, read_model_info
from stoneseg_core.scoring.pixels import Confusion, confusion
from stoneseg_core.training.events import EpochSummary
from stoneseg_core.training.train import run_training

log = logging.getLogger("bench_accuracy")
ALSO_SCALE = ""  # --also-scale
ALSO_GRID = 0  # --also-grid: by stone size again, the estimate on this grid of windows
READING = True  # --no-reading skips the estimate towards the network's reading

NOTEBOOK_EPOCHS = 25


def make_folds(stems: list[str], k: int, seed: int) -> list[list[str]]:
    order = stems[:]
    random.Random(seed).shuffle(order)
    return [
        sorted(f.tolist(), key=stems.index)
        for f in np.array_split(np.array(order, dtype=object), k)
    ]


def scores(c: Confusion) -> dict:
    return {k: r3(v) for k, v in c.scores().to_dict().items()}


def add(counts: list[Confusion]) -> Confusion:
    total = Confusion()
    for c in counts:
        total = total + c
    return total


def all_stone_iou(pairs) -> float:
    """The IoU of calling every pixel stone (= the stone fraction): the floor to beat."""
    stone = total = 0
    for _, mask_path in pairs:
        mask = read_mask(mask_path)
        stone += int(np.count_nonzero(mask))
        total += mask.size
    return r3(stone / total)


# ------------------------------------------------------------------------------ StoneSeg


def towards_reading(seg: Segmenter, config: InferenceConfig, pairs, stems: set[str]):
    """``seg`` by stone size with its standard stone replaced by the network's reading of
    it on its training photos (``stems`` of ``pairs``); None when there is nothing to read."""
    read = reading_of(seg, [p for p in pairs if p[0].stem in stems])
    if read is None:
        return None
    info = dataclasses.replace(seg.info)
    info.scale = dataclasses.replace(seg.scale_policy, stone_px=read).to_json()
    return Segmenter(seg.model, info, config, seg.device)


def run_stoneseg(
    pairs,
    held_out: list[str],
    cfg: TrainConfig,
    out: Path,
    protocol: str,
    train_fraction: float = 1.0,
) -> dict:
    """Train on every photo but the held-out fold's, then score the held-out fold.

    protocol "user" (the honest default): the training validates on a split of its own
    training photos, exactly as the app and ``stoneseg train`` do; the saved model (its best
    epoch and its threshold, both chosen on that split) segments the held-out photos, which
    nothing saw. protocol "heldout-val": the held-out fold is the validation set; the LAST
    epoch at threshold 0.5 is honest, the best epoch (chosen on the fold itself) optimistic.
    """
    held = set(held_out)
    if protocol == "user":
        train_pairs = [p for p in pairs if p[0].stem not in held]
        if train_fraction < 1:  # a seeded share of the fold's photos (--train-fraction)
            keep = max(2, round(train_fraction * len(train_pairs)))
            train_pairs = random.Random(cfg.seed).sample(train_pairs, keep)
        run_cfg = cfg
    else:
        train_pairs = pairs
        run_cfg = cfg.replace(val_images=tuple(held_out), choose_threshold=False)
    last: list[EpochSummary] = []
    t = time.perf_counter()

    def on_event(e):
        if isinstance(e, EpochSummary):
            last.append(e)
            log.info(
                "  stoneseg epoch %d/%d: loss %.3f, val IoU %.3f (%.0f s)",
                e.epoch,
                e.epochs,
                e.train_loss,
                e.val.iou,
                e.seconds,
            )

    result = run_training(train_pairs, out, run_cfg, on_event=on_event)
    wall = time.perf_counter() - t
    row: dict = {
        "epochs": cfg.epochs,
        "protocol": protocol,
        "train_photos": len(train_pairs),
        "wall_s": r3(wall),
    }
    row["train_loop_s"] = r3(sum(e.seconds for e in last))
    if protocol == "user":
        # the model's own threshold, chosen on its validation split
        threshold = read_model_info(out).threshold
        seg = Segmenter.load(out, InferenceConfig(threshold=threshold, device=str(device())))
        seg_tta = Segmenter(seg.model, seg.info, seg.config.replace(tta=True), seg.device)
        # --also-scale: the same model at another inference scale (instead of the flips)
        seg_other = (
            Segmenter(seg.model, seg.info, seg.config.replace(scale=ALSO_SCALE), seg.device)
            if ALSO_SCALE
            else None
        )
        # and, by stone size, estimated towards the standard stone as the network reads it on
        # its training photos (_common.network_reading: measured, not the app's way)
        seg_read = (
            towards_reading(seg, seg_other.config, train_pairs, set(result.train_images))
            if seg_other is not None and ALSO_SCALE == "stone-size" and READING
            else None
        )
        counts, counts_05, counts_tta, per_image = [], [], [], {}
        counts_other, per_image_other = [], {}
        counts_read, per_image_read = [], {}
        counts_grid, per_image_grid = [], {}
        for img_path, mask_path in [p for p in pairs if p[0].stem in held]:
            image = read_rgb(img_path)
            truth = read_mask(mask_path, image.shape[:2])
            prob = seg.predict(image).probability
            c = confusion(prob >= seg.config.threshold, truth)
            counts.append(c)
            counts_05.append(confusion(prob >= 0.5, truth))
            if seg_other is not None:
                o = confusion(seg_other.predict(image).mask, truth)
                counts_other.append(o)
                per_image_other[img_path.stem] = r3(o.scores().iou)
                if ALSO_GRID and ALSO_SCALE == "stone-size":
                    kept = work_scale.ESTIMATE_GRID
                    work_scale.ESTIMATE_GRID = ALSO_GRID
                    try:
                        g = confusion(seg_other.predict(image).mask, truth)
                    finally:
                        work_scale.ESTIMATE_GRID = kept
                    counts_grid.append(g)
                    per_image_grid[img_path.stem] = r3(g.scores().iou)
                if seg_read is not None:
                    u = confusion(seg_read.predict(image).mask, truth)
                    counts_read.append(u)
                    per_image_read[img_path.stem] = r3(u.scores().iou)
            else:
                counts_tta.append(confusion(seg_tta.predict(image).mask, truth))
            per_image[img_path.stem] = r3(c.scores().iou)
        total = add(counts)
        row.update(
            {
                "val_images": list(result.val_images),
                "best_epoch": result.best_epoch,
                "threshold": seg.config.threshold,
                "held_out": scores(total),
                "held_out_at_0.5": scores(add(counts_05)),
                "held_out_tta": scores(add(counts_tta)) if counts_tta else None,
                "per_image_iou": per_image,
                **(
                    {
                        f"held_out_scale_{ALSO_SCALE}": scores(add(counts_other)),
                        f"per_image_iou_scale_{ALSO_SCALE}": per_image_other,
                    }
                    if seg_other is not None
                    else {}
                ),
                **(
                    {
                        "held_out_scale_stone-size_towards_reading": scores(add(counts_read)),
                        "per_image_iou_scale_stone-size_towards_reading": per_image_read,
                    }
                    if seg_read is not None
                    else {}
                ),
                **(
                    {
                        f"held_out_scale_stone-size_grid{ALSO_GRID}": scores(add(counts_grid)),
                        f"per_image_iou_scale_stone-size_grid{ALSO_GRID}": per_image_grid,
                    }
                    if counts_grid
                    else {}
                ),
                "_counts": total,
            }
        )
        return row
    final = last[-1]
    counts = add([r.counts for r in final.per_image])
    best = next(e for e in last if e.epoch == result.best_epoch)
    row.update(
        {
            "held_out": scores(counts),
            "held_out_best_epoch": {
                "epoch": best.epoch,
                **{k: r3(v) for k, v in best.val.to_dict().items()},
            },
            "per_image_iou": {r.image: r3(r.scores.iou) for r in final.per_image},
            "_counts": counts,
        }
    )
    return row


# ------------------------------------------------------------------------------ notebook


class _Arrays(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _tensor_pair(image: np.ndarray, mask: np.ndarray, weights: str):
    if weights == "lite0":
        # the notebook fed the network plain /255 inputs
        x = image.astype(np.float32) / 255.0
    else:
        x = (image.astype(np.float32) / 255.0 - np.array(NB_MEAN, np.float32)) / np.array(
            NB_STD, np.float32
        )
    return torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.from_numpy(
        (mask > 127).astype(np.float32)[None]
    )


NB_MEAN = (0.485, 0.456, 0.406)
NB_STD = (0.229, 0.224, 0.225)


def run_notebook(
    train_pairs, test_pairs, epochs: int, seed: int, bn_momentum: float | None, weights: str
) -> dict:
    """The notebook's way. ``weights`` "lite0": the U-Net on the same bundled ImageNet
    EfficientNet-Lite0 weights StoneSeg uses (what a user with ImageNet weights gets from
    the notebook); "none": its random-init efficientnet-b0."""
    t = time.perf_counter()
    copies = []
    for img_path, mask_path in train_pairs:
        image = cv2.resize(read_rgb(img_path), (NOTEBOOK_SIZE, NOTEBOOK_SIZE))
        mask = cv2.resize(read_mask(mask_path), (NOTEBOOK_SIZE, NOTEBOOK_SIZE))
        for kind in NOTEBOOK_COPIES:
            copies.append(
                _tensor_pair(notebook_copy(image, kind), notebook_copy(mask, kind), weights)
            )
    random.Random(seed).shuffle(copies)  # split AFTER augmentation, as the notebook did
    n_val = max(1, round(0.2 * len(copies)))
    val, train = copies[:n_val], copies[n_val:]
    torch.manual_seed(seed)
    if weights == "lite0":
        model = build_model("tu-tf_efficientnet_lite0", "imagenet", bn_momentum=bn_momentum)
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        model = notebook_model(bn_momentum)
        mean, std = NB_MEAN, NB_STD
    steps = list(iter_notebook_training(model, _Arrays(train), epochs=epochs, seed=seed))
    seen = steps[-1][0] if steps else 0
    train_s = time.perf_counter() - t
    model.eval()
    leaky = []
    with torch.no_grad():
        for x, y in val:
            p = torch.sigmoid(model(x[None].to(device())))[0, 0].cpu().numpy()
            leaky.append(confusion(p >= 0.5, y[0].numpy()))
    counts = []
    per_image = {}
    for img_path, mask_path in test_pairs:
        image = read_rgb(img_path)
        prob = notebook_predict(model, image, mean=mean, std=std)
        c = confusion(prob >= 0.5, read_mask(mask_path, image.shape[:2]))
        counts.append(c)
        per_image[img_path.stem] = r3(c.scores().iou)
    total = add(counts)
    return {
        "epochs": epochs,
        "weights": weights,
        "train_copies": len(train),
        "samples": seen,
        "held_out": scores(total),
        "own_leaky_val_split": scores(add(leaky)),
        "per_image_iou": per_image,
        "wall_s": r3(time.perf_counter() - t),
        "train_loop_s": r3(train_s),
        "_counts": total,
    }


# ---------------------------------------------------------------------------------- main


def parse_sets(items: list[str]) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set: TrainConfig has no field {key!r}")
        default = getattr(TrainConfig(), key)
        if isinstance(default, bool):
            out[key] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            out[key] = type(default)(value) if default is not None else value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(ap)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--only-folds", default="", help="comma-separated fold numbers to run (default: all)"
    )
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply both methods' epochs")
    ap.add_argument("--methods", default="stoneseg,notebook")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a StoneSeg TrainConfig field",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="StoneSeg trains on this share of each fold's photos (seeded; e.g. 0.5 with "
        "--set weights=stones: the installed stone model on half the photos)",
    )
    ap.add_argument(
        "--also-scale",
        default="",
        help="also score StoneSeg's models at this inference scale (e.g. stone-size), "
        "instead of with test-time flips",
    )
    ap.add_argument(
        "--also-grid",
        type=int,
        default=0,
        help="with --also-scale stone-size: score again with the estimate measuring on N x N "
        "windows instead of work_scale.ESTIMATE_GRID (same models)",
    )
    ap.add_argument(
        "--no-reading",
        action="store_true",
        help="with --also-scale stone-size: skip the estimate towards the network's reading",
    )
    ap.add_argument(
        "--protocol",
        choices=("user", "heldout-val"),
        default="user",
        help="user: validate on a split of the training photos, as the app does (default)",
    )
    ap.add_argument(
        "--notebook-weights",
        choices=("lite0", "none"),
        default="lite0",
        help="the notebook's encoder: bundled ImageNet lite0 (default) or random b0",
    )
    add_notebook_args(ap)
    args = ap.parse_args()
    setup(args)
    global ALSO_SCALE, ALSO_GRID, READING
    ALSO_SCALE, ALSO_GRID, READING = args.also_scale, args.also_grid, not args.no_reading
    load_before = load_average()
    root = data_dir(args.data)
    pairs = labelled_pairs(root)
    stems = [p.stem for p, _ in pairs]
    by_stem = dict(zip(stems, pairs))
    folds = make_folds(stems, args.folds, args.seed)
    run = [int(x) for x in args.only_folds.split(",") if x.strip()] or list(range(args.folds))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    overrides = parse_sets(args.set)
    base = TrainConfig(**{"seed": args.seed, "device": str(device()), **overrides})
    cfg = base.replace(epochs=max(1, round(base.epochs * args.epochs_scale)))
    nb_epochs = max(1, round(NOTEBOOK_EPOCHS * args.epochs_scale))
    full = args.epochs_scale == 1.0 and len(run) == args.folds
    result: dict = {
        "benchmark": "accuracy",
        "run": "full"
        if full
        else f"REDUCED: folds {run} of {args.folds}, epochs x{args.epochs_scale}",
        "machine": machine(),
        "folds": folds,
        "protocol": args.protocol,
        "stoneseg_config": {
            "encoder": cfg.encoder,
            "weights": cfg.weights,
            "lr": cfg.lr,
            "epochs": cfg.epochs,
            "train_fraction": args.train_fraction,
            **overrides,
        },
        "notebook_weights": args.notebook_weights,
        "notebook_epochs": nb_epochs,
        "per_fold": [],
    }
    log.info(
        "folds %s; running %s; StoneSeg %d epochs, notebook %d", folds, run, cfg.epochs, nb_epochs
    )
    totals: dict[str, list[Confusion]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(prefix="stoneseg-acc-") as tmp:
        for k in run:
            held = folds[k]
            train_pairs = [by_stem[s] for s in stems if s not in held]
            test_pairs = [by_stem[s] for s in held]
            row: dict = {"fold": k, "held_out": held, "all_stone_iou": all_stone_iou(test_pairs)}
            log.info("fold %d: held out %s", k, held)
            if "stoneseg" in methods:
                row["stoneseg"] = run_stoneseg(
                    pairs, held, cfg, Path(tmp) / f"fold{k}", args.protocol, args.train_fraction
                )
                log.info("fold %d stoneseg: %s", k, row["stoneseg"]["held_out"])
            if "notebook" in methods:
                row["notebook"] = run_notebook(
                    train_pairs,
                    test_pairs,
                    nb_epochs,
                    args.seed,
                    args.notebook_bn_momentum,
                    args.notebook_weights,
                )
                log.info(
                    "fold %d notebook: %s (own val %s)",
                    k,
                    row["notebook"]["held_out"],
                    row["notebook"]["own_leaky_val_split"],
                )
            for m in methods:
                totals[m].append(row[m].pop("_counts"))
            result["per_fold"].append(row)
    summary = {}
    for m in methods:
        rows = [r[m] for r in result["per_fold"]]
        summary[m] = {
            "mean_iou": r3(np.mean([r["held_out"]["iou"] for r in rows])),
            "mean_f1": r3(np.mean([r["held_out"]["f1"] for r in rows])),
            "mean_precision": r3(np.mean([r["held_out"]["precision"] for r in rows])),
            "mean_recall": r3(np.mean([r["held_out"]["recall"] for r in rows])),
            "pooled_over_folds": scores(add(totals[m])),
            "mean_wall_s_per_fold": r3(np.mean([r["wall_s"] for r in rows])),
        }
        if m == "notebook":
            summary[m]["mean_iou_own_leaky_val"] = r3(
                np.mean([r["own_leaky_val_split"]["iou"] for r in rows])
            )
        if m == "stoneseg" and args.protocol == "heldout-val":
            summary[m]["mean_iou_best_epoch_optimistic"] = r3(
                np.mean([r["held_out_best_epoch"]["iou"] for r in rows])
            )
        if m == "stoneseg" and args.protocol == "user":
            summary[m]["mean_iou_at_0.5"] = r3(np.mean([r["held_out_at_0.5"]["iou"] for r in rows]))
            if ALSO_SCALE:
                key = f"held_out_scale_{ALSO_SCALE}"
                summary[m][f"mean_iou_scale_{ALSO_SCALE}"] = r3(
                    np.mean([r[key]["iou"] for r in rows])
                )
                for extra in ("towards_reading", f"grid{ALSO_GRID}"):
                    key = f"held_out_scale_stone-size_{extra}"
                    if all(key in r for r in rows):
                        summary[m][f"mean_iou_scale_stone-size_{extra}"] = r3(
                            np.mean([r[key]["iou"] for r in rows])
                        )
            else:
                summary[m]["mean_iou_tta"] = r3(np.mean([r["held_out_tta"]["iou"] for r in rows]))
        if m == "stoneseg":
            per_epoch = np.mean([r["wall_s"] / r["epochs"] for r in rows])
            summary[m]["default_training_minutes"] = r3(per_epoch * TrainConfig().epochs / 60)
            summary[m]["default_training_minutes_is"] = (
                "measured (mean fold wall)"
                if cfg.epochs == TrainConfig().epochs
                else "extrapolated from wall per epoch"
            )
    summary["all_stone_baseline"] = {
        "mean_iou": r3(np.mean([r["all_stone_iou"] for r in result["per_fold"]]))
    }
    result["summary"] = summary
    targets = {}
    if "stoneseg" in summary and "notebook" in summary:
        targets["stoneseg_mean_iou_above_notebook"] = (
            summary["stoneseg"]["mean_iou"] > summary["notebook"]["mean_iou"]
        )
    if "stoneseg" in summary:
        targets["default_training_within_10_min"] = (
            summary["stoneseg"]["default_training_minutes"] <= 10
        )
    result["targets"] = targets
    result["load_average_before_after"] = [load_before, load_average()]
    emit(result)


if __name__ == "__main__":
    main()
