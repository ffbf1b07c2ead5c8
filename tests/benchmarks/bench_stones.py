"""Stones, not pixels: stone-level F1 and the grain-size curve's error on photos a model never saw.

Real photos with per-stone truth (``instances/``), models trained as the app trains them:

- ``gravel``: gravel-fh-train, leave one tile out (6 folds; 0.39 mm/px);
- ``conveyor``: conveyor-train, ``--folds`` folds over the tiles that hold stones (each fold's
  test tiles every K-th tile; ``--train-tiles`` of the rest, empty belt included in proportion).

For every fold and every ``--targets`` entry one model is trained (same seed, data and budget),
and its prediction of each held-out tile is split into stones by every way that applies to it:

- ``today``: the mask split on the distance transform x probability, no speck floor (what
  ``stoneseg grains`` did before this benchmark);
- ``floor``: the same, with the model's smallest stone (``grains.speck_floor``);
- for a model with a boundary channel: ``seams`` (distance x probability x (1 - boundary)) and
  ``cores`` (seeds from the predicted interiors, grown inside the mask), each with the floor;
  a ``mask+distance`` model (each stone's distance to its edge over its largest) is split the
  same ways, its edge map being 1 - distance (``Segmenter.predict``).

Reference: ``truth_mask``, the true binary mask split by today's way (what a perfect pixel
model would get). Printed per fold and pooled over folds: pixel IoU, stones found / true,
stone F1 at IoU 0.5 and averaged over IoU 0.50:0.05:0.95, D16/D50/D84 errors in psi (predicted
minus true; by count, and D50 by area).

    python tests/benchmarks/bench_stones.py --set gravel --targets mask,mask+boundary \
        [--epochs 15] [--folds 0,1] [--keep DIR] [--reuse]

``--targets`` may also name ``from-stones`` (the app's training started from ``--stone-model``
instead of ImageNet) and ``stones-as-is`` (``--stone-model`` itself, not trained on the fold:
score it only on tiles it never saw, e.g. fold 0 for the installed model).

``--segment-speed PHOTOS`` times ``stoneseg segment``'s loop over a folder of photos with the
first fold's models instead (kept in ``--keep``): the mask model as before this work (no speck
step) against the boundary model with its speck floor, interleaved, ONNX Runtime, ``--reps``.

Prints one JSON line last. Not part of the test run (it trains models: minutes each on a CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_common_args, emit, machine, r3, setup

from stoneseg_core.grains import split_stones
from stoneseg_core.grains.instances import (
    InstanceEvaluation,
    compare_stones,
    pool_instance_evaluations,
    stone_curve_errors,
)
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import list_images, read_image, read_instance_labels, read_mask
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.scale import speck_floor
from stoneseg_core.training.train import run_training

log = logging.getLogger("bench_stones")
SHARED = REPO.parent / "shared" / "data"
SETS = {"gravel": SHARED / "gravel-fh-train", "conveyor": SHARED / "conveyor-train"}


def triples(root: Path) -> list[tuple[Path, Path, Path]]:
    out = []
    for img in list_images(root / "images"):
        mask, inst = root / "masks" / f"{img.stem}.png", root / "instances" / f"{img.stem}.png"
        if mask.is_file() and inst.is_file():
            out.append((img, mask, inst))
    return out


def folds_of(name: str, items: list, n_folds: int, train_tiles: int) -> list[tuple[list, list]]:
    """(train, test) lists per fold."""
    if name == "gravel":
        return [([t for j, t in enumerate(items) if j != i], [items[i]]) for i in range(len(items))]
    stony = [t for t in items if read_mask(t[1]).any()]
    empty = [t for t in items if t not in stony]
    out = []
    for k in range(n_folds):
        test = stony[k::n_folds]
        rest = [t for t in stony if t not in test]
        # the empty belt in the proportion the set has it
        n_empty = round(train_tiles * len(empty) / len(items))
        n_stony = train_tiles - n_empty
        step = max(1, len(rest) // max(1, n_stony))
        train = rest[::step][:n_stony] + empty[k :: max(1, len(empty) // max(1, n_empty))][:n_empty]
        out.append((train, test))
    return out


def fold_model(args, keep: Path, f: int, target: str, train: list, changes: dict):
    """(model folder, seconds) of one fold and one ``--targets`` entry: ``mask``,
    ``mask+boundary`` or ``mask+distance`` trained from ImageNet as the app does; ``from-stones``: the same
    training started from ``--stone-model``; ``stones-as-is``: ``--stone-model`` untouched."""
    if target == "stones-as-is":
        return Path(args.stone_model), 0.0
    out = keep / f"{args.set}-f{f}-{target}"
    from_model = args.stone_model if target == "from-stones" else None
    cfg = TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        target="mask+boundary" if from_model else target,
        device=args.device,
        **changes,
    )
    t0 = time.perf_counter()
    if not (args.reuse and (out / "config.json").is_file()):
        run_training([tuple(t) for t in train], out, cfg, from_model=from_model)
    return out, time.perf_counter() - t0


def ways_for(seg: Segmenter) -> list[str]:
    ways = ["today", "floor"]
    if seg.info.classes > 1:
        ways += ["seams", "cores"]
    return ways


def split_way(way: str, pred, floor_px: float, threshold: float) -> np.ndarray:
    mask = pred.mask > 0  # without specks under the floor (Segmenter.predict)
    if way == "today":  # the mask as it was before the floor: every piece of it
        return split_stones(pred.probability >= threshold, pred.probability)
    if way == "floor":
        return split_stones(mask, pred.probability, min_stone_px=floor_px)
    return split_stones(
        mask, pred.probability, boundary=pred.boundary, boundary_split=way, min_stone_px=floor_px
    )


class Tally:
    """Stones gathered over photos for one way: pooled scores and curve errors."""

    def __init__(self) -> None:
        self.evaluations: list[InstanceEvaluation] = []
        self.inter = self.union = 0

    def add(self, labels: np.ndarray, truth: np.ndarray, mm: float | None) -> None:
        self.evaluations.append(compare_stones(labels, truth, mm))
        self.inter += int(np.count_nonzero((labels > 0) & (truth > 0)))
        self.union += int(np.count_nonzero((labels > 0) | (truth > 0)))

    def extend(self, other: Tally) -> None:
        self.evaluations += other.evaluations
        self.inter += other.inter
        self.union += other.union

    def result(self) -> dict:
        d = pool_instance_evaluations(self.evaluations)
        keys = ("precision", "recall", "f1", "f1_50_95", *stone_curve_errors([], [], [], []))
        return {
            "pixel_iou": r3(self.inter / self.union) if self.union else None,
            "found": d["n_pred"],
            "true": d["n_true"],
            **{k: (None if d.get(k) is None else r3(d[k])) for k in keys},
        }


def segment_speed(keep: Path, set_name: str, photos: Path, reps: int) -> dict:
    """Seconds to segment ``photos`` (iter_segment_folder, as ``stoneseg segment``): today's
    way (the mask model, no speck step) against the default (boundary model, speck floor)."""
    from _common import interleaved, load_average, median, paired_ratio

    from stoneseg_core.jobs.segment_folder import iter_segment_folder

    today = Segmenter.load(keep / f"{set_name}-f0-mask", InferenceConfig(runtime="onnx"))
    today.floor_specks = False  # as before: every piece of the mask kept
    new = Segmenter.load(keep / f"{set_name}-f0-mask+boundary", InferenceConfig(runtime="onnx"))
    out = Path(tempfile.mkdtemp(prefix="bench-stones-seg-"))

    def run(seg: Segmenter) -> None:
        for _ in iter_segment_folder(seg, photos, out, overwrite=True):
            pass

    load_before = load_average()
    times = interleaved({"today": lambda: run(today), "default": lambda: run(new)}, reps)
    return {
        "photos": str(photos),
        "today_s": r3(median(times["today"])),
        "default_s": r3(median(times["default"])),
        "slowdown": r3(1.0 / paired_ratio(times["today"], times["default"])),
        "reps": reps,
        "load_average_before_after": [load_before, load_average()],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=sorted(SETS), default="gravel")
    ap.add_argument("--targets", default="mask,mask+boundary")
    ap.add_argument("--folds", default="all", help="fold numbers (comma-separated) or all")
    ap.add_argument("--n-folds", type=int, default=3, help="conveyor: number of folds")
    ap.add_argument("--train-tiles", type=int, default=40, help="conveyor: training tiles a fold")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument(
        "--encoder", default=None, help="e.g. tu-tf_efficientnet_lite2 (the lite extra)"
    )
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--work-size", type=int, default=None)
    ap.add_argument("--boundary-px", type=int, default=None)
    ap.add_argument("--small-stone-weight", type=float, default=None, help="1: off")
    ap.add_argument("--samples-per-image", type=int, default=None)
    ap.add_argument("--min-batches-per-epoch", type=int, default=None, help="0: as before")
    ap.add_argument(
        "--select-epoch-by", default=None, choices=["iou", "stones"], help="the epoch kept"
    )
    ap.add_argument("--scale", default="auto", help="inference scale (see InferenceConfig)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--stone-model",
        default=None,
        help="a stone model for the targets from-stones (fine-tuned) and stones-as-is",
    )
    ap.add_argument("--keep", default=None, help="folder to keep the models in")
    ap.add_argument("--reuse", action="store_true", help="load models already in --keep")
    ap.add_argument("--segment-speed", default=None, metavar="PHOTOS")
    ap.add_argument("--reps", type=int, default=3)
    add_common_args(ap)
    args = ap.parse_args()
    setup(args)
    if args.segment_speed:
        keep = Path(args.keep or ".")
        emit(
            {
                "benchmark": "stones-segment-speed",
                **segment_speed(keep, args.set, Path(args.segment_speed), args.reps),
                "machine": machine(),
            }
        )
        return 0
    root = SETS[args.set]
    mm = 0.39 if args.set == "gravel" else None
    items = triples(root)
    folds = folds_of(args.set, items, args.n_folds, args.train_tiles)
    chosen = range(len(folds)) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    keep = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-stones-"))
    targets = args.targets.split(",")
    changes = {
        k: v
        for k, v in {
            "encoder": args.encoder,
            "lr": args.lr,
            "work_size": args.work_size,
            "boundary_px": args.boundary_px,
            "small_stone_weight": args.small_stone_weight,
            "samples_per_image": args.samples_per_image,
            "min_batches_per_epoch": args.min_batches_per_epoch,
            "select_epoch_by": args.select_epoch_by,
        }.items()
        if v is not None
    }
    tallies: dict[str, Tally] = {}
    per_fold = []
    t_start = time.perf_counter()
    for f in chosen:
        train, test = folds[f]
        fold_tallies: dict[str, Tally] = {}
        truths = [(read_image(t[0]), read_mask(t[1]), read_instance_labels(t[2])) for t in test]
        ref = fold_tallies.setdefault("truth_mask", Tally())
        for _img, mask, inst in truths:
            ref.add(split_stones(mask > 0), inst, mm)
        for target in targets:
            out, train_s = fold_model(args, keep, f, target, train, changes)
            seg = Segmenter.load(out, InferenceConfig(scale=args.scale, device=args.device))
            for img, _mask, inst in truths:
                pred = seg.predict(img)
                floor = speck_floor(seg.info.scale_policy, pred.scale)
                # today's way: the network's map without the floor (Segmenter drops the
                # pieces under it from the map it returns)
                seg.floor_specks = False
                raw = seg.predict(img)
                seg.floor_specks = True
                for way in ways_for(seg):
                    labels = split_way(
                        way, raw if way == "today" else pred, floor, seg.config.threshold
                    )
                    fold_tallies.setdefault(f"{target}:{way}", Tally()).add(labels, inst, mm)
            log.info("fold %d %s trained in %.0f s", f, target, train_s)
        row = {"fold": f, "train": len(train), "test": len(test)}
        for key, tally in fold_tallies.items():
            row[key] = tally.result()
            tallies.setdefault(key, Tally()).extend(tally)
        per_fold.append(row)
        print(json.dumps(row), flush=True)
    pooled = {k: t.result() for k, t in tallies.items()}
    for k, v in pooled.items():
        log.info("%-22s %s", k, v)
    emit(
        {
            "benchmark": "stones",
            "set": args.set,
            "targets": targets,
            "epochs": args.epochs,
            "changes": changes,
            "scale": args.scale,
            "folds": list(chosen),
            "pooled": pooled,
            "per_fold": per_fold,
            "seconds": round(time.perf_counter() - t_start),
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
