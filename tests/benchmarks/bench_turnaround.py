"""The loop's turn-around (#25): two more photos corrected, Train, and the next photo predicted.

What the window does when a geologist has corrected two more photos and presses Train: the
project's labelled photos (``Project.training_pairs`` and ``run_training``, as the window's
``iter_project_training``; validation photos of its own) fine-tune the active model, the new
model is compared with it on validation photos neither trained on, and then the next photo
is predicted (``Segmenter.load`` as the window loads a model: ONNX Runtime on the CPU). The
turn-around is the wall time from Train to that prediction, made with the new model, its
ONNX export included (the longer case: the window keeps the new model only if it is not
worse on validation, and the active model's export is already there); the target is <= 60 s
on the 2-core CPU with no loss of held-out pixel IoU against today's fine-tuning (15 epochs).

Protocol (conveyor-train, CC BY 4.0):

- held out: ``bench_stones``' conveyor fold 0 (37 tiles with stones; the installed stone
  model never saw them), scored by pooled pixel IoU and stone F1 (IoU >= 0.5, the seams split);
- the project: ``--first`` tiles of the rest (every other one with stones, empty belt in the
  set's proportion) labelled; the active model is the installed stone model fine-tuned on
  them with the app's defaults (the window's first Train, not timed); then ``--more``
  tiles are added (the two corrected photos) and one unlabelled tile is the next photo;
- for each ``--epochs`` entry (15: today's fine-tuning) the same Train from the same active
  model, timed from start to the next photo's prediction, the held-out scores of the model the
  window would keep (the new one if not worse on validation, else the active one) and of the
  new one.

    .venv/bin/python tests/benchmarks/bench_turnaround.py [--epochs 15,5,3] [--threads 2]

Prints one JSON line at the end. Not part of the test run (minutes of training).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, emit, load_average, machine, r3, setup
from bench_stones import SETS, Tally, folds_of, triples

from stoneseg_core.grains import split_stones
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import read_image, read_instance_labels, read_mask
from stoneseg_core.io.project import Project
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.stone_model import installed_stone_model
from stoneseg_core.training.train import run_training

log = logging.getLogger("bench_turnaround")


def copy_labelled(items, folder: Path, labelled: bool = True) -> None:
    for img, mask, inst in items:
        shutil.copy2(img, folder / "images" / img.name)
        if labelled:
            shutil.copy2(mask, folder / "masks" / f"{img.stem}.png")
            shutil.copy2(inst, folder / "instances" / f"{img.stem}.png")


def held_out_scores(model: Path, test) -> dict:
    """Pooled pixel IoU and stone F1 (seams split with the speck floor) on the held-out tiles."""
    seg = Segmenter.load(model, InferenceConfig())
    tally = Tally()
    for img, _mask, inst in test:
        pred = seg.predict(read_image(img))
        labels = split_stones(
            pred.mask > 0,
            pred.probability,
            boundary=pred.boundary,
            min_stone_px=pred.min_stone_px,
        )
        tally.add(labels, read_instance_labels(inst), None)
    d = tally.result()
    return {k: d[k] for k in ("pixel_iou", "f1", "precision", "recall", "found", "true")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", default="15,5,3", help="fine-tuning epochs to compare")
    ap.add_argument("--first", type=int, default=8, help="tiles labelled before")
    ap.add_argument("--more", type=int, default=2, help="tiles corrected since")
    ap.add_argument("--active-epochs", type=int, default=15, help="the first Train's epochs")
    ap.add_argument("--seed", type=int, default=0)
    add_common_args(ap)
    args = ap.parse_args()
    setup(args)
    stone_model = installed_stone_model()
    if stone_model is None:
        raise SystemExit("no installed stone model (resources/models/stones-lite2)")
    items = triples(SETS["conveyor"])
    train, test = folds_of("conveyor", items, 3, 20)[0]
    pool = [t for t in items if t not in test]
    stony = [t for t in pool if read_mask(t[1]).any()]
    empty = [t for t in pool if t not in stony]
    n_empty = round((args.first + args.more) * len(empty) / len(items))
    chosen = stony[::2][: args.first + args.more - n_empty] + empty[:n_empty]
    rng = np.random.default_rng(args.seed)
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    first, more = chosen[: args.first], chosen[args.first :]
    next_photo = next(t for t in stony[1::2] if t not in chosen)
    work = Path(tempfile.mkdtemp(prefix="bench-turnaround-"))
    project_dir = work / "project"
    for sub in ("images", "masks", "instances"):
        (project_dir / sub).mkdir(parents=True)
    copy_labelled(first, project_dir)
    copy_labelled([next_photo], project_dir, labelled=False)
    t0 = time.perf_counter()
    active = run_training(
        list(first),
        work / "active",
        TrainConfig(epochs=args.active_epochs, seed=args.seed),
        from_model=stone_model,
    ).model_dir
    log.info("active model: %d tiles, %.0f s", len(first), time.perf_counter() - t0)
    copy_labelled(more, project_dir)
    rows = {"active": {"held_out": held_out_scores(active, test)}}
    log.info("active %s", rows["active"])
    next_image = project_dir / "images" / next_photo[0].name
    for epochs in [int(e) for e in args.epochs.split(",")]:
        project = Project.open(project_dir)
        out = project.models_dir / f"run-{epochs}"
        load_before = load_average()
        t0 = time.perf_counter()
        # what iter_project_training does for the window: the project's pairs, then the run
        # (compared with the model it fine-tunes)
        pairs, _notes = project.training_pairs()
        result = run_training(pairs, out, TrainConfig(epochs=epochs, seed=args.seed), active)
        t_train = time.perf_counter() - t0
        kept_new = result.comparison is None or result.comparison.new_is_not_worse
        # the next photo predicted with the new model (its ONNX export included), whichever
        # the window keeps: the turn-around when the new model is kept, the longer one
        t1 = time.perf_counter()
        Segmenter.load(result.model_dir, InferenceConfig()).predict(read_image(next_image))
        t_predict = time.perf_counter() - t1
        rows[f"epochs_{epochs}"] = {
            "train_s": r3(t_train),
            "predict_s": r3(t_predict),
            "turnaround_s": r3(t_train + t_predict),
            "kept": "new" if kept_new else "active",
            "validation_iou_new": r3(result.comparison.new.iou) if result.comparison else None,
            "validation_iou_active": (
                r3(result.comparison.other_scores.iou) if result.comparison else None
            ),
            "held_out_new": held_out_scores(result.model_dir, test),
            "load_before_after": [load_before, load_average()],
        }
        log.info("epochs %d: %s", epochs, rows[f"epochs_{epochs}"])
    emit(
        {
            "benchmark": "turnaround",
            "project_tiles": len(chosen),
            "first": args.first,
            "more": args.more,
            "held_out_tiles": len(test),
            "rows": rows,
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
