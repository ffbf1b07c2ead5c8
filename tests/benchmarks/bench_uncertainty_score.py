"""Which uncertainty score says best how wrong a prediction is (``inference.uncertainty``).

One small model is trained on ~20 conveyor-train tiles (13 with stones, 6 of empty belt, as
``bench_stones`` picks them; 3 epochs, the app's defaults otherwise), then every other tile is
predicted as the app predicts it, and each candidate score of the prediction is correlated
(Spearman) with the tile's pixel error 1 - IoU against its true mask, over all held-out tiles
and over those that hold stones. Candidates:

- ``threshold``: unsure pixels (closeness to the threshold >= 0.5) / (stone or unsure) pixels,
  the denominator at least a tenth of the tile (``MIN_STONE_SHARE``): the app's score;
  ``threshold_no_floor``: the same without the floor; ``threshold_mean``: the mean closeness
  over the tile; ``threshold_entropy``: the mean binary entropy of the stone probability;
- ``threshold_boundary``: as ``threshold``, the map the larger of the stone's closeness and the
  boundary channel's (1 - |2b - 1|);
- ``flips``: pixels where the tile and its left-right and upside-down flips (un-flipped)
  disagree on stone / (stone or disagreeing) pixels, with the same floor; ``flips_no_floor``
  without it; ``flips_std``: the mean of twice the per-pixel standard deviation over the three.

    python tests/benchmarks/bench_uncertainty_score.py [--model DIR] [--keep DIR]

Prints one JSON line last. Not part of the test run (it trains a model: minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, emit, iou, machine, r3, setup
from bench_stones import SETS, triples

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.inference.uncertainty import (
    flip_disagreement,
    measure_uncertainty,
    score_map,
    threshold_closeness,
)
from stoneseg_core.io.images import read_image, read_mask
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.scale import drop_specks_at_work_scale, resize_by


def split_tiles(items: list) -> tuple[list, list]:
    """(train, held out): 13 stony tiles (every 9th) and 6 of empty belt train."""
    stony = [t for t in items if read_mask(t[1]).any()]
    empty = [t for t in items if t not in stony]
    train = stony[::9][:14] + empty[:: max(1, len(empty) // 6)][:6]
    return train, [t for t in items if t not in train]


def work_probabilities(seg: Segmenter, image: np.ndarray) -> tuple[np.ndarray, float]:
    """(C, h, w) at working scale, the speck floor applied, as ``Segmenter.predict`` makes
    them; the factor."""
    factor = seg.work_scale(image)
    probs = seg.probabilities_at_work_scale(resize_by(image, factor))
    drop_specks_at_work_scale(probs[0], seg.config.threshold, seg.speck_floor(1.0))
    return probs, factor


def candidate_scores(seg: Segmenter, image: np.ndarray, probs: np.ndarray, factor: float) -> dict:
    t = seg.config.threshold
    prob = probs[0]
    stone = prob >= t
    closeness = threshold_closeness(prob, t)
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    measured = measure_uncertainty(probs, t).score
    out = {
        "threshold": measured.score,
        "threshold_no_floor": score_map(closeness, stone, min_share=0).score,
        "threshold_mean": float(closeness.mean()),
        "threshold_entropy": float(entropy.mean()),
    }
    if len(probs) > 1:
        both = np.maximum(closeness, threshold_closeness(probs[1], 0.5))
        out["threshold_boundary"] = score_map(both, stone).score
    work = resize_by(image, factor)
    flips = flip_disagreement(lambda im: seg.probabilities_at_work_scale(im)[0], work, t, prob)
    out["flips"] = flips.score.score
    out["flips_no_floor"] = score_map(flips.map >= 128, stone, min_share=0).score
    # the counts, to try other ways of making a score of them without passes (--rows)
    out["counts"] = {
        "area": int(prob.size),
        "stone": measured.stone_px,
        "unsure": measured.unsure_px,
        "either": int(np.count_nonzero(stone | (closeness >= 0.5))),
        "flips_unsure": flips.score.unsure_px,
        "flips_either": int(np.count_nonzero(stone | (flips.map >= 128))),
    }
    out["flips_std"] = float(flips.map.astype(np.float32).mean() / 255)
    return out


def photo_mask(seg: Segmenter, prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = shape
    if prob.shape != (h, w):
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
    return prob >= seg.config.threshold


def correlations(rows: list[dict], names: list[str]) -> dict:
    errors = [r["error"] for r in rows]
    out = {}
    for n in names:
        rho = spearmanr([r[n] for r in rows], errors).statistic
        out[n] = r3(float(rho))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a model trained as here (else trained)")
    ap.add_argument("--keep", default="/tmp/bench-uncertainty-score", help="where to train it")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rows", default=None, help="write each tile's figures to this JSON file")
    add_common_args(ap)
    args = ap.parse_args()
    setup(args)
    train, held_out = split_tiles(triples(SETS["conveyor"]))
    model = Path(args.model or args.keep)
    t0 = time.perf_counter()
    if not (model / "config.json").is_file():
        from stoneseg_core.training.train import run_training

        cfg = TrainConfig(epochs=args.epochs, seed=0, device=args.device)
        run_training([tuple(t) for t in train], model, cfg)
    train_s = time.perf_counter() - t0
    seg = Segmenter.load(model, InferenceConfig(device=args.device))
    rows = []
    for img_path, mask_path, _inst in held_out:
        image, truth = read_image(img_path), read_mask(mask_path) > 0
        probs, factor = work_probabilities(seg, image)
        pred = photo_mask(seg, probs[0], truth.shape)
        row = {"tile": img_path.name, "stony": bool(truth.any()), "error": 1 - iou(pred, truth)}
        row.update(candidate_scores(seg, image, probs, factor))
        rows.append(row)
    if args.rows:
        Path(args.rows).write_text(json.dumps(rows))
    names = [k for k in rows[0] if k not in ("tile", "stony", "error", "counts")]
    stony = [r for r in rows if r["stony"]]
    emit(
        {
            "benchmark": "uncertainty-score",
            "train_tiles": len(train),
            "held_out": len(rows),
            "held_out_stony": len(stony),
            "mean_error": r3(float(np.mean([r["error"] for r in rows]))),
            "spearman_all": correlations(rows, names),
            "spearman_stony": correlations(stony, names),
            "train_seconds": round(train_s),
            "seconds": round(time.perf_counter() - t0),
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
