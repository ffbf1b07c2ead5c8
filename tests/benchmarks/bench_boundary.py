"""Does a boundary-aware target help to split touching and overlapping stones? A small A/B.

Two U-Nets are trained on the same synthetic piles with instance truth (bench_grains.py's
scenes, rendered as photos: every stone its own tone and texture, darker towards its own
edge, on a noisy ground), with the same budget, seed, crops and encoder (weights "none",
CPU):

- A: target "mask" (today), split with today's ``split_stones`` (distance transform x the
  model's probability, as ``stoneseg grains`` does by default; also without probability);
- B: target "mask+boundary", split with the boundary map (``split_stones(boundary=...)``,
  both ways: "seams", the default, and "cores"); and, to tell the target from the split,
  B's stone channel split the old way.

Both are scored on held-out scenes of the same kinds, one kind where stones only touch
("packed") and one where they overlap ("pile"): stone-level F1 at IoU >= 0.5 and the D50
error in psi (predicted - true, by count and by area; mean over scenes, and mean |error|).
The truth mask split by today's method is given as a reference ("oracle_mask").

    python tests/benchmarks/bench_boundary.py [--epochs 10] [--samples-per-image 8] [--rim 0.38]

``--keep DIR`` keeps the data and both models; with ``--reuse`` models already in DIR are
loaded instead of trained again (training is deterministic on the CPU: same seed, same
models).

Prints one JSON line last. Not part of the test run: it trains two models (minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_grains

from stoneseg_core.grains import split_stones, write_instance_png
from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.training.dataset import boundary_band
from stoneseg_core.training.train import run_training

log = logging.getLogger("bench_boundary")

# name: (min b semi-axis, max b semi-axis, max aspect, "pile" (overlapping) or "packed" (touching))
bench_grains.KINDS.setdefault("small_packed", (5, 16, 2.0, "packed"))
bench_grains.KINDS.setdefault("small_pile", (5, 16, 2.0, "pile"))
KINDS = {"touching": "small_packed", "overlapping": "small_pile"}


def render(rng: np.random.Generator, labels: np.ndarray, rim: float = 0.38) -> np.ndarray:
    """A photo of the pile: noisy ground; each stone its own tone and texture, shaded to its edge.

    ``rim``: how much darker a stone is at its own edge (0.38: 38 % darker on the seam,
    fading over 4 px, as the curved side of a real stone; 0: flat stones, so only the
    tone and texture of neighbours tell them apart).
    """
    h, w = labels.shape
    img = rng.normal(80, 14, (h, w, 3)).astype(np.float32)
    img[..., 2] += 12
    n = int(labels.max())
    tones = rng.uniform(120, 215, (n + 1, 3)).astype(np.float32)
    tones[1:] += rng.uniform(-20, 20, (n, 1))  # some stones lighter, some darker overall
    edge = boundary_band(labels, 1)
    dist = cv2.distanceTransform((~edge).view(np.uint8), cv2.DIST_L2, 3)
    shade = (1.0 - rim) + rim * np.clip(dist / 4.0, 0, 1)
    texture = rng.normal(0, 9, (h, w, 1)).astype(np.float32)
    stone = labels > 0
    img[stone] = (tones[labels[stone]] + texture[stone]) * shade[stone, None]
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return img.clip(0, 255).astype(np.uint8)


def write_set(root: Path, scenes: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[Path, ...]]:
    pairs = []
    for sub in ("images", "masks", "instances"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (img, labels) in enumerate(scenes):
        ip, mp, lp = (
            root / "images" / f"s{i:02d}.png",
            root / "masks" / f"s{i:02d}.png",
            root / "instances" / f"s{i:02d}.png",
        )
        cv2.imwrite(str(ip), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(mp), np.where(labels > 0, 255, 0).astype(np.uint8))
        write_instance_png(lp, labels)
        pairs.append((ip, mp, lp))
    return pairs


def scenes_for(rng: np.random.Generator, size: int, per_kind: int, rim: float):
    out = {}
    for name, kind in KINDS.items():
        out[name] = []
        for _ in range(per_kind):
            labels = bench_grains.make_scene(rng, size, kind)
            out[name].append((render(rng, labels, rim), labels))
    return out


def summarise(per: list[dict]) -> dict:
    row = {}
    for key in per[0]:
        vals = [p[key] for p in per if p[key] is not None]
        row[key] = round(float(np.mean(vals)), 4) if vals else None
        if key.startswith("d50"):
            row[key + "_abs"] = round(float(np.mean(np.abs(vals))), 4) if vals else None
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=192, help="scene side in pixels (default 192)")
    ap.add_argument("--train-scenes", type=int, default=8, help="training scenes per kind")
    ap.add_argument("--test-scenes", type=int, default=6, help="held-out scenes per kind")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--samples-per-image", type=int, default=8)
    ap.add_argument("--boundary-px", type=int, default=2)
    ap.add_argument("--encoder", default="efficientnet-b0")
    ap.add_argument("--min-separation", type=int, default=5)
    ap.add_argument("--rim", type=float, default=0.38, help="edge darkening of a stone, 0-1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="folder to keep the data and both models in")
    ap.add_argument("--reuse", action="store_true", help="load the models already in --keep")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    rng = np.random.default_rng(args.seed)
    train = scenes_for(rng, args.size, args.train_scenes, args.rim)
    test = scenes_for(
        np.random.default_rng(args.seed + 1000), args.size, args.test_scenes, args.rim
    )
    tmp = None
    if args.keep:
        root = Path(args.keep)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_boundary_")
        root = Path(tmp.name)
    pairs = write_set(root / "data", [s for kind in train.values() for s in kind])
    val = (pairs[0][0].stem, pairs[args.train_scenes][0].stem)  # one scene of each kind
    base = TrainConfig(
        encoder=args.encoder,
        weights="none",
        work_size=args.size,
        crop=args.crop,
        batch_size=args.batch_size,
        epochs=args.epochs,
        samples_per_image=args.samples_per_image,
        val_images=val,
        seed=args.seed,
        device="cpu",
        amp="off",
        boundary_px=args.boundary_px,
    )
    models, train_seconds = {}, {}
    for target in ("mask", "mask+boundary"):
        out = root / f"model_{target.replace('+', '_')}"
        if args.reuse and (out / "config.json").is_file():
            train_seconds[target] = None
            log.info("reusing %s", out)
        else:
            start = time.perf_counter()
            result = run_training(pairs, out, base.replace(target=target))
            train_seconds[target] = round(time.perf_counter() - start, 1)
            log.info(
                "trained %-14s in %.0fs: best epoch %d, val IoU %.3f",
                target,
                train_seconds[target],
                result.best_epoch,
                result.best.iou if result.best else float("nan"),
            )
        models[target] = Segmenter.load(out, InferenceConfig(device="cpu", amp="off"))

    sep = args.min_separation
    methods = {
        "oracle_mask (truth mask, today's split)": None,
        "A mask, today's split (mask x probability)": None,
        "A mask, split on mask only": None,
        "B mask+boundary, today's split on its stone channel": None,
        "B mask+boundary, boundary split 'seams' (default)": None,
        "B mask+boundary, boundary split 'cores'": None,
    }
    results: dict = {
        "scene_size": args.size,
        "train_scenes_per_kind": args.train_scenes,
        "test_scenes_per_kind": args.test_scenes,
        "epochs": args.epochs,
        "crop": args.crop,
        "batch_size": args.batch_size,
        "samples_per_image": args.samples_per_image,
        "boundary_px": args.boundary_px,
        "rim": args.rim,
        "seed": args.seed,
        "encoder": args.encoder,
        "min_separation_px": sep,
        "train_seconds": train_seconds,
        "kinds": {},
    }
    for name, items in test.items():
        per: dict[str, list[dict]] = {m: [] for m in methods}
        stone_iou = {"A": [], "B": []}
        for img, truth in items:
            pa = models["mask"].predict(img)
            pb = models["mask+boundary"].predict(img)
            assert pa.boundary is None and pb.boundary is not None
            for key, p in (("A", pa), ("B", pb)):
                m, t = p.mask > 0, truth > 0
                stone_iou[key].append(float((m & t).sum() / max(1, (m | t).sum())))
            preds = {
                "oracle_mask (truth mask, today's split)": split_stones(truth > 0, None, sep),
                "A mask, today's split (mask x probability)": split_stones(
                    pa.mask, pa.probability, sep
                ),
                "A mask, split on mask only": split_stones(pa.mask, None, sep),
                "B mask+boundary, today's split on its stone channel": split_stones(
                    pb.mask, pb.probability, sep
                ),
                "B mask+boundary, boundary split 'seams' (default)": split_stones(
                    pb.mask, pb.probability, sep, boundary=pb.boundary
                ),
                "B mask+boundary, boundary split 'cores'": split_stones(
                    pb.mask, None, sep, boundary=pb.boundary, boundary_split="cores"
                ),
            }
            for m, labels in preds.items():
                per[m].append(bench_grains.score(labels, truth))
        rows = {m: summarise(v) for m, v in per.items()}
        results["kinds"][name] = {
            "stones_per_scene": float(np.mean([int(t.max()) for _, t in items])),
            "touching_fraction": round(
                float(np.mean([bench_grains.touching_fraction(t) for _, t in items])), 3
            ),
            "stone_iou": {k: round(float(np.mean(v)), 4) for k, v in stone_iou.items()},
            "rows": rows,
        }
        log.info(
            "%s (%.0f stones per scene; pixel IoU A %.3f, B %.3f):",
            name,
            results["kinds"][name]["stones_per_scene"],
            np.mean(stone_iou["A"]),
            np.mean(stone_iou["B"]),
        )
        for m, r in rows.items():
            log.info(
                "  %-50s F1 %.3f  P %.3f  R %.3f  D50 psi err count %+.3f (|%.3f|)  area %+.3f (|%.3f|)",
                m,
                r["f1"],
                r["precision"],
                r["recall"],
                r["d50_psi_err_count"],
                r["d50_psi_err_count_abs"],
                r["d50_psi_err_area"],
                r["d50_psi_err_area_abs"],
            )
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
