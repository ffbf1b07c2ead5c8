"""StoneSeg on a CUDA GPU: is the GPU really used, and how fast against the plain way there?

Needs a CUDA GPU (exits with a message otherwise). Everything runs on the GPU, both sides:

- ``training``: a default StoneSeg training (TrainConfig as shipped, device cuda) on the
  photos, timed end to end, with its held-out scores; and one training step per
  precision/layout (fp32 / bf16 autocast, NCHW / channels_last) to show what mixed
  precision is worth there. (StoneSeg's loop against the notebook's on the GPU:
  ``bench_training.py --device cuda``.)
- ``inference``: ``Segmenter`` (autocast, batched tiles, pinned host buffer) against the
  plain way (same weights, fp32, eager, NCHW, ``torch.no_grad``, one tile at a time, on the
  GPU), on the photos at working scale and on a 24-megapixel photo cut into tiles; the IoU
  between the two masks.
- ``transfers``: the CUDA profiler counts host<->device copies during one tiled
  prediction and a few training steps, and whether they come from pinned memory.

    python tests/benchmarks/bench_gpu.py [--data DIR] [--reps 3]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import (
    add_common_args,
    data_dir,
    emit,
    iou,
    labelled_pairs,
    machine,
    median,
    paired_ratio,
    r3,
    read_rgb,
    setup,
)

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.model.config import InferenceConfig, TrainConfig
from stoneseg_core.model.network import build_model, load_model
from stoneseg_core.training.dataset import to_work_scale
from stoneseg_core.training.events import EpochSummary
from stoneseg_core.training.train import DiceBCELoss, run_training

log = logging.getLogger("bench_gpu")


def sync() -> None:
    torch.cuda.synchronize()


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def default_training(pairs, out: Path, epochs: int | None) -> tuple[Path, dict]:
    cfg = (
        TrainConfig(device="cuda") if epochs is None else TrainConfig(device="cuda", epochs=epochs)
    )
    last: list[EpochSummary] = []
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    result = run_training(
        pairs, out, cfg, on_event=lambda e: last.append(e) if isinstance(e, EpochSummary) else None
    )
    wall = time.perf_counter() - t
    final = last[-1]
    return out, {
        "epochs": cfg.epochs,
        "wall_s": r3(wall),
        "train_loop_s": r3(sum(e.seconds for e in last)),
        "val_images": list(result.val_images),
        "val_last_epoch": {k: r3(v) for k, v in final.val.to_dict().items()},
        "best_epoch": result.best_epoch,
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20),
    }


def step_variants(reps: int, batch: int = 8, crop: int = 256) -> dict:
    """One optimisation step of the default U-Net per precision and memory layout."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, crop, crop, device="cuda")
    y = (torch.rand(batch, 1, crop, crop, device="cuda") > 0.5).float()
    loss_fn = DiceBCELoss()
    out = {}
    for name, dtype, fmt in (
        ("fp32_nchw", None, torch.contiguous_format),
        ("bf16_nchw", torch.bfloat16, torch.contiguous_format),
        ("bf16_channels_last", torch.bfloat16, torch.channels_last),
    ):
        model = build_model().cuda().train().to(memory_format=fmt)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        xi = x.contiguous(memory_format=fmt)

        def step(model=model, opt=opt, xi=xi, dtype=dtype):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(xi)
            loss_fn(logits.float(), y).backward()
            opt.step()

        timed(step, 3)  # warm-up, cuDNN autotune
        out[name] = median(timed(step, reps * 5)) * 1000
    base = out["fp32_nchw"]
    return {
        "batch": batch,
        "crop": crop,
        "ms_per_step": {k: round(v, 2) for k, v in out.items()},
        "speedup_vs_fp32_nchw": {k: r3(base / v) for k, v in out.items()},
    }


class PlainGPU:
    """Same weights, same tiles and blending as Segmenter; fp32, eager, NCHW, no_grad, batch 1."""

    def __init__(self, model_dir: Path, config: InferenceConfig):
        from bench_inference import Plain

        model, info = load_model(model_dir)
        self.plain = Plain(model.cuda(), info, config)

    def probability_at_work_scale(self, work: np.ndarray) -> np.ndarray:
        return self.plain.probability_at_work_scale(work)


def compare(seg: Segmenter, plain: PlainGPU, works: list[np.ndarray], reps: int) -> dict:
    thr = seg.config.threshold
    inter = union = 0
    for work in works:
        a = seg.probability_at_work_scale(work) >= thr
        b = plain.probability_at_work_scale(work) >= thr
        inter += np.count_nonzero(a & b)
        union += np.count_nonzero(a | b)
    t = {"stoneseg": [], "plain": []}
    for r in range(reps):
        for name in ("stoneseg", "plain") if r % 2 == 0 else ("plain", "stoneseg"):
            f = seg if name == "stoneseg" else plain
            t[name].append(timed(lambda f=f: [f.probability_at_work_scale(w) for w in works], 1)[0])
    mp = sum(w.shape[0] * w.shape[1] for w in works) / 1e6
    return {
        "images": len(works),
        "work_megapixels": r3(mp),
        "stoneseg_mp_per_s": r3(mp / median(t["stoneseg"])),
        "plain_mp_per_s": r3(mp / median(t["plain"])),
        "speedup": r3(paired_ratio(t["plain"], t["stoneseg"])),
        "mask_iou": float(round(inter / union, 5)) if union else 1.0,
    }


def transfers(fn) -> dict:
    """Host<->device copies the CUDA profiler sees while ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    counts: dict[str, int] = {}
    for ev in prof.events():
        name = ev.name
        if name.startswith("Memcpy") and ("HtoD" in name or "DtoH" in name):
            counts[name] = counts.get(name, 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(ap)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: as shipped)"
    )
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU; none is visible to PyTorch here.")
    args.device = "cuda"
    setup(args)
    root = data_dir(args.data)
    pairs = labelled_pairs(root)
    result: dict = {"benchmark": "gpu", "machine": machine()}

    with tempfile.TemporaryDirectory(prefix="stoneseg-gpu-bench-") as tmp:
        model_dir, result["default_training"] = default_training(
            pairs, Path(tmp) / "model", args.epochs
        )
        log.info("default training: %s", result["default_training"])
        result["training_step"] = step_variants(args.reps)
        log.info("training step: %s", result["training_step"])

        cfg = InferenceConfig(device="cuda")
        seg = Segmenter.load(model_dir, cfg)
        seg_fp32 = Segmenter.load(model_dir, cfg.replace(amp="off"))
        plain = PlainGPU(model_dir, cfg)
        photos = [read_rgb(p) for p, _ in pairs]
        works = [to_work_scale(p, seg.info.work_size) for p in photos]
        result["autocast_dtype"] = str(seg.dtype)
        result["inference_working_scale"] = compare(seg, plain, works, args.reps)
        result["inference_working_scale_fp32"] = compare(seg_fp32, plain, works, args.reps)
        big = cv2.resize(photos[0], (6000, 4000), interpolation=cv2.INTER_CUBIC)
        result["inference_24mp_tiled"] = compare(seg, plain, [big], args.reps)
        log.info("inference: %s", result["inference_24mp_tiled"])
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        pred = seg.predict(big)
        result["predict_24mp_full_s"] = r3(time.perf_counter() - t)
        result["predict_24mp_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        result["predict_24mp_mask_stone_fraction"] = r3(float((pred.mask > 0).mean()))
        result["transfers_one_24mp_prediction"] = transfers(
            lambda: seg.probability_at_work_scale(big)
        )
        result["model_on"] = str(next(seg.model.parameters()).device)
        result["mask_agreement_24mp_vs_plain"] = r3(
            iou(
                seg.probability_at_work_scale(big) >= 0.5,
                plain.probability_at_work_scale(big) >= 0.5,
            )
        )
    result["targets"] = {
        "gpu_used": result["model_on"].startswith("cuda"),
        "inference_speedup_ge_2_5x": result["inference_24mp_tiled"]["speedup"] >= 2.5,
        "mask_iou_ge_0_995": result["inference_24mp_tiled"]["mask_iou"] >= 0.995,
    }
    emit(result)


if __name__ == "__main__":
    main()
