"""A 24-megapixel photo against a 512x512 crop of it: cost per megapixel, peak memory, seams.

The 6000x4000 photo is made from stones-dev/5.jpg (upscaled, cropped, saved as JPEG in a
temporary folder); the small case is its central 512x512 crop, saved the same way. Each
case runs in a fresh subprocess, so its peak memory (VmHWM in /proc/self/status, minus the
RSS once the model is loaded) is its own; large and small subprocesses alternate, and the
ratio of their costs per megapixel is taken pair by pair (median).

Two modes:
- ``default``: what StoneSeg does: the photo is brought to the model's working scale (384 by default),
  so the network cost is the same for both sizes and the rest (decode, resize, upsample,
  threshold) grows with the pixels. The cost split is reported.
- ``native``: working scale = the photo's own size, so the whole 24 MP are cut into 512-px
  tiles (64 px overlap, batches of 4). Its photo is a mosaic of stones-dev/5.jpg at the
  model's working scale (so the stones have the size the network was trained on), and
  the small case a 512x512 crop of that mosaic. This is the test of the tiling itself: linear cost,
  bounded memory, and no seams. Seams are measured two ways on the probability map: the
  mean step across tile-edge lines against the mean step across all lines (1.0 = no
  seam), and a tiled against an untiled pass over a 1536x1536 crop.

    python tests/benchmarks/bench_large_image.py [--pairs 2] [--inner-reps 3] [--no-native]
        [--model DIR]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _common import (
    add_common_args,
    bench_model,
    data_dir,
    emit,
    iou,
    load_average,
    machine,
    median,
    peak_rss_mb,
    r3,
    setup,
)

log = logging.getLogger("bench_large_image")

LARGE = (6000, 4000)  # width, height
SMALL = 512


def make_photos(src: Path, out: Path) -> tuple[Path, Path]:
    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    w, h = LARGE
    scale = max(w / image.shape[1], h / image.shape[0])
    big = cv2.resize(
        image,
        (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_CUBIC,
    )
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    big = big[y0 : y0 + h, x0 : x0 + w]
    large = out / "large_24mp.jpg"
    cv2.imwrite(str(large), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cy, cx = h // 2 - SMALL // 2, w // 2 - SMALL // 2
    small = out / "crop_512.jpg"
    cv2.imwrite(str(small), big[cy : cy + SMALL, cx : cx + SMALL], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return large, small


def make_mosaic(src: Path, out: Path, work_size: int) -> tuple[Path, Path]:
    """For the native mode: 24 MP whose stones have the model's working scale.

    The photo is brought to the working scale (long side ``work_size``) and laid out as
    tiles (mirrored alternately, so no hard edges) over 6000x4000: at its own size this
    image is what the network was trained on, so tiling it is the real test of the tiling
    (an upscaled photo would show the network stones 10x larger than it ever saw).
    """
    from stoneseg_core.training.dataset import to_work_scale

    image = to_work_scale(cv2.imread(str(src), cv2.IMREAD_COLOR), work_size)
    pair = np.concatenate([image, image[:, ::-1]], axis=1)
    quad = np.concatenate([pair, pair[::-1]], axis=0)
    w, h = LARGE
    reps = (-(-h // quad.shape[0]), -(-w // quad.shape[1]), 1)
    big = np.ascontiguousarray(np.tile(quad, reps)[:h, :w])
    large = out / "mosaic_24mp.png"
    cv2.imwrite(str(large), big)
    cy, cx = h // 2 - SMALL // 2, w // 2 - SMALL // 2
    small = out / "mosaic_crop_512.png"
    cv2.imwrite(str(small), big[cy : cy + SMALL, cx : cx + SMALL])
    return large, small


# -------------------------------------------------------------------------------- child


def seam_figures(prob: np.ndarray, tile: int, overlap: int, threshold: float = 0.5) -> dict:
    """Is there a step where tiles start or end? Compared with control lines half a stride away.

    For every line where a tile starts or ends (columns and rows), the mean |step| of the
    probability across it, and how often the mask flips across it; the same for control
    lines shifted by half a stride (inside tiles). A seam shows as an edge/control ratio
    well above 1 and an excess step of a few hundredths of probability or more.
    """
    from stoneseg_core.inference.tiling import tile_starts

    h, w = prob.shape
    half = (tile - overlap) // 2
    mask = prob >= threshold

    def lines(length: int, shift: int) -> list[int]:
        starts = tile_starts(length, tile, overlap)
        return sorted(
            {c + shift for s in starts for c in (s - 1, s + tile - 1)} & set(range(length - 1))
        )

    def measure(shift: int) -> tuple[float, float]:
        cols, rows = lines(w, shift), lines(h, shift)
        steps = np.concatenate(
            [
                np.abs(prob[:, cols] - prob[:, [c + 1 for c in cols]]).ravel(),
                np.abs(prob[rows] - prob[[r + 1 for r in rows]]).ravel(),
            ]
        )
        flips = np.concatenate(
            [
                (mask[:, cols] != mask[:, [c + 1 for c in cols]]).ravel(),
                (mask[rows] != mask[[r + 1 for r in rows]]).ravel(),
            ]
        )
        return float(steps.mean()), float(flips.mean())

    edge_step, edge_flip = measure(0)
    ctrl_step, ctrl_flip = measure(half)
    return {
        "tile_edge_lines": len(lines(w, 0)) + len(lines(h, 0)),
        "mean_step_on_tile_edges": float(f"{edge_step:.4g}"),
        "mean_step_on_control_lines": float(f"{ctrl_step:.4g}"),
        "excess_step": float(f"{edge_step - ctrl_step:.3g}"),
        "step_ratio": r3(edge_step / ctrl_step) if ctrl_step > 0 else None,
        "mask_flip_rate_on_edges": float(f"{edge_flip:.4g}"),
        "mask_flip_rate_on_control_lines": float(f"{ctrl_flip:.4g}"),
    }


def child(args: argparse.Namespace) -> None:
    import torch

    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.io.images import read_image
    from stoneseg_core.training.dataset import to_work_scale

    if args.threads:
        torch.set_num_threads(args.threads)
    seg = Segmenter.load(args.model)
    tile = args.native_tile if args.child_mode == "native" else seg.config.tile
    seg.config = seg.config.replace(tile=tile)
    warm = np.full((256, 256, 3), 90, np.uint8)
    for _ in range(
        2
    ):  # the ONNX Runtime network is exported or loaded at the first pass: not counted
        seg.predict(warm)
    base_rss = peak_rss_mb()[1]
    image_path = Path(args.child_image)
    rows = []
    out: dict = {}
    hwm_pass = 0.0
    for rep in range(args.inner_reps):
        t0 = time.perf_counter()
        image = read_image(image_path)
        t1 = time.perf_counter()
        h, w = image.shape[:2]
        work_size = max(h, w) if args.child_mode == "native" else seg.info.work_size
        seg.info.work_size = work_size
        work = to_work_scale(image, work_size)
        t2 = time.perf_counter()
        prob = seg.probability_at_work_scale(work)
        t3 = time.perf_counter()
        if prob.shape != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        t4 = time.perf_counter()
        mask = (prob >= seg.config.threshold).view(np.uint8)  # as Segmenter.predict does
        mask *= 255
        t5 = time.perf_counter()
        rows.append(
            {
                "decode": t1 - t0,
                "resize": t2 - t1,
                "network": t3 - t2,
                "upsample": t4 - t3,
                "threshold": t5 - t4,
            }
        )
        hwm_pass = max(hwm_pass, peak_rss_mb()[0])  # before the extra checks below
        if rep == 0 and args.child_mode == "default":
            # the shipped path, once: the same steps, so it must give the same mask
            t = time.perf_counter()
            pred = seg.predict(image)
            out["predict_s"] = r3(time.perf_counter() - t)
            out["predict_matches_split"] = bool(np.array_equal(pred.mask, mask))
            del pred
        if rep == 0 and args.child_mode == "native" and h * w > SMALL * SMALL:
            out["seams"] = seam_figures(prob, seg.config.tile, seg.config.overlap)
            out["seams_vs_untiled"] = untiled_check(args.model, image, tile)
        del image, work, prob, mask
    split = {k: r3(median([r[k] for r in rows])) for k in rows[0]}
    out.update(
        {
            "megapixels": r3(h * w / 1e6),
            "size": [w, h],
            "work_size": work_size,
            "split_s": split,
            "total_s": r3(sum(split.values())),
            "peak_rss_mb": round(hwm_pass),
            "rss_after_model_mb": round(base_rss),
            "peak_increase_mb": round(hwm_pass - base_rss),
            "peak_rss_with_checks_mb": round(peak_rss_mb()[0]),
        }
    )
    print(json.dumps(out))


def untiled_check(model_dir: str, image: np.ndarray, tile: int, size: int = 1536) -> dict:
    """A central crop through 512-px tiles and in one pass: where tiles meet, do they differ?"""
    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.inference.tiling import tile_starts
    from stoneseg_core.model.config import InferenceConfig

    h, w = image.shape[:2]
    size = max(size, 3 * tile)
    crop = np.ascontiguousarray(
        image[h // 2 - size // 2 : h // 2 + size // 2, w // 2 - size // 2 : w // 2 + size // 2]
    )
    tiled = Segmenter.load(model_dir, InferenceConfig(tile=tile, overlap=64))
    whole = Segmenter.load(model_dir, InferenceConfig(tile=size, overlap=64))
    tiled.info.work_size = whole.info.work_size = size
    a = tiled.probability_at_work_scale(crop)
    b = whole.probability_at_work_scale(crop)
    diff = np.abs(a - b)
    edges = sorted(
        {c for s in tile_starts(size, tile, 64) for c in (s, s + tile - 1)} & set(range(size))
    )
    near = np.zeros(size, bool)
    for c in edges:
        near[max(0, c - 2) : c + 3] = True
    return {
        "crop": size,
        "mask_iou_tiled_vs_untiled": float(round(iou(a >= 0.5, b >= 0.5), 4)),
        "mean_abs_diff": float(f"{diff.mean():.3g}"),
        "mean_abs_diff_near_tile_edges": float(
            f"{(diff[:, near].mean() + diff[near].mean()) / 2:.3g}"
        ),
        "max_abs_diff": float(f"{diff.max():.3g}"),
    }


# ------------------------------------------------------------------------------- parent


def run_child(args, model_dir: Path, image: Path, mode: str, inner_reps: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child-image",
        str(image),
        "--child-mode",
        mode,
        "--model",
        str(model_dir),
        "--inner-reps",
        str(inner_reps),
        "--native-tile",
        str(args.native_tile),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(large: list[dict], small: list[dict]) -> dict:
    per_mp = lambda r: r["total_s"] / r["megapixels"]  # noqa: E731
    ratios = [per_mp(a) / per_mp(b) for a, b in zip(large, small)]
    return {
        "large": large[-1] | {"s_per_mp_runs": [r3(per_mp(r)) for r in large]},
        "small": small[-1] | {"s_per_mp_runs": [r3(per_mp(r)) for r in small]},
        "cost_per_mp_ratio_large_vs_small": r3(median(ratios)),
        "ratios": [r3(x) for x in ratios],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(ap)
    ap.add_argument("--model", help="a StoneSeg model folder (default: train a short one, cached)")
    ap.add_argument(
        "--pairs",
        type=int,
        default=2,
        help="alternating large/small subprocess pairs (default mode)",
    )
    ap.add_argument(
        "--inner-reps", type=int, default=3, help="timed predictions inside each subprocess"
    )
    ap.add_argument("--native-reps", type=int, default=1)
    ap.add_argument(
        "--native-tile",
        type=int,
        default=512,
        help="tile size in native mode (default: the shipped 512)",
    )
    ap.add_argument(
        "--no-native", action="store_true", help="skip the full-resolution tiled mode (slow)"
    )
    ap.add_argument("--child-image", help=argparse.SUPPRESS)
    ap.add_argument("--child-mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_image:
        child(args)
        return
    setup(args)
    load_before = load_average()
    root = data_dir(args.data)
    model_dir = bench_model(args.model, root)
    result: dict = {"benchmark": "large_image", "model": str(model_dir), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="stoneseg-large-") as tmp:
        large, small = make_photos(root / "images" / "5.jpg", Path(tmp))
        log.info("made %s and %s", large.name, small.name)
        runs_l, runs_s = [], []
        for i in range(args.pairs):
            order = (
                [("large", large), ("small", small)]
                if i % 2 == 0
                else [("small", small), ("large", large)]
            )
            for name, path in order:
                r = run_child(args, model_dir, path, "default", args.inner_reps)
                (runs_l if name == "large" else runs_s).append(r)
                log.info("default %s: %s", name, r)
        result["default"] = summarise(runs_l, runs_s)
        if not args.no_native:
            from stoneseg_core.model.network import read_model_info

            work_size = read_model_info(model_dir).work_size
            m_large, m_small = make_mosaic(root / "images" / "5.jpg", Path(tmp), work_size)
            runs_l, runs_s = [], []
            for _ in range(args.native_reps):
                for name, path in [("large", m_large), ("small", m_small)]:
                    r = run_child(
                        args, model_dir, path, "native", 1 if name == "large" else args.inner_reps
                    )
                    (runs_l if name == "large" else runs_s).append(r)
                    log.info("native %s: %s", name, r)
            result["native"] = summarise(runs_l, runs_s)
    d = result["default"]
    result["targets"] = {
        "default_cost_per_mp_le_1.2x_small": d["cost_per_mp_ratio_large_vs_small"] <= 1.2,
        "default_peak_increase_lt_3gb": d["large"]["peak_increase_mb"] < 3072,
    }
    if "native" in result:
        n = result["native"]
        result["targets"].update(
            {
                "native_cost_per_mp_le_1.2x_small": n["cost_per_mp_ratio_large_vs_small"] <= 1.2,
                "native_peak_increase_lt_3gb": n["large"]["peak_increase_mb"] < 3072,
                "native_no_seams": n["large"].get("seams", {}).get("excess_step", 1.0) < 0.01,
            }
        )
    result["load_average_before_after"] = [load_before, load_average()]
    emit(result)


if __name__ == "__main__":
    main()
