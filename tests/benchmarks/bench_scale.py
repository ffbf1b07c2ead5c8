"""Scale invariance: the same stones in a bigger photo (issue 13).

The conveyor sample's 250 x 250 tiles (rock fragments on a belt, CC BY 4.0) are split into
folds of held-out tiles. For each fold and each scale policy a model trains (app defaults)
on the other tiles; the held-out tiles are then segmented three ways:

- 1x: each tile alone;
- 2x: the fold's tiles as one 2 x 2 mosaic (500 x 500);
- 4x: that mosaic tiled 2 x 2 again (1000 x 1000: every tile four times).

The stones are the same pixels in all three, so a scale-free method scores the same:
pooled IoU, stone-level F1 (stones split with grains.split_stones on the truth and on the
prediction, a match is IoU > 0.5) and D50 of the b-axis by area (px) as psi difference
|log2 D50(kx) - log2 D50(1x)|. Targets: IoU(4x) >= 0.95 IoU(1x), likewise F1, D50 within
0.05 psi. Against that, the noise floor: how far D50 of the same 1x tiles moves when each
is flipped, turned half round or cropped by 8 px (``d50_noise_psi``; the stones do not
change, only what the network makes of them).

    python tests/benchmarks/bench_scale.py [--policies long-side,stone-size] [--folds 3]
        [--epochs 15] [--data DIR] [--infer-scale stone-size] [--sweep]

``--sweep`` also segments the 1x tiles at fixed factors around the training scale (the
estimate's 9 % grid, +-half an octave) and reports how far D50 moves per grid step.

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, labelled_pairs, read_rgb, reading_of, setup

from stoneseg_core.grains.distribution import percentiles
from stoneseg_core.grains.measure import measure_stones
from stoneseg_core.grains.split import split_stones
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import read_mask
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.scoring.pixels import confusion, pooled
from stoneseg_core.training.dataset import mask_to_work_scale, typical_stone_px, with_stone_px
from stoneseg_core.training.train import run_training

log = logging.getLogger("bench_scale")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "conveyor-sample"


def mosaic(parts: list[np.ndarray]) -> np.ndarray:
    """Four equally sized arrays as a 2 x 2 mosaic."""
    return np.concatenate(
        [np.concatenate(parts[:2], axis=1), np.concatenate(parts[2:4], axis=1)], axis=0
    )


MIN_STONE_AREA = 30  # px at the photo's own size: smaller pieces are specks, not stones


def stones(mask: np.ndarray) -> np.ndarray:
    """The mask split into stones (grains.split_stones), specks dropped, labels 1..N."""
    labels = split_stones(mask)
    area = np.bincount(labels.ravel())
    keep = area >= MIN_STONE_AREA
    keep[0] = False
    ids = np.zeros(len(area), np.int32)
    ids[keep] = np.arange(1, int(keep.sum()) + 1)
    return ids[labels]


def stone_matches(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(true positives, true stones, predicted stones) at instance IoU > 0.5."""
    t = stones(truth)
    p = stones(pred)
    nt, np_ = int(t.max()), int(p.max())
    if nt == 0 or np_ == 0:
        return 0, nt, np_
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(t[both].astype(np.int64) * (np_ + 1) + p[both], return_counts=True)
    ti, pi = pairs // (np_ + 1), pairs % (np_ + 1)
    at = np.bincount(t.ravel(), minlength=nt + 1)
    ap = np.bincount(p.ravel(), minlength=np_ + 1)
    iou = inter / (at[ti] + ap[pi] - inter)
    # IoU > 0.5 pairs are unique on both sides: no assignment problem
    return int(np.count_nonzero(iou > 0.5)), nt, np_


def b_axes(mask: np.ndarray) -> list[tuple[float, float]]:
    """(b-axis, area) of each stone, in pixels."""
    return [(s.b_axis_px, s.area_px) for s in measure_stones(stones(mask))]


def score(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Pooled IoU, stone F1 and D50 (px) over (truth, prediction) pairs."""
    counts = [confusion(p > 127, t > 127) for t, p in pairs]
    tp = nt = np_ = 0
    sizes: list[tuple[float, float]] = []
    for t, p in pairs:
        a, b, c = stone_matches(t, p)
        tp, nt, np_ = tp + a, nt + b, np_ + c
        sizes += b_axes(p)
    f1 = 2 * tp / (nt + np_) if nt + np_ else 0.0
    b = [x for x, _ in sizes]
    # by area (each stone counts by its area, as a sieve weighs): a count is dominated by
    # the specks and fragments a weak model leaves, by area by the stones themselves
    d50 = percentiles(b, "area", [a for _, a in sizes])[50] if sizes else None
    d50_count = percentiles(b, "count")[50] if sizes else None
    return {
        "iou": round(pooled(counts).iou, 4),
        "stone_f1": round(f1, 4),
        "d50_px": d50,
        "d50_count_px": d50_count,
    }


# the same tiles, changed in ways that should not change their stones
PERTURBATIONS = {
    "hflip": (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
    "vflip": (lambda a: a[::-1], lambda a: a[::-1]),
    "rot180": (lambda a: a[::-1, ::-1], lambda a: a[::-1, ::-1]),
    "crop8": (lambda a: a[8:, 8:], lambda a: a),
}


def d50_noise(seg: Segmenter, images: list[np.ndarray], d50: float | None) -> dict:
    """How far D50 of the 1x predictions moves (psi) when each tile is flipped, turned or
    cropped by 8 px: the noise floor against which a 2x or 4x difference is read."""
    out = {}
    for name, (f, back) in PERTURBATIONS.items():
        masks = [
            np.ascontiguousarray(back(seg.predict(np.ascontiguousarray(f(im))).mask))
            for im in images
        ]
        sizes = [s for m in masks for s in b_axes(m)]
        dk = (
            percentiles([b for b, _ in sizes], "area", [a for _, a in sizes])[50] if sizes else None
        )
        out[name] = round(abs(math.log2(dk) - math.log2(d50)), 3) if d50 and dk else None
    found = [v for v in out.values() if v is not None]
    out["median"] = round(float(np.median(found)), 3) if found else None
    return out


def d50_by_factor(seg: Segmenter, images, truths, base: float, steps: int = 4) -> dict:
    """D50 (px of the photos) and IoU of the 1x tiles, all at one factor, for factors on the
    estimate's 9 % grid from ``base`` * 2**(-steps/8) to ``base`` * 2**(steps/8). The
    stones do not change with the factor, so neither should D50: how far it moves per
    octave (a fitted slope) and per grid step (mean of neighbours) is what an estimate one
    step off costs."""
    rows = {}
    for k in range(-steps, steps + 1):
        f = base * 2.0 ** (k / 8)
        rows[round(f, 3)] = score(
            [(t, seg.predict(im, scale=f).mask) for im, t in zip(images, truths)]
        )
    logs = [math.log2(r["d50_px"]) for r in rows.values()]
    slope = float(np.polyfit([math.log2(f) for f in rows], logs, 1)[0])
    return {
        "factors": {f: [round(r["d50_px"], 1), r["iou"]] for f, r in rows.items()},
        "psi_per_octave": round(slope, 2),
        "psi_per_step": round(float(np.mean(np.abs(np.diff(logs)))), 3),
    }


def mask_factor(scale, truth: np.ndarray) -> float:
    """The factor that brings ``truth``'s typical stone to the standard stone."""
    return scale.for_stone(typical_stone_px(truth), *truth.shape[:2])


def steps_off(factor: float, target: float) -> float:
    return round(abs(math.log2(factor / target)) * 8, 2)


def run_fold(policy: str, fold: int, train, held, args) -> dict:
    # one model per (policy, fold, epochs, seed), kept: scoring again costs no training
    out = (
        Path(tempfile.gettempdir())
        / "bench-scale"
        / f"{policy}-f{fold}-e{args.epochs}-s{args.seed}"
    )
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, scale_policy=policy)
    t = time.perf_counter()
    if not (out / "config.json").is_file():
        # trained beside and renamed at the end: a run stopped midway is never reused
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        run_training(train, partial, cfg)
        partial.rename(out)
    train_s = time.perf_counter() - t
    seg = Segmenter.load(out, InferenceConfig(runtime=args.runtime, scale=args.infer_scale))
    seg.config = seg.config.replace(threshold=seg.info.threshold)
    if seg.scale_policy.stone_px <= 0:  # a model trained before long-side ones recorded it
        masks = [read_mask(m) for _, m in train]
        work = [mask_to_work_scale(m, seg.info.work_size) for m in masks]
        recorded = with_stone_px(seg.scale_policy, [typical_stone_px(m) for m in work])
        train_scale = float(np.median([recorded.long_side(*m.shape[:2]) for m in masks]))
        seg.info.scale = dataclasses.replace(recorded, train_scale=train_scale).to_json()
    scale = seg.scale_policy
    read_px = reading_of(seg, train) if args.reading else None
    if read_px is not None:  # the estimate towards the network's reading of the standard stone
        seg.info.scale = dataclasses.replace(scale, stone_px=read_px).to_json()
    row_policy = {"stone_px": round(scale.stone_px, 1), "read_px": read_px and round(read_px, 1)}
    images = [read_rgb(p) for p, _ in held]
    truths = [read_mask(m, im.shape[:2]) for im, (_, m) in zip(images, held)]
    row = {
        "policy": policy,
        "fold": fold,
        "held": [p.stem for p, _ in held],
        "train_s": round(train_s),
        **row_policy,
    }
    one = []
    factors = []
    for im, tr in zip(images, truths):
        pred = seg.predict(im, scale=mask_factor(scale, tr) if args.oracle_scale else None)
        factors.append(pred.scale)
        one.append((tr, pred.mask))
    row["1x"] = score(one) | {"factor": [round(f, 3) for f in factors]}
    row["1x"]["d50_noise_psi"] = d50_noise(seg, images, row["1x"]["d50_px"])
    row["1x"]["truth_d50_px"] = score(list(zip(truths, truths)))["d50_px"]
    if args.sweep and seg.scale_policy.train_scale > 0:
        row["1x"]["d50_by_factor"] = d50_by_factor(
            seg, images, truths, seg.scale_policy.train_scale
        )
    m2, t2 = mosaic(images), mosaic(truths)
    pred2 = seg.predict(m2, scale=mask_factor(scale, t2) if args.oracle_scale else None)
    row["2x"] = score([(t2, pred2.mask)]) | {"factor": round(pred2.scale, 3)}
    m4, t4 = mosaic([m2] * 4), mosaic([t2] * 4)
    pred4 = seg.predict(m4, scale=mask_factor(scale, t4) if args.oracle_scale else None)
    row["4x"] = score([(t4, pred4.mask)]) | {"factor": round(pred4.scale, 3)}
    # how far the scale each got is from the one its mask gives, in steps of the estimate's
    # 9 % grid (what the estimate aims at: the typical stone at the standard size)
    row["1x"]["mask_factor"] = [round(mask_factor(scale, t), 3) for t in truths]
    row["1x"]["steps_off"] = [
        steps_off(f, m) for f, m in zip(row["1x"]["factor"], row["1x"]["mask_factor"])
    ]
    for k, truth_k in (("2x", t2), ("4x", t4)):
        row[k]["mask_factor"] = round(mask_factor(scale, truth_k), 3)
        row[k]["steps_off"] = steps_off(row[k]["factor"], row[k]["mask_factor"])
    for k in ("2x", "4x"):
        d0, dk = row["1x"]["d50_px"], row[k]["d50_px"]
        row[k]["d50_psi_diff"] = round(abs(math.log2(dk) - math.log2(d0)), 3) if d0 and dk else None
    log.info("%s", json.dumps(row))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(ap)
    ap.add_argument("--policies", default="long-side,stone-size")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--only-folds", default="")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument(
        "--infer-scale",
        default="auto",
        help="InferenceConfig.scale for every model (auto: its own policy; stone-size: "
        "a long-side model brought to its recorded standard stone)",
    )
    ap.add_argument(
        "--oracle-scale",
        action="store_true",
        help="segment every tile and mosaic at the factor its own mask gives (a perfect "
        "estimate: what is left is the network)",
    )
    ap.add_argument(
        "--reading",
        action="store_true",
        help="estimate towards the network's reading of the standard stone on its training "
        "photos (_common.network_reading), not the masks' figure",
    )
    ap.add_argument(
        "--sweep",
        action="store_true",
        help="also D50 of the 1x tiles at fixed factors around the training scale",
    )
    args = ap.parse_args()
    setup(args)
    root = Path(args.data) if args.data else SHARED
    pairs = labelled_pairs(root)
    per = len(pairs) // args.folds
    if per < 4:
        raise SystemExit("each fold needs 4 held-out tiles")
    only = {int(f) for f in args.only_folds.split(",") if f.strip()}
    rows = []
    for fold in range(args.folds):
        if only and fold not in only:
            continue
        held = pairs[fold * per : fold * per + 4]
        train = [p for p in pairs if p not in held]
        for policy in args.policies.split(","):
            rows.append(run_fold(policy, fold, train, held, args))
    summary = {}
    for policy in args.policies.split(","):
        mine = [r for r in rows if r["policy"] == policy]
        s = {}
        for k in ("1x", "2x", "4x"):
            s[k] = {
                m: round(float(np.mean([r[k][m] for r in mine])), 4) for m in ("iou", "stone_f1")
            }
        for k in ("2x", "4x"):
            diffs = [r[k]["d50_psi_diff"] for r in mine if r[k]["d50_psi_diff"] is not None]
            s[k]["d50_psi_diff_max"] = max(diffs) if diffs else None
            s[k]["d50_psi_diff_median"] = round(float(np.median(diffs)), 3) if diffs else None
            s[k]["iou_ratio"] = round(s[k]["iou"] / s["1x"]["iou"], 3) if s["1x"]["iou"] else None
            s[k]["f1_ratio"] = (
                round(s[k]["stone_f1"] / s["1x"]["stone_f1"], 3) if s["1x"]["stone_f1"] else None
            )
        tiles = [x for r in mine for x in r["1x"]["steps_off"]]
        s["1x"]["steps_off_mean"] = round(float(np.mean(tiles)), 2)
        s["4x"]["steps_off_mean"] = round(float(np.mean([r["4x"]["steps_off"] for r in mine])), 2)
        sweeps = [r["1x"]["d50_by_factor"] for r in mine if "d50_by_factor" in r["1x"]]
        if sweeps:
            s["1x"]["d50_psi_per_step_mean"] = round(
                float(np.mean([x["psi_per_step"] for x in sweeps])), 3
            )
        noise = [r["1x"]["d50_noise_psi"]["median"] for r in mine]
        noise = [v for v in noise if v is not None]
        s["1x"]["d50_noise_psi_median"] = round(float(np.median(noise)), 3) if noise else None
        summary[policy] = s
    print(json.dumps({"rows": rows, "summary": summary}))


if __name__ == "__main__":
    main()
