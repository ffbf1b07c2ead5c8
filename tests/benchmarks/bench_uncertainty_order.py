"""What to label next: does labelling the photos the model is least sure of first reach a given
pixel IoU and stone F1 with fewer photos than labelling them in random order?

conveyor-train's tiles with per-stone truth are split once: every third tile with stones is
the **scorer** (never labelled, never ranked), the rest (with the empty belt; ``--pool
stony``: without it) the **pool**.
For each seed, ``--start`` pool tiles drawn at random are "labelled" and a model is trained on
them; then ``--rounds`` times ``--add`` more tiles are labelled, chosen

- ``random``: at random from the rest of the pool (the seed's own draw);
- ``uncertainty``: the pool tiles the last model was least sure of, by the app's score
  (``Segmenter.measure_uncertainty``, ``inference.uncertainty``: the same code as the window),
- ``mass`` (``--orders``): the pool tiles with the most unsure pixels for their size (unsure
  pixels over the whole tile, the same map: how much there is to learn on it, not how wrong
  its stone is),
- ``diverse`` (``--orders``): the window's order since session 16 (``inference.label_order``):
  the app's score spread over the kinds of tile (k-means of each tile's look; the least
  covered kind gives the tile the model is least sure of), against the looks of the tiles
  labelled; the window measures the look on the 96-px thumbnail, this on the tile itself,

and a model is trained afresh on the labelled tiles (same seed, same tiny budget). Each model is
scored on the scorer tiles as the app would split them (``bench_stones``: pixel IoU pooled,
stone F1 at IoU 0.5 with the seams split of the boundary model). The orders share the
first model. Printed: each curve (labelled tiles -> IoU, F1) per seed, the mean curves, the
area under each (trapezoids over the labelled counts, divided by their span: a mean score),
and for each order the labelled tiles it needed to reach the random order's last IoU and F1.

    nice -n 10 python tests/benchmarks/bench_uncertainty_order.py [--seeds 0,1,2] \
        [--start 4 --add 4 --rounds 3] [--epochs 3 --work-size 192 --crop 128]

Prints one JSON line last. Not part of the test run (it trains 1 + 2 x rounds models a seed:
minutes on a CPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, emit, machine, r3, setup
from bench_stones import SETS, Tally, split_way, triples

from stoneseg_core.inference.label_order import appearance, useful_order
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import read_image, read_instance_labels, read_mask
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.scale import speck_floor
from stoneseg_core.training.train import run_training

ORDERS = ("random", "uncertainty", "mass", "diverse")


def split_scorer(items: list, pool_of: str = "all") -> tuple[list, list]:
    """(scorer, pool): every third tile with stones scores; the rest is the pool (``pool_of``
    "stony": without the tiles of empty belt)."""
    stony = [t for t in items if read_mask(t[1]).any()]
    scorer = stony[::3]
    pool = [t for t in (stony if pool_of == "stony" else items) if t not in scorer]
    return scorer, pool


def train(labelled: list, out: Path, args) -> Segmenter:
    cfg = TrainConfig(
        epochs=args.epochs,
        seed=args.seed_train,
        work_size=args.work_size,
        crop=args.crop,
        samples_per_image=args.samples,
        batch_size=args.batch_size,
        weights="imagenet",
        device=args.device,
    )
    run_training([tuple(t) for t in labelled], out, cfg)
    seg = Segmenter.load(out, InferenceConfig(device=args.device, runtime="torch"))
    seg.measure_uncertainty = True
    return seg


def evaluate(seg: Segmenter, scorer: list[tuple]) -> dict:
    """Pixel IoU (pooled) and stone F1 of ``seg`` on the scorer tiles (image, inst)."""
    tally = Tally()
    for image, inst in scorer:
        pred = seg.predict(image)
        floor = speck_floor(seg.info.scale_policy, pred.scale)
        way = "seams" if seg.info.classes > 1 else "floor"
        tally.add(split_way(way, pred, floor, seg.config.threshold), inst, None)
    result = tally.result()
    return {"iou": result["pixel_iou"], "f1": result["f1"]}


def most_unsure(seg: Segmenter, candidates: list, images: dict, n: int, by: str) -> list:
    """The ``n`` candidates ``seg`` is least sure of: by the app's score (``by``
    "uncertainty") or by unsure pixels over the whole tile ("mass")."""
    scored = []
    for item in candidates:
        unc = seg.predict(images[item[0]]).uncertainty
        if unc is None:
            value = 0.0
        elif by == "mass":
            value = unc.score.unsure_px / max(unc.score.area_px, 1)
        else:
            value = unc.score.score
        scored.append((-value, item[0].name, item))
    scored.sort(key=lambda s: (s[0], s[1]))
    return [s[2] for s in scored[:n]]


def most_useful(seg: Segmenter, candidates: list, labelled: list, images: dict, n: int) -> list:
    """The ``n`` candidates first in the window's order (``inference.label_order``): the
    app's uncertainty score times how unlike the labelled tiles (and those picked before)
    each tile looks."""
    looks = {item[0]: appearance(images[item[0]]) for item in [*candidates, *labelled]}
    rows = []
    for item in candidates:
        unc = seg.predict(images[item[0]]).uncertainty
        rows.append((item[0], unc.score.score if unc is not None else 0.0, looks[item[0]]))
    picked = useful_order(rows, [looks[t[0]] for t in labelled], n)
    by_path = {item[0]: item for item in candidates}
    return [by_path[p] for p in picked]


def run_seed(seed: int, pool: list, scorer: list, images: dict, keep: Path, args) -> dict:
    rng = np.random.default_rng(seed)
    order = [pool[i] for i in rng.permutation(len(pool))]
    start = order[: args.start]
    seg = train(start, keep / f"s{seed}-start", args)
    empty = sum(1 for t in start if not read_mask(t[1]).any())
    first = {"tiles": len(start), "empty": empty, **evaluate(seg, scorer)}
    curves = {}
    for name in args.orders:
        labelled, model, curve = list(start), seg, [first]
        for r in range(args.rounds):
            rest = [t for t in order if t not in labelled]
            if name == "random":
                labelled += rest[: args.add]
            elif name == "diverse":
                labelled += most_useful(model, rest, labelled, images, args.add)
            else:
                labelled += most_unsure(model, rest, images, args.add, name)
            model = train(labelled, keep / f"s{seed}-{name}-r{r + 1}", args)
            empty = sum(1 for t in labelled if not read_mask(t[1]).any())
            curve.append({"tiles": len(labelled), "empty": empty, **evaluate(model, scorer)})
            print(f"seed {seed} {name} round {r + 1}: {curve[-1]}", flush=True)
        curves[name] = curve
    return curves


def area(curve: list[dict], key: str) -> float:
    """Area under ``key`` over the labelled tiles, divided by their span (a mean score)."""
    x = np.array([p["tiles"] for p in curve], float)
    y = np.array([p[key] or 0.0 for p in curve], float)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def tiles_to_reach(curve: list[dict], key: str, target: float) -> int | None:
    for p in curve:
        if (p[key] or 0.0) >= target - 1e-9:
            return p["tiles"]
    return None


def summarise(per_seed: dict[int, dict], orders: tuple[str, ...]) -> dict:
    mean = {}
    for name in orders:
        points = list(zip(*(per_seed[s][name] for s in per_seed)))
        mean[name] = [
            {
                "tiles": pts[0]["tiles"],
                "iou": r3(np.mean([p["iou"] or 0 for p in pts])),
                "f1": r3(np.mean([p["f1"] or 0 for p in pts])),
            }
            for pts in points
        ]
    out = {"mean_curves": mean, "area": {}, "tiles_to_reach_random_final": {}}
    out["empty_tiles_labelled_last"] = {
        n: [per_seed[s][n][-1].get("empty") for s in per_seed] for n in orders
    }
    for key in ("iou", "f1"):
        target = mean["random"][-1][key]
        out["area"][key] = {n: r3(area(mean[n], key)) for n in orders}
        out["area"][f"{key}_per_seed"] = {
            n: [r3(area(per_seed[s][n], key)) for s in per_seed] for n in orders
        }
        out["tiles_to_reach_random_final"][key] = {
            n: tiles_to_reach(mean[n], key, target) for n in orders
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", type=int, default=4, help="tiles labelled at first")
    ap.add_argument("--add", type=int, default=4, help="tiles labelled each round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--work-size", type=int, default=192)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--samples", type=int, default=8, help="crops a tile an epoch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed-train", type=int, default=0, help="the training seed (all models)")
    ap.add_argument("--pool", choices=("all", "stony"), default="all", help="stony: no empty belt")
    ap.add_argument("--orders", default="random,uncertainty", help=f"of {', '.join(ORDERS)}")
    ap.add_argument("--keep", default=None, help="folder for the models (default: a temp one)")
    add_common_args(ap)
    args = ap.parse_args()
    args.orders = tuple(o.strip() for o in args.orders.split(",") if o.strip())
    if "random" not in args.orders or not set(args.orders) <= set(ORDERS):
        ap.error(f"--orders: random and any of {', '.join(ORDERS)}")
    setup(args)
    t0 = time.perf_counter()
    scorer_items, pool = split_scorer(triples(SETS["conveyor"]), args.pool)
    scorer = [(read_image(t[0]), read_instance_labels(t[2])) for t in scorer_items]
    images = {t[0]: read_image(t[0]) for t in pool}
    keep = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-order-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed = {s: run_seed(s, pool, scorer, images, keep, args) for s in seeds}
    emit(
        {
            "benchmark": "uncertainty-order",
            "set": "conveyor",
            "scorer_tiles": len(scorer),
            "pool_tiles": len(pool),
            "pool": args.pool,
            "start": args.start,
            "add": args.add,
            "rounds": args.rounds,
            "budget": {
                "epochs": args.epochs,
                "work_size": args.work_size,
                "crop": args.crop,
                "samples_per_image": args.samples,
                "batch_size": args.batch_size,
            },
            "seeds": seeds,
            "orders": list(args.orders),
            **summarise(per_seed, args.orders),
            "per_seed": {str(s): c for s, c in per_seed.items()},
            "seconds": round(time.perf_counter() - t0),
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
